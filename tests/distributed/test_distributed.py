"""Distributed mode: a web process, Celery workers (real subprocesses, solo pool) and Redis.

One Redis (Debian's redis-server on a free port of 127.0.0.1) and two workers serve the whole
module: workers import torch, so they start once. The tests run in file order; the kill test
leaves one worker for the Redis-restart test after it.

Jobs are held "mid-job" with the worker's test-only hook (``MODELMGR_TEST_HOLD_FILE``: Whisper
waits while the file exists), never with sleeps.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from modelmgr.core.settings import Settings
from tests import tiny_models
from tests.conftest import ACCEPTED_TOKEN, DIARIZER, PUNKT_ZIP, LiveServer, run_server, wait_until
from tests.fresh import ROOT, app_env, free_port, fresh_server
from tests.hub import FakeHub
from tests.web.test_api import SSEReader

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
TIMEOUT = 240  # a loaded 2-core machine: generous deadlines, never fixed sleeps
FINISHED = ("done", "error", "cancelled")
WORKER_ENV = {
    # As long as in production: a killed worker's job must come back through the heartbeats (the
    # web processes re-queue it), not through the broker re-delivering it an hour later.
    "MODELMGR_VISIBILITY_TIMEOUT_S": "3600",
    "MODELMGR_RESTORE_INTERVAL_S": "1",
    "MODELMGR_WORKER_HEARTBEAT_S": "0.5",
    "MODELMGR_PROGRESS_INTERVAL_S": "0.05",
}

pytestmark = pytest.mark.skipif(
    not os.path.exists(REDIS_SERVER), reason="redis-server is not installed (apt-get install redis-server)"
)


# --------------------------------------------------------------------------- fixtures


@dataclass
class RedisServer:
    port: int
    folder: Path
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = [
            REDIS_SERVER,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]
        args += ["--dir", str(self.folder), "--dbfilename", "dump.rdb"]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_connect_timeout=1)

        def up() -> bool:
            try:
                return bool(client.ping())
            except redis.RedisError:
                return False

        wait_until(up, 30, "redis-server to answer")

    def stop(self, save: bool = True) -> None:
        """Stop like an operator restarting Redis; ``save`` keeps its data (SHUTDOWN SAVE)."""
        client = redis.Redis(port=self.port)
        with contextlib.suppress(redis.ConnectionError):  # it closes the connection as it goes
            client.shutdown(save=save, nosave=not save)
        assert self.process is not None
        self.process.wait(30)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)


@dataclass
class Worker:
    name: str
    process: subprocess.Popen
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@dataclass
class Cluster:
    redis: RedisServer
    settings: Settings
    hold: Path
    web: LiveServer
    workers: dict[str, Worker] = field(default_factory=dict)
    root: Path = Path()

    def env(self, **extra: str) -> dict[str, str]:
        return app_env(
            self.settings,
            MODELMGR_REDIS_URL=self.redis.url,
            MODELMGR_DATA_DIR=str(self.settings.data_dir),
            **WORKER_ENV,
            **extra,
        )


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(free_port(), tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.kill()


def cluster_settings(hub: FakeHub, root: Path, redis_url: str, name: str) -> Settings:
    return Settings(
        hf_endpoint=hub.url,
        hf_home=root / name / "hf",
        hf_hub_cache=None,
        hf_token=None,
        offline=False,
        torch_home=root / name / "torch",
        torch_models_base_url=f"{hub.url}/torchaudio/models",
        nltk_punkt_url=f"{hub.url}{PUNKT_ZIP}",
        data_dir=root / "shared",
        redis_url=redis_url,
        progress_interval_s=0.05,
        heartbeat_s=1.0,
        min_free_bytes=0,
        download_retries=2,
        default_languages=[],
        worker_heartbeat_s=0.5,
        redis_timeout_s=1.0,
    )


def start_worker(cluster: Cluster, name: str) -> Worker:
    log = cluster.root / f"worker-{name}.log"
    home = cluster.root / name
    env = cluster.env(
        HF_HOME=str(home / "hf"),
        TORCH_HOME=str(home / "torch"),
        MODELMGR_TEST_HOLD_FILE=str(cluster.hold),
        # The workers fetch the gated pyannote models: the token is theirs (the web process has none).
        HF_TOKEN=ACCEPTED_TOKEN,
    )
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "modelmgr", "worker", "--name", name, "--device", "cpu"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=out,
        )
    worker = Worker(name, process, log)
    cluster.workers[name] = worker
    return worker


@pytest.fixture(scope="module")
def cluster(
    redis_server: RedisServer, hub_session: FakeHub, tmp_path_factory: pytest.TempPathFactory, tiny
) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("cluster")
    settings = cluster_settings(hub_session, root, redis_server.url, "web")
    with run_server(settings, ui=True) as web:
        cluster = Cluster(redis_server, settings, root / "hold", web, root=root)
        try:
            for name in ("w1", "w2"):
                start_worker(cluster, name)

            def ready() -> bool:
                for worker in cluster.workers.values():
                    if worker.process.poll() is not None:
                        raise AssertionError(f"worker {worker.name} exited:\n{worker.output()[-3000:]}")
                live = {w["name"]: w for w in workers(cluster)}
                return all(live.get(n, {}).get("ready") for n in cluster.workers)

            wait_until(ready, TIMEOUT, "both workers to report ready")
            yield cluster
        finally:
            for worker in cluster.workers.values():
                if worker.process.poll() is None:
                    worker.process.terminate()
            for worker in cluster.workers.values():
                try:
                    worker.process.wait(30)
                except subprocess.TimeoutExpired:
                    worker.process.kill()
                    worker.process.wait(10)


# --------------------------------------------------------------------------- helpers


def workers(cluster: Cluster, url: str | None = None) -> list[dict[str, Any]]:
    response = httpx.get(f"{url or cluster.web.url}/api/workers", timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["workers"]


def submit(url: str, audio: Path, **fields: Any) -> httpx.Response:
    with audio.open("rb") as f:
        return httpx.post(
            f"{url}/api/transcriptions",
            files={"file": (audio.name, f, "audio/wav")},
            data={"model": "tiny", "language": "zh", **{k: str(v) for k, v in fields.items()}},
            timeout=60,
        )


def job_state(url: str, job_id: str) -> dict[str, Any]:
    response = httpx.get(f"{url}/api/transcriptions/{job_id}", timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def wait_job(url: str, job_id: str, *statuses: str, timeout: float = TIMEOUT) -> dict[str, Any]:
    wanted = statuses or FINISHED
    return wait_until(
        lambda: (j := job_state(url, job_id))["status"] in wanted and j, timeout, f"job {job_id} {wanted}"
    )


def assert_correct_result(url: str, job_id: str) -> None:
    txt = httpx.get(f"{url}/api/transcriptions/{job_id}/result", params={"format": "txt"}, timeout=30)
    assert txt.status_code == 200, txt.text
    assert txt.text.splitlines() == ["你好世界", "hello world"]
    srt = httpx.get(f"{url}/api/transcriptions/{job_id}/result", params={"format": "srt"}, timeout=30)
    assert srt.status_code == 200 and srt.text.startswith("1\n00:00:00,000 --> ") and "你好世界" in srt.text


@contextmanager
def held(cluster: Cluster) -> Iterator[None]:
    """While inside, every transcription waits just before Whisper runs (the worker's test hook)."""
    cluster.hold.write_text("hold")
    try:
        yield
    finally:
        cluster.hold.unlink(missing_ok=True)


def job_events(live: LiveServer, job_id: str) -> list[Any]:
    return [
        e for e in list(live.services.bus._replay) if e.name == "transcription" and e.data["id"] == job_id
    ]


def token_forms(token: str) -> list[bytes]:
    """``token`` as it would show in Redis: as is, or inside base64 (kombu's message bodies) at any
    of the three alignments (the groups that would mix with neighbouring bytes are left out)."""
    raw = token.encode()
    forms = [raw]
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + raw)
        forms.append(encoded[4 if shift else 0 : -4])
    return forms


@dataclass
class RedisTraffic:
    """Every command Redis is sent while inside (its MONITOR feed, every database), as raw lines."""

    url: str
    lines: list[bytes] = field(default_factory=list)

    def __enter__(self) -> RedisTraffic:
        self._client = redis.Redis.from_url(self.url)
        self._monitor = self._client.monitor().__enter__()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, name="redis-monitor", daemon=True)
        self._thread.start()
        return self

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                line = self._monitor.connection.read_response()
            except (redis.RedisError, OSError):
                return
            if isinstance(line, bytes):
                self.lines.append(line)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._client.ping()  # one more line wakes the reader, which then sees the stop
        self._thread.join(30)
        self._monitor.__exit__()
        self._client.close()


def redis_contents(url: str) -> dict[bytes, bytes]:
    """Every key of the database with its value (any type) as bytes."""
    client = redis.Redis.from_url(url)
    contents = {}
    for key in client.scan_iter(count=500):
        kind = client.type(key).decode()
        read = {
            "string": client.get,
            "hash": client.hgetall,
            "list": lambda k: client.lrange(k, 0, -1),
            "set": client.smembers,
            "zset": lambda k: client.zrange(k, 0, -1),
            "stream": client.xrange,
        }.get(kind, lambda k: b"")
        contents[key] = repr(read(key)).encode()
    client.close()
    return contents


# --------------------------------------------------------------------------- tests


def test_web_refuses_to_start_when_redis_is_unreachable(tmp_path: Path, settings: Settings) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    env = app_env(settings, MODELMGR_REDIS_URL=dead, MODELMGR_DATA_DIR=str(tmp_path / "shared"))
    done = subprocess.run(
        [sys.executable, "app.py", "--no-ui", "--port", str(free_port())],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "error: the job queue (Redis at redis://127.0.0.1:" in done.stderr
    assert "Traceback" not in done.stderr


def test_worker_refuses_to_start_without_a_usable_shared_data_folder(
    tmp_path: Path, settings: Settings, redis_server: RedisServer
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the data folder should be")
    env = app_env(settings, MODELMGR_REDIS_URL=redis_server.url, MODELMGR_DATA_DIR=str(blocker))
    done = subprocess.run(
        [sys.executable, "-m", "modelmgr", "worker", "--name", "bad"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "is not readable and writable here" in done.stderr
    env.pop("MODELMGR_DATA_DIR")
    done = subprocess.run(
        [sys.executable, "-m", "modelmgr", "worker"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0 and "set MODELMGR_DATA_DIR" in done.stderr


def test_without_workers_jobs_wait_queued_and_health_says_so(
    tmp_path: Path, hub: FakeHub, redis_server: RedisServer, tiny
) -> None:
    # Database 1 of the same Redis: a cluster of its own, with no worker connected.
    settings = cluster_settings(hub, tmp_path, redis_server.url.replace("/0", "/1"), "lonely")
    with run_server(settings) as web:
        health = httpx.get(f"{web.url}/api/health", timeout=30).json()
        assert health["mode"] == "distributed" and health["redis"] == "ok" and health["workers"] == 0
        assert "no worker is connected" in health["warning"]
        from modelmgr.web.ui.wiring import _workers_html

        assert "No worker is connected" in _workers_html(web.services)
        created = submit(web.url, tiny.wav)
        assert created.status_code == 202, created.text
        job_id = created.json()["id"]
        assert job_state(web.url, job_id)["status"] == "queued"
        assert job_state(web.url, job_id)["queue_position"] == 1
        assert (
            httpx.delete(f"{web.url}/api/transcriptions/{job_id}", timeout=30).json()["status"] == "deleted"
        )
        assert httpx.get(f"{web.url}/api/transcriptions/{job_id}", timeout=30).status_code == 404

        # A job left "transcribing" by a worker that died (nobody holds its claim) is cancelled at
        # once, not when Redis hands it out again hours later.
        stale = submit(web.url, tiny.wav).json()["id"]
        state = web.services.transcriptions.state
        state.save(state.load(stale) | {"status": "transcribing", "worker": "gone"})
        assert job_state(web.url, stale)["status"] == "transcribing"
        answer = httpx.delete(f"{web.url}/api/transcriptions/{stale}", timeout=30).json()
        assert answer["status"] == "deleted" and answer["job"]["status"] == "cancelled"


def test_ten_jobs_spread_over_two_workers_and_every_result_is_correct(cluster: Cluster, tiny) -> None:
    url = cluster.web.url
    with held(cluster):
        ids = []
        for _ in range(10):
            created = submit(url, tiny.wav)
            assert created.status_code == 202, created.text
            ids.append(created.json()["id"])

        # Both workers hold a job at once: the work is spread, not queued behind one worker.
        def both_busy() -> bool:
            running = [job_state(url, i) for i in ids]
            return {j["worker"] for j in running if j["status"] == "transcribing"} == {"w1", "w2"}

        wait_until(both_busy, TIMEOUT, "a job transcribing on each worker")
    done = [wait_job(url, i) for i in ids]
    assert [j["status"] for j in done] == ["done"] * 10, [j["error"] for j in done]
    assert {j["worker"] for j in done} == {"w1", "w2"}
    assert all(j["attempt"] == 1 and j["retries"] == [] for j in done)
    for job_id in ids:
        assert_correct_result(url, job_id)
    listed = httpx.get(f"{url}/api/transcriptions", timeout=30).json()["jobs"]
    assert set(ids) <= {j["id"] for j in listed}

    info = {w["name"]: w for w in workers(cluster)}
    for name in ("w1", "w2"):
        assert info[name]["device"] == "cpu" and info[name]["current_job"] is None
        assert "tiny" in info[name]["loaded"] and "tiny" in info[name]["models_on_disk"]
        assert "model.tiny" in info[name]["queues"] and info[name]["heartbeat_age_s"] < 10


def test_worker_events_reach_an_sse_client_in_order_and_after_a_reconnect(cluster: Cluster, tiny) -> None:
    url = cluster.web.url
    reader = SSEReader(f"{url}/api/events")
    try:
        reader.wait_for(lambda evs: any(e.event == "snapshot" for e in evs), 60, "the snapshot")
        created = submit(url, tiny.wav)
        job_id = created.json()["id"]

        def mine(evs: list) -> list:
            return [e for e in evs if e.event == "transcription" and e.json()["id"] == job_id]

        reader.wait_for(lambda evs: any(e.json()["status"] == "done" for e in mine(evs)), TIMEOUT, "done")
        events = mine(reader.events)
    finally:
        reader.close()
    ids = [int(e.id) for e in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    stages = list(dict.fromkeys(e.json()["status"] for e in events))
    assert stages == ["queued", "loading", "transcribing", "aligning", "done"], stages
    assert any(e.json().get("segment") for e in events), "segments stream from the worker"
    assert events[-1].json()["worker"] in ("w1", "w2")
    assert events[-1].json()["queue"] == "model.tiny", "routed to the idle workers that have tiny loaded"

    # Reconnect from the middle: the missed events come back, same ids, same order.
    middle = events[len(events) // 2]
    again = SSEReader(f"{url}/api/events", last_event_id=middle.id)
    try:
        replayed = again.wait_for(
            lambda evs: (m := mine(evs)) and m[-1].json()["status"] == "done" and m, 60, "the replay"
        )
    finally:
        again.close()
    assert [e.id for e in replayed] == [e.id for e in events if int(e.id) > int(middle.id)]
    assert not any(e.event == "snapshot" for e in again.events[: len(replayed)])


def test_the_openai_api_runs_on_the_workers_and_streams_their_segments(cluster: Cluster, tiny) -> None:
    from openai import OpenAI

    openai = OpenAI(base_url=f"{cluster.web.url}/v1", api_key="none", timeout=TIMEOUT, max_retries=0)
    with tiny.wav.open("rb") as f:
        text = openai.audio.transcriptions.create(model="tiny", file=f, language="zh", response_format="text")
    assert text.strip() == "你好世界 hello world"
    with tiny.wav.open("rb") as f:
        events = list(openai.audio.transcriptions.create(model="tiny", file=f, language="zh", stream=True))
    assert [e.type for e in events] == [
        "transcript.text.delta",
        "transcript.text.delta",
        "transcript.text.done",
    ]
    assert events[-1].text == "你好世界 hello world"
    assert [m.id for m in openai.models.list()] == ["tiny"], "what the workers have, not the web's cache"
    assert not (cluster.settings.hub_cache / "models--Systran--faster-whisper-tiny").exists()


def test_the_transcribe_tab_s_jobs_run_on_the_workers(cluster: Cluster, tiny) -> None:
    from modelmgr.asr.jobs import JobOptions
    from modelmgr.web.ui.wiring import job_segments, submit_copy

    services = cluster.web.services
    options = JobOptions(model="tiny", language="zh")
    job = submit_copy(services.transcriptions, tiny.wav, "speech.wav", options)
    assert job.done.wait(TIMEOUT), "the relay finishes the job this process handed out"
    assert job.status == "done", job.error
    drawn = {j["id"]: j for j in services.transcriptions.snapshot()}[job.id]  # what the UI timer draws
    assert drawn["status"] == "done" and drawn["worker"] in ("w1", "w2")
    assert "你好世界" in job_segments(services.transcriptions, drawn)
    assert services.preload.status()["state"] == "idle", "nothing loaded in the web process"


def test_cancel_reaches_a_job_on_a_remote_worker(cluster: Cluster, tiny) -> None:
    url = cluster.web.url
    with held(cluster):
        job_id = submit(url, tiny.wav).json()["id"]
        running = wait_job(url, job_id, "transcribing")
        assert running["worker"] in ("w1", "w2")
        answer = httpx.delete(f"{url}/api/transcriptions/{job_id}", timeout=30).json()
        assert answer["status"] == "cancelling"
        cancelled = wait_job(url, job_id, *FINISHED, timeout=60)
    assert cancelled["status"] == "cancelled"
    result = httpx.get(f"{url}/api/transcriptions/{job_id}/result?format=txt", timeout=30)
    assert result.status_code == 409
    # The worker is free again: the next job runs.
    after = submit(url, tiny.wav).json()["id"]
    assert wait_job(url, after)["status"] == "done"


def test_a_second_web_process_sees_and_cancels_a_job_of_the_first(cluster: Cluster, tiny) -> None:
    env = {
        "MODELMGR_REDIS_URL": cluster.redis.url,
        "MODELMGR_DATA_DIR": str(cluster.settings.data_dir),
        "HF_HOME": str(cluster.root / "web2" / "hf"),
    }
    with fresh_server(cluster.settings, cluster.root, **env) as other:
        health = httpx.get(f"{other.url}/api/health", timeout=30).json()
        assert health["mode"] == "distributed" and health["workers"] == 2
        with held(cluster):
            job_id = submit(cluster.web.url, tiny.wav).json()["id"]
            seen = wait_job(other.url, job_id, "transcribing")
            assert seen["file"]["name"] == "speech.wav"
            answer = httpx.delete(f"{other.url}/api/transcriptions/{job_id}", timeout=30)
            assert answer.status_code == 200 and answer.json()["status"] == "cancelling"
            assert wait_job(cluster.web.url, job_id, *FINISHED, timeout=60)["status"] == "cancelled"
        # And the other way: a finished job of the second is served by the first.
        second = submit(other.url, tiny.wav).json()["id"]
        assert wait_job(cluster.web.url, second)["status"] == "done"
        assert_correct_result(cluster.web.url, second)


def test_download_to_all_workers_and_preload_on_one(cluster: Cluster) -> None:
    url = cluster.web.url
    sent = httpx.post(f"{url}/api/workers/download", json={"model": "base"}, timeout=30)
    assert sent.status_code == 202, sent.text
    assert sorted(sent.json()["workers"]) == ["w1", "w2"]

    def everywhere() -> bool:
        return all("base" in w["models_on_disk"] for w in workers(cluster))

    wait_until(everywhere, TIMEOUT, "base on every worker's disk")
    relayed = [e.data for e in list(cluster.web.services.bus._replay) if e.name == "worker_model_progress"]
    finished = {d["worker"] for d in relayed if d.get("model") == "base" and d.get("status") == "downloaded"}
    assert finished == {"w1", "w2"}, "each worker's download events reach the web process's bus"
    assert not (cluster.settings.hub_cache / "models--Systran--faster-whisper-base").exists(), (
        "the web process's own cache is untouched"
    )
    preload = httpx.post(f"{url}/api/workers/w1/preload", json={"model": "base"}, timeout=30)
    assert preload.status_code == 202, preload.text
    wait_until(
        lambda: "base" in {w["name"]: w for w in workers(cluster)}["w1"]["loaded"],
        TIMEOUT,
        "base loaded on w1",
    )
    unknown = httpx.post(f"{url}/api/workers/nobody/preload", json={"model": "base"}, timeout=30)
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "worker_not_found"
    bad = httpx.post(f"{url}/api/workers/download", json={"model": "no-such-model"}, timeout=30)
    assert bad.status_code == 404 and bad.json()["error"]["code"] == "model_not_found"


def test_system_tab_lists_the_workers(cluster: Cluster) -> None:
    from modelmgr.web.ui.wiring import _workers_html

    html = _workers_html(cluster.web.services)
    assert "w1" in html and "w2" in html and "tiny" in html and "No worker" not in html


def test_two_web_replicas_behind_nginx_share_jobs_and_the_system_tab_acts_on_workers(
    cluster: Cluster, tiny, tmp_path: Path
) -> None:
    """The shipped cluster site balances over two replicas (a fresh `python app.py` and the
    module's web process); a browser through it downloads to all workers and preloads on one."""
    from playwright.sync_api import expect, sync_playwright

    from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS, choose
    from tests.nginx import CLUSTER_SITE, run_nginx

    if not CHROMIUM.exists():
        pytest.skip(f"chromium is not installed at {CHROMIUM} (apt-get install -y chromium)")
    env = {
        "MODELMGR_REDIS_URL": cluster.redis.url,
        "MODELMGR_DATA_DIR": str(cluster.settings.data_dir),
        "HF_HOME": str(cluster.root / "web3" / "hf"),
    }
    with (
        fresh_server(cluster.settings, cluster.root, ui=True, **env) as fresh,
        run_nginx(tmp_path / "nginx", CLUSTER_SITE, cluster.web.url, fresh.url) as proxy,
    ):
        health = httpx.get(f"{proxy.url}/api/health", timeout=30)
        assert health.status_code == 200 and health.json()["mode"] == "distributed"
        # ip_hash pins this client to one replica; the access log names it. Submit on the other.
        pinned = proxy.nginx.access_log().strip().splitlines()[-1].rsplit(" ", 1)[-1]
        other = fresh.url if pinned.endswith(cluster.web.url.rsplit(":", 1)[1]) else cluster.web.url
        assert other.rsplit("//", 1)[1] != pinned, (pinned, other)
        with held(cluster):
            job_id = submit(other, tiny.wav).json()["id"]
            assert wait_job(proxy.url, job_id, "transcribing")["file"]["name"] == "speech.wav"
            answer = httpx.delete(f"{proxy.url}/api/transcriptions/{job_id}", timeout=30)
            assert answer.status_code == 200 and answer.json()["status"] == "cancelling"
            assert wait_job(other, job_id, *FINISHED, timeout=60)["status"] == "cancelled"

        def rows() -> dict[str, dict[str, Any]]:
            return {w["name"]: w for w in workers(cluster)}

        assert not any("tiny.en" in w["models_on_disk"] for w in rows().values())
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1440, "height": 1000})
                page.set_default_timeout(60_000)
                page.goto(proxy.url, timeout=120_000)
                page.get_by_role("tab", name="Models", exact=True).click()
                expect(page.locator("#models-cluster-note")).to_contain_text("run on the workers")
                page.get_by_role("tab", name="System", exact=True).click()
                table = page.locator("#workers-info")
                expect(table.locator("tr", has_text="w1")).to_be_visible(timeout=60_000)
                expect(table.locator("tr", has_text="w2")).to_be_visible()
                choose(page, "cluster-model", "tiny.en")
                page.locator("#cluster-download-btn").click()
                expect(page.locator("#cluster-status")).to_contain_text("Asked 2 worker(s)", timeout=60_000)
                wait_until(
                    lambda: all("tiny.en" in w["models_on_disk"] for w in rows().values()),
                    TIMEOUT,
                    "tiny.en on both workers' disks",
                )
                # The table shows it too (the timer redraws it), and then a row's Preload acts on w2.
                expect(table.locator("tr", has_text="w1")).to_contain_text("tiny.en", timeout=60_000)
                # (tiny.en aligns with torchaudio's English model, which the test hub only imitates.)
                choose(page, "cluster-model", "base")
                choose(page, "cluster-language", "zh")
                w1_before = rows()["w1"]["loaded"]
                table.locator('button[data-action="preload"][data-worker="w2"]').click()
                expect(page.locator("#cluster-status")).to_contain_text("Asked w2 to preload base")
                wait_until(lambda: "base" in rows()["w2"]["loaded"], TIMEOUT, "base loaded on w2")
                assert rows()["w1"]["loaded"] == w1_before, "only the worker asked"
                expect(table.locator("tr", has_text="w2")).to_contain_text("base", timeout=60_000)
            finally:
                browser.close()
        log = proxy.nginx.access_log()
        assert "/gradio_api/queue/join HTTP/1.1" in log and pinned in log


@pytest.mark.timeout(1200)
def test_a_diarizing_job_runs_on_a_worker_with_its_own_token_which_never_travels_through_redis(
    cluster: Cluster, pyannote_published: FakeHub, tiny_pyannote, dialogue
) -> None:
    """(After the nginx test, which wants tiny.en on no worker before it downloads it.)

    The web process has no token and leaves the gated check to the workers; a worker with
    HF_TOKEN in its own environment fetches the pyannote models once and diarizes; no command
    sent to Redis and no value left there holds the token, plain or base64."""
    hub, url = pyannote_published, cluster.web.url
    segmentation = tiny_models.PYANNOTE_SEGMENTATION, "pytorch_model.bin"
    before = hub.bytes_sent(*segmentation)
    with RedisTraffic(cluster.redis.url) as traffic:
        created = submit(url, dialogue.path, model="tiny.en", language="en", diarize="true")
        assert created.status_code == 202, created.text
        job_id = created.json()["id"]
        done = wait_job(url, job_id, timeout=600)  # the first diarizing job imports pyannote
    assert done["status"] == "done", done["error"]
    assert done["worker"] in ("w1", "w2")
    assert done["options"]["diarize"] is True and done["options"]["diarize_model"] == DIARIZER
    labels = [s["id"] for s in done["speakers"] or ()]
    assert labels and all(re.match(r"^SPEAKER_\d\d$", label) for label in labels), done["speakers"]
    result = f"{url}/api/transcriptions/{job_id}/result"
    data = httpx.get(result, params={"format": "json"}, timeout=30).json()
    assert [s["id"] for s in data["speakers"]] == labels
    assert all(seg["speaker_id"] in labels for seg in data["segments"]), "every segment has a speaker"
    srt = httpx.get(result, params={"format": "srt"}, timeout=30).text
    assert len(re.findall(r"^\[SPEAKER_\d\d\] \S", srt, re.M)) == len(data["segments"]), srt[:600]
    size = (tiny_pyannote.segmentation / segmentation[1]).stat().st_size
    assert hub.bytes_sent(*segmentation) - before == size, "one worker fetched the gated model, once"
    assert not (cluster.settings.hub_cache / "models--pyannote--speaker-diarization-3.1").exists(), (
        "the web process fetches nothing"
    )
    forms = token_forms(ACCEPTED_TOKEN)
    assert traffic.lines and any(job_id.encode() in line for line in traffic.lines), "the monitor saw the job"
    leaked = [line[:300] for line in traffic.lines if any(f in line for f in forms)]
    assert leaked == [], leaked
    stored = redis_contents(cluster.redis.url)
    assert any(job_id.encode() in k + v for k, v in stored.items()), "the job's state is in Redis"
    assert [k for k, v in stored.items() if any(f in k + v for f in forms)] == []
    for worker in cluster.workers.values():
        assert ACCEPTED_TOKEN not in worker.output(), f"{worker.name} logged the token"


def test_a_job_stranded_in_a_queue_nobody_consumes_is_re_queued(cluster: Cluster, tiny) -> None:
    # Routed to the model queue of a worker that has since died (nobody consumes it now).
    manager = cluster.web.services.transcriptions
    real = manager._route
    manager._route = lambda model_id: "model.of-a-dead-worker"
    try:
        job_id = submit(cluster.web.url, tiny.wav).json()["id"]
    finally:
        manager._route = real
    assert job_state(cluster.web.url, job_id)["queue"] == "model.of-a-dead-worker"
    done = wait_job(cluster.web.url, job_id)
    assert done["status"] == "done" and done["queue"] == "default" and done["attempt"] == 1
    assert_correct_result(cluster.web.url, job_id)


def test_a_killed_worker_s_job_finishes_on_the_other_once(cluster: Cluster, tiny) -> None:
    url = cluster.web.url
    before = {j["id"] for j in httpx.get(f"{url}/api/transcriptions", timeout=30).json()["jobs"]}
    with held(cluster):
        job_id = submit(url, tiny.wav).json()["id"]
        running = wait_job(url, job_id, "transcribing")
        victim = cluster.workers[running["worker"]]
        os.kill(victim.process.pid, signal.SIGKILL)
        victim.process.wait(30)
        # The web process sees the claim expire and the heartbeat go, and re-queues the job.
        retried = wait_until(
            lambda: (j := job_state(url, job_id))["attempt"] >= 2 and j, TIMEOUT, "the job to be retried"
        )
        assert retried["worker"] != victim.name
    done = wait_job(url, job_id)
    assert done["status"] == "done", done["error"]
    assert done["attempt"] == 2 and done["worker"] != victim.name
    assert [r["lost_worker"] for r in done["retries"]] == [victim.name]
    assert_correct_result(url, job_id)
    # Exactly one result: one "done" event, one job, one set of result files.
    assert [e.data["status"] for e in job_events(cluster.web, job_id)].count("done") == 1
    after = {j["id"] for j in httpx.get(f"{url}/api/transcriptions", timeout=30).json()["jobs"]}
    assert after - before == {job_id}
    folder = Path(cluster.settings.jobs_dir) / job_id
    assert sorted(p.name for p in folder.glob("result.*")) == [
        f"result.{f}" for f in ("json", "srt", "txt", "vtt")
    ]
    assert wait_until(
        lambda: {w["name"] for w in workers(cluster)} == {done["worker"]}, 30, "the dead worker to go"
    )


def test_redis_stopped_and_restarted_submit_answers_503_then_works_and_nothing_is_lost(
    cluster: Cluster, tiny
) -> None:
    url = cluster.web.url
    with held(cluster):
        in_flight = submit(url, tiny.wav).json()["id"]
        wait_job(url, in_flight, "transcribing")
        cluster.redis.stop(save=True)
        health = httpx.get(f"{url}/api/health", timeout=30)
        assert health.status_code == 503 and health.json()["redis"] == "unreachable"
        refused = submit(url, tiny.wav)
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == "queue_unavailable"
        from modelmgr.web.ui.wiring import _workers_html

        assert "job queue is unavailable" in _workers_html(cluster.web.services)
    # The held job goes on while Redis is away; its final state waits for Redis.
    cluster.redis.start()
    wait_until(
        lambda: httpx.get(f"{url}/api/health", timeout=30).json().get("workers", 0) >= 1, 60, "a worker back"
    )
    assert wait_job(url, in_flight)["status"] == "done"
    assert_correct_result(url, in_flight)
    after = submit(url, tiny.wav)
    assert after.status_code == 202, after.text
    assert wait_job(url, after.json()["id"])["status"] == "done"
    # Every job of the module is still listed.
    assert len(httpx.get(f"{url}/api/transcriptions", timeout=30).json()["jobs"]) >= 16


def test_finished_jobs_past_retention_are_swept_from_redis_and_disk(cluster: Cluster) -> None:
    url = cluster.web.url
    jobs = httpx.get(f"{url}/api/transcriptions", timeout=30).json()["jobs"]
    finished = [j["id"] for j in jobs if j["status"] in FINISHED]
    assert finished
    newest = max(j["finished_at"] for j in jobs if j["status"] in FINISHED)
    short = cluster.settings.model_copy(
        update={"transcription_retention_s": 0.5, "hf_home": cluster.root / "sweeper" / "hf"}
    )
    wait_until(lambda: time.time() - newest > 1.0, 10, "every finished job to pass the retention period")

    def swept() -> bool:
        return all(
            httpx.get(f"{url}/api/transcriptions/{i}", timeout=30).status_code == 404 for i in finished
        )

    with run_server(short):  # a replica with a short retention sweeps when its relay starts
        wait_until(swept, 60, "the expired jobs to be swept")
    assert not any((cluster.settings.jobs_dir / i).exists() for i in finished)
