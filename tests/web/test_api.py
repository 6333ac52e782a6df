"""The HTTP API against a real uvicorn on 127.0.0.1: REST contract, SSE, errors, auth."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from httpx_sse import connect_sse
from pydantic import SecretStr

from tests.conftest import LiveServer, run_server, wait_until
from tests.hub import FakeHub

TINY = "Systran/faster-whisper-tiny"
ZH_ALIGN = "jonatasgrosman/wav2vec2-large-xlsr-53-chinese-zh-cn"


class SSEReader:
    """Reads one SSE stream in a thread and keeps every event, for tests to wait on."""

    def __init__(self, url: str, last_event_id: str | None = None) -> None:
        self.events: list = []
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._client = httpx.Client(timeout=httpx.Timeout(60, connect=10))
        headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
        self._thread = threading.Thread(target=self._read, args=(url, headers), daemon=True)
        self._thread.start()

    def _read(self, url: str, headers: dict) -> None:
        try:
            with connect_sse(self._client, "GET", url, headers=headers) as source:
                for event in source.iter_sse():
                    if self._stop.is_set():
                        return
                    with self._cond:
                        self.events.append(event)
                        self._cond.notify_all()
        except (httpx.HTTPError, RuntimeError):
            pass
        finally:
            with self._cond:
                self.ended = True
                self._cond.notify_all()

    ended = False

    def wait_for(self, predicate, timeout: float = 60, what: str = "event"):
        with self._cond:
            if not self._cond.wait_for(lambda: predicate(self.events) or self.ended, timeout):
                raise AssertionError(f"timed out waiting for {what}; got {[e.event for e in self.events]}")
            result = predicate(self.events)
            assert result, f"stream ended before {what}"
            return result

    def wait_ended(self, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self.ended, timeout)

    def close(self) -> None:
        self._stop.set()  # the reader leaves at the next event or heartbeat
        self._client.close()
        self._thread.join(10)


def progress_of(events: list, model: str) -> list[dict]:
    return [
        json.loads(e.data)
        for e in events
        if e.event == "model_progress" and json.loads(e.data)["model"] == model
    ]


def model_status(live: LiveServer, model_id: str) -> str:
    return httpx.get(f"{live.url}/api/models/{model_id}", timeout=60).json()["status"]


def test_health_models_and_contract_shapes(live_server: LiveServer) -> None:
    assert httpx.get(f"{live_server.url}/api/health", timeout=60).json() == {"status": "ok"}
    models = httpx.get(f"{live_server.url}/api/models", timeout=60).json()["models"]
    ids = {m["id"] for m in models}
    assert {"tiny", "large-v3", "turbo", ZH_ALIGN, "WAV2VEC2_ASR_BASE_960H"} <= ids
    tiny = next(m for m in models if m["id"] == "tiny")
    assert set(tiny) == {
        "id",
        "repo_id",
        "kind",
        "language",
        "size_bytes",
        "size_source",
        "status",
        "progress",
        "error",
        "error_code",
        "align_models",
        "parts",
        "gated",
        "integrity",
        "verify",
        "revision",
        "update_available",
    }
    assert tiny["integrity"] is None and tiny["verify"] is None  # nothing on disk, no verify yet
    assert set(tiny["progress"]) == {"bytes_done", "bytes_total", "percent", "speed_bps", "eta_s"}
    assert tiny["size_source"] == "approximate" and tiny["size_bytes"] > 0  # known before a download
    assert tiny["status"] == "not_downloaded"
    status = httpx.get(f"{live_server.url}/api/preload/status", timeout=60)
    assert status.status_code == 200 and status.json()["state"] == "idle"
    system = httpx.get(f"{live_server.url}/api/system", timeout=60).json()
    assert system["disk"]["free_bytes"] > 0 and system["ram"]["total_bytes"] > 0


def test_fifty_concurrent_requests_start_exactly_one_download(live_server: LiveServer, hub: FakeHub) -> None:
    hub.pause()
    url = f"{live_server.url}/api/models/tiny/download"
    with (
        httpx.Client(timeout=30, limits=httpx.Limits(max_connections=50)) as client,
        ThreadPoolExecutor(50) as pool,
    ):
        answers = list(pool.map(lambda _: client.post(url, json={"with_align": False}), range(50)))
    hub.resume()
    assert {a.status_code for a in answers} == {202}
    statuses = [a.json()["status"] for a in answers]
    assert statuses.count("started") == 1, statuses
    assert statuses.count("already_downloading") == 49
    wait_until(lambda: model_status(live_server, "tiny") == "downloaded", what="tiny downloaded")
    for path in ("model.bin", "config.json", "tokenizer.json", "preprocessor_config.json"):
        assert hub.get_count(TINY, path) == 1, path


def test_sse_snapshot_then_rising_progress_then_downloaded(live_server: LiveServer, hub: FakeHub) -> None:
    reader = SSEReader(f"{live_server.url}/api/events")
    try:
        reader.wait_for(lambda ev: ev, what="first event")
        assert reader.events[0].event == "snapshot"
        snapshot = json.loads(reader.events[0].data)
        assert {"models", "preload"} <= set(snapshot)
        hub.set_throttle(1_500_000)
        httpx.post(f"{live_server.url}/api/models/tiny/download", json={"languages": ["zh"]}, timeout=60)
        reader.wait_for(
            lambda ev: any(p["status"] == "downloaded" for p in progress_of(ev, ZH_ALIGN)),
            what="bundled alignment model downloaded",
        )
        tiny = progress_of(reader.events, "tiny")
        percents = [p["progress"]["percent"] for p in tiny if p["status"] == "downloading"]
        assert len(percents) >= 3 and percents == sorted(percents) and percents[-1] > percents[0]
        assert tiny[-1]["status"] == "downloaded" and tiny[-1]["progress"]["percent"] == 100.0
        assert tiny[-1]["repo_id"] == TINY
        ids = [int(e.id) for e in reader.events if e.id]
        assert ids == sorted(ids)
        first_align = next(
            i
            for i, e in enumerate(reader.events)
            if e.event == "model_progress" and json.loads(e.data)["model"] == ZH_ALIGN
        )
        tiny_done = next(
            i
            for i, e in enumerate(reader.events)
            if e.event == "model_progress" and json.loads(e.data) == tiny[-1]
        )
        assert tiny_done < first_align, "the alignment model follows the Whisper model"
    finally:
        reader.close()


def test_progress_events_are_rate_limited_per_model(settings, hub: FakeHub) -> None:
    settings = settings.model_copy(update={"progress_interval_s": 0.1})
    with run_server(settings) as live:
        reader = SSEReader(f"{live.url}/api/events")
        try:
            reader.wait_for(lambda ev: ev, what="snapshot")
            hub.set_throttle(2_000_000)
            started = time.monotonic()
            httpx.post(f"{live.url}/api/models/tiny/download", json={"with_align": False}, timeout=60)
            reader.wait_for(
                lambda ev: any(p["status"] == "downloaded" for p in progress_of(ev, "tiny")),
                what="downloaded",
            )
            elapsed = time.monotonic() - started
            count = len(progress_of(reader.events, "tiny"))
            assert count <= elapsed * 10 + 6, f"{count} events in {elapsed:.1f}s"
        finally:
            reader.close()


def test_hundred_clients_all_get_events_and_leave_no_subscriber(
    live_server: LiveServer, hub: FakeHub
) -> None:
    async def scenario() -> None:
        limits = httpx.Limits(max_connections=200)
        async with httpx.AsyncClient(timeout=60, limits=limits) as client:

            async def one(i: int, started: asyncio.Event, done: asyncio.Event) -> int:
                got = 0
                async with client.stream("GET", f"{live_server.url}/api/events") as response:
                    async for line in response.aiter_lines():
                        if line.startswith("event: snapshot"):
                            started.set()
                        if line.startswith("event: model_progress"):
                            got += 1
                            if got >= 1:
                                return got
                return got

            starts = [asyncio.Event() for _ in range(100)]
            tasks = [asyncio.create_task(one(i, starts[i], asyncio.Event())) for i in range(100)]
            await asyncio.wait_for(asyncio.gather(*(s.wait() for s in starts)), 120)
            assert live_server.services.bus.subscriber_count == 100
            await client.post(f"{live_server.url}/api/models/tiny/download", json={"with_align": False})
            results = await asyncio.wait_for(asyncio.gather(*tasks), 120)
            assert all(r >= 1 for r in results)

    asyncio.run(scenario())
    wait_until(lambda: live_server.services.bus.subscriber_count == 0, 30, "subscribers to be removed")


def test_reconnect_with_last_event_id_receives_what_was_missed(live_server: LiveServer, hub: FakeHub) -> None:
    first = SSEReader(f"{live_server.url}/api/events")
    first.wait_for(lambda ev: ev, what="snapshot")
    last_id = first.events[0].id
    first.close()
    wait_until(lambda: live_server.services.bus.subscriber_count == 0, 30, "first client to leave")
    httpx.post(f"{live_server.url}/api/models/tiny/download", json={"with_align": False}, timeout=60)
    wait_until(lambda: model_status(live_server, "tiny") == "downloaded", what="download while away")
    second = SSEReader(f"{live_server.url}/api/events", last_event_id=last_id)
    try:
        second.wait_for(
            lambda ev: any(p["status"] == "downloaded" for p in progress_of(ev, "tiny")),
            what="missed completion",
        )
        assert second.events[0].event != "snapshot", "replayed, not resnapshotted"
        ids = [int(e.id) for e in second.events if e.id]
        assert ids[0] == int(last_id) + 1 and ids == list(range(ids[0], ids[0] + len(ids)))
    finally:
        second.close()


def test_health_answers_quickly_during_a_download_with_clients(live_server: LiveServer, hub: FakeHub) -> None:
    readers = [SSEReader(f"{live_server.url}/api/events") for _ in range(20)]
    try:
        for r in readers:
            r.wait_for(lambda ev: ev, what="snapshot")
        hub.set_throttle(1_000_000)
        httpx.post(f"{live_server.url}/api/models/tiny/download", json={"with_align": False}, timeout=60)
        wait_until(lambda: model_status(live_server, "tiny") == "downloading", what="downloading")
        latencies = []
        with httpx.Client() as client:
            for _ in range(20):
                t0 = time.perf_counter()
                assert client.get(f"{live_server.url}/api/health").status_code == 200
                latencies.append(time.perf_counter() - t0)
        assert model_status(live_server, "tiny") == "downloading", "measured during the download"
        assert max(latencies) < 1.0, latencies  # generous; bench/loop_latency.py has the real figures
    finally:
        for r in readers:
            r.close()


BAD_INPUTS = [
    ("POST", "/api/models/nope/download", None, 404, "model_not_found"),
    ("POST", "/api/models/..%2F..%2Fetc/download", None, 400, "invalid_input"),
    ("POST", "/api/models/%2E%2E/%2E%2E/etc/download", None, 400, "invalid_input"),
    ("POST", "/api/models/org/../../etc/download", None, 404, "not_found"),  # the client resolves the dots
    ("DELETE", "/api/models/%2E%2E%2F%2E%2E%2Fhub", None, 400, "invalid_input"),
    ("POST", "/api/models/tiny/download", b"{not json", 400, "malformed_json"),
    ("POST", "/api/models/tiny/download", {"languages": "zh"}, 422, "validation_error"),
    ("POST", "/api/models/tiny/download", {"languages": ["xx"]}, 400, "unknown_language"),
    ("POST", "/api/models/tiny/download", {"with_align": "yes"}, 422, "validation_error"),
    ("POST", "/api/models/tiny.en/download", {"languages": ["zh"]}, 400, "unknown_language"),
    ("POST", "/api/preload/start", {"model": "tiny.en", "language": "zh"}, 400, "unknown_language"),
    ("POST", "/api/models/tiny/download", {"surprise": 1}, 422, "validation_error"),
    ("POST", "/api/models/tiny/download", b"[1, 2]", 422, "validation_error"),
    ("POST", "/api/models/tiny/cancel", None, 409, "not_downloading"),
    ("DELETE", "/api/models/nope", None, 404, "model_not_found"),
    ("POST", "/api/preload/start", {"model": "tiny", "device": "tpu"}, 400, "unknown_device"),
    ("POST", "/api/preload/start", {"model": "tiny", "language": "xx"}, 400, "unknown_language"),
    ("POST", "/api/preload/start", {"model": ZH_ALIGN}, 400, "invalid_input"),
    ("POST", "/api/preload/start", {"model": 5}, 422, "validation_error"),
    ("POST", "/api/preload/start", {}, 422, "validation_error"),
    ("POST", "/api/preload/start", b"x" * (1024 * 1024 + 1), 413, "payload_too_large"),
    ("GET", "/api/nothing-here", None, 404, "not_found"),
]


def test_every_bad_input_gets_a_json_4xx_and_changes_nothing(live_server: LiveServer, hub: FakeHub) -> None:
    before = httpx.get(f"{live_server.url}/api/models", timeout=60).json()
    preload_before = httpx.get(f"{live_server.url}/api/preload/status", timeout=60).json()["state"]
    with httpx.Client(base_url=live_server.url) as client:
        for method, path, body, status, code in BAD_INPUTS:
            if isinstance(body, bytes):
                response = client.request(
                    method, path, content=body, headers={"content-type": "application/json"}
                )
            else:
                response = client.request(method, path, json=body)
            assert response.status_code == status, (method, path, body, response.text)
            error = response.json()["error"]
            assert error["code"] == code, (path, error)
            assert error["message"]
    assert httpx.get(f"{live_server.url}/api/models", timeout=60).json() == before
    assert httpx.get(f"{live_server.url}/api/preload/status", timeout=60).json()["state"] == preload_before
    assert not [r for r in hub.requests if "/resolve/" in r[1]], "no download was started"
    assert live_server.services.downloads.transfers_started == 0


def test_delete_and_cancel_over_http(live_server: LiveServer, hub: FakeHub, settings) -> None:
    hub.pause()
    assert (
        httpx.post(
            f"{live_server.url}/api/models/tiny/download", json={"with_align": False}, timeout=60
        ).json()["status"]
        == "started"
    )
    conflict = httpx.delete(f"{live_server.url}/api/models/tiny", timeout=60)
    assert conflict.status_code == 409 and conflict.json()["error"]["code"] == "model_busy"
    assert httpx.post(f"{live_server.url}/api/models/tiny/cancel", timeout=60).status_code == 202
    hub.resume()
    wait_until(lambda: model_status(live_server, "tiny") == "cancelled", what="cancelled")
    assert not [p for p in settings.hf_home.rglob("*.incomplete")]
    httpx.post(f"{live_server.url}/api/models/tiny/download", json={"with_align": False}, timeout=60)
    wait_until(lambda: model_status(live_server, "tiny") == "downloaded", what="downloaded")
    deleted = httpx.delete(f"{live_server.url}/api/models/tiny", timeout=60)
    assert deleted.status_code == 200 and deleted.json()["freed_bytes"] > 0
    assert model_status(live_server, "tiny") == "not_downloaded"


def test_auth_token_guards_the_api_but_not_health(settings) -> None:
    with run_server(settings.model_copy(update={"auth_token": SecretStr("s3cret")})) as live:
        assert httpx.get(f"{live.url}/api/health", timeout=60).status_code == 200
        denied = httpx.post(f"{live.url}/api/models/tiny/download", timeout=60)
        assert denied.status_code == 401 and denied.json()["error"]["code"] == "unauthorized"
        assert (
            httpx.get(
                f"{live.url}/api/models", headers={"Authorization": "Bearer wrong"}, timeout=60
            ).status_code
            == 401
        )
        assert (
            httpx.get(
                f"{live.url}/api/models", headers={"Authorization": "Bearer s3cret"}, timeout=60
            ).status_code
            == 200
        )
        assert httpx.get(f"{live.url}/api/preload/status?token=s3cret", timeout=60).status_code == 200


def test_shutdown_ends_open_streams_promptly(settings) -> None:
    with run_server(settings) as live:
        readers = [SSEReader(f"{live.url}/api/events") for _ in range(5)]
        for r in readers:
            r.wait_for(lambda ev: ev, what="snapshot")
        started = time.monotonic()
    assert time.monotonic() - started < 10
    for r in readers:
        assert r.wait_ended(10), "the stream was ended by the server"
        r.close()


@pytest.mark.parametrize("path", ["/api/preload/status", "/api/system", "/api/models/tiny"])
def test_read_routes_answer_json(live_server: LiveServer, path: str) -> None:
    response = httpx.get(f"{live_server.url}{path}", timeout=60)
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/json")


def test_idle_stream_gets_heartbeats(live_server: LiveServer) -> None:
    reader = SSEReader(f"{live_server.url}/api/events")
    try:
        reader.wait_for(lambda ev: any(e.event == "ping" for e in ev), 30, "a heartbeat")
        snapshot_id = reader.events[0].id
        pings = [e for e in reader.events if e.event == "ping"]
        assert all(e.id == snapshot_id for e in pings), "heartbeats carry no id of their own"
    finally:
        reader.close()


def test_system_reports_disk_total_and_free(live_server: LiveServer) -> None:
    disk = httpx.get(f"{live_server.url}/api/system", timeout=60).json()["disk"]
    assert 0 < disk["free_bytes"] <= disk["total_bytes"]
