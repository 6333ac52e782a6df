"""Hardening (issue 7): hung hubs, named faults, a cache that never lies, one job per repository.

Each test reproduces one finding of the hostile review first, then proves the fix,
with the real huggingface_hub client and `hf` CLI against tests/hub.py.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from modelmgr.core.errors import DiskFull, InvalidInput, ModelBusy, ModelInUse
from modelmgr.core.settings import Settings
from modelmgr.services import Services
from tests.conftest import ZH_ALIGN
from tests.hf_cli import assert_hf_cache_verify_clean, hf
from tests.hub import BlackHole, FakeHub
from tests.live import LiveServer, run_server, wait_until

TINY_REPO = "Systran/faster-whisper-tiny"


def _download(services: Services, model_id: str, timeout: float = 60) -> str:
    result = services.downloads.start(model_id, with_align=False)
    if result.job is not None:
        assert result.job.done.wait(timeout), f"{model_id} did not finish"
    return services.downloads.describe(services.catalog.get(model_id))["status"]


def _blob(services: Services, model_id: str, path: str) -> Path:
    spec = services.catalog.get(model_id)
    manifest = services.store.load_manifest(spec)
    assert manifest is not None
    return next(t.final for t in services.store.targets(spec, manifest) if t.entry.path == path)


# --- hangs -------------------------------------------------------------------------------
def test_black_hole_hub_cancel_ends_the_job_and_the_queue_moves_on(settings: Settings) -> None:
    with BlackHole() as hole:
        hung = settings.model_copy(update={"hf_endpoint": hole.url, "download_timeout_s": 60.0})
        services = Services.build(hung)
        try:
            first = services.downloads.start("tiny", with_align=False)
            second = services.downloads.start("base", with_align=False)
            assert (first.status, second.status) == ("started", "queued")
            wait_until(lambda: hole.accepted >= 1, 30, "the metadata call to reach the black hole")
            services.downloads.cancel("tiny")
            assert first.job is not None and first.job.done.wait(5), "cancel did not end the job"
            assert first.job.status == "cancelled"
            # The job behind it starts at once (and hangs on the same hole until cancelled).
            wait_until(lambda: second.job is not None and second.job.status == "downloading", 10)
            services.downloads.cancel("base")
            assert second.job is not None and second.job.done.wait(5)
            assert services.downloads.delete("tiny") == 0  # no 409: nothing holds it
        finally:
            services.shutdown()


def test_black_hole_hub_times_out_with_a_named_error(settings: Settings, caplog) -> None:
    caplog.set_level(logging.INFO)
    with BlackHole() as hole:
        services = Services.build(
            settings.model_copy(update={"hf_endpoint": hole.url, "download_timeout_s": 1.0})
        )
        try:
            result = services.downloads.start("tiny", with_align=False)
            assert result.job is not None and result.job.done.wait(30)
            model = services.downloads.describe(services.catalog.get("tiny"))
            assert model["status"] == "error"
            assert "did not answer in time" in model["error"] and "HF_ENDPOINT" in model["error"]
            assert "unexpected" not in model["error"]
            assert not [r for r in caplog.records if r.exc_info], "a traceback was logged for a timeout"
        finally:
            services.shutdown()


def test_closed_port_is_hub_unreachable_without_a_traceback(settings: Settings, caplog) -> None:
    caplog.set_level(logging.INFO)
    import socket

    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    services = Services.build(settings.model_copy(update={"hf_endpoint": f"http://127.0.0.1:{port}"}))
    try:
        result = services.downloads.start("tiny", with_align=False)
        assert result.job is not None and result.job.done.wait(30)
        error = services.downloads.describe(services.catalog.get("tiny"))["error"]
        assert error.startswith("cannot reach") and "HF_ENDPOINT" in error
        assert "unexpected" not in error
        assert not [r for r in caplog.records if r.exc_info]
    finally:
        services.shutdown()


# --- one job per repository --------------------------------------------------------------
def test_an_alias_shares_its_twins_job_and_cannot_be_deleted_under_it(
    services: Services, hub: FakeHub, tiny
) -> None:
    hub.add_repo_from_dir("Systran/faster-whisper-large-v3", tiny.whisper)
    hub.set_throttle(400_000)
    first = services.downloads.start("large-v3", with_align=False)
    twin = services.downloads.start("large", with_align=False)
    assert first.status == "started" and twin.status == "already_downloading"
    assert twin.job is first.job
    assert services.downloads.describe(services.catalog.get("large"))["status"] == "downloading"
    with pytest.raises(ModelBusy):
        services.downloads.delete("large")
    hub.set_throttle(None)
    assert first.job is not None and first.job.done.wait(60)
    assert first.job.status == "downloaded", first.job.error
    assert services.downloads.transfers_started == 1
    assert services.downloads.describe(services.catalog.get("large"))["status"] == "downloaded"
    assert hub.get_count("Systran/faster-whisper-large-v3", "model.bin") == 1


def test_delete_of_a_loaded_model_is_refused_inside_the_manager(services: Services, hub: FakeHub) -> None:
    assert _download(services, "tiny") == "downloaded"
    services.downloads.in_use = lambda spec: spec.id == "tiny"
    with pytest.raises(ModelInUse):
        services.downloads.delete("tiny")
    assert services.downloads.describe(services.catalog.get("tiny"))["status"] == "downloaded"


# --- disk full -----------------------------------------------------------------------------
@pytest.fixture
def full_disk(tmp_path: Path):
    """A 2 MB tmpfs, filled up: a disk that is already full."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root; CI runs as root")
    mount = tmp_path / "tiny-disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        with (mount / "filler").open("wb") as f:
            try:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
            except OSError:
                pass
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_disk_already_full_is_named_leaves_nothing_and_the_next_post_gets_507(
    settings: Settings, hub: FakeHub, full_disk: Path, caplog
) -> None:
    caplog.set_level(logging.INFO)
    on_disk = settings.model_copy(update={"hf_home": full_disk / "hf"})
    with run_server(on_disk) as live:
        first = httpx.post(f"{live.url}/api/models/tiny/download", json={"with_align": False}, timeout=60)
        assert first.status_code == 202  # the size is not known before the hub answers
        job = live.services.downloads.job("tiny")
        assert job is not None and job.done.wait(30)
        model = httpx.get(f"{live.url}/api/models/tiny", timeout=60).json()
        assert model["status"] == "error" and "free" in model["error"] and "unexpected" not in model["error"]
        leftovers = [p for p in (full_disk / "hf").rglob("*") if p.is_file()]
        assert leftovers == [], f"left behind: {leftovers}"
        again = httpx.post(f"{live.url}/api/models/tiny/download", json={"with_align": False}, timeout=60)
        assert again.status_code == 507, again.text
        assert again.json()["error"]["code"] == "insufficient_storage"
    assert not [r for r in caplog.records if r.exc_info]


def test_manifest_write_on_a_full_disk_raises_disk_full_and_leaves_no_file(
    services: Services, full_disk: Path
) -> None:
    store = services.store
    store.manifests = full_disk / "manifests"
    spec = services.catalog.get("tiny")
    from modelmgr.models.store import FileEntry, Manifest

    big = Manifest(
        "tiny", spec.repo_id, "c" * 40, tuple(FileEntry(f"f{i}" * 60, 1, "u") for i in range(20000))
    )
    with pytest.raises(DiskFull):
        store.save_manifest(spec, big)
    assert list((full_disk / "manifests").iterdir()) == []


# --- a cache that never lies -----------------------------------------------------------------
def test_same_size_corrupt_blob_is_caught_by_verify_and_repaired_by_download(
    live_server: LiveServer, hub: FakeHub
) -> None:
    services = live_server.services
    assert _download(services, "tiny") == "downloaded"
    blob = _blob(services, "tiny", "model.bin")
    data = bytearray(blob.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 8] = bytes(
        b ^ 0xFF for b in data[len(data) // 2 : len(data) // 2 + 8]
    )
    blob.write_bytes(bytes(data))
    url = live_server.url
    assert (
        httpx.get(f"{url}/api/models/tiny", timeout=60).json()["status"] == "downloaded"
    )  # only a re-hash can tell
    answer = httpx.post(f"{url}/api/models/tiny/verify", timeout=60)
    assert answer.status_code == 202 and answer.json()["status"] == "verifying"
    wait_until(
        lambda: httpx.get(f"{url}/api/models/tiny", timeout=60).json()["status"] == "corrupt", 30, "verify"
    )
    model = httpx.get(f"{url}/api/models/tiny", timeout=60).json()
    assert "model.bin" in model["error"] and "checksum" in model["error"]
    hub.reset_counters()
    started = httpx.post(f"{url}/api/models/tiny/download", json={"with_align": False}, timeout=60).json()
    assert started["status"] == "started"
    wait_until(
        lambda: httpx.get(f"{url}/api/models/tiny", timeout=60).json()["status"] == "downloaded", 60, "repair"
    )
    assert hub.get_count(TINY_REPO, "model.bin") == 1
    assert hub.get_count(TINY_REPO, "config.json") == 0 and hub.get_count(TINY_REPO, "tokenizer.json") == 0
    assert services.store.verify(services.catalog.get("tiny")) == []
    httpx.post(f"{url}/api/models/tiny/verify", timeout=60)
    wait_until(lambda: services.downloads.job("tiny").done.is_set(), 30)
    assert httpx.get(f"{url}/api/models/tiny", timeout=60).json()["status"] == "downloaded"


@pytest.mark.parametrize("model_id", ["tiny", ZH_ALIGN])
def test_hf_cache_verify_is_clean_after_our_download(
    services: Services, hub: FakeHub, settings: Settings, model_id: str
) -> None:
    assert _download(services, model_id) == "downloaded"
    repo = services.catalog.get(model_id).repo_id
    output = assert_hf_cache_verify_clean(settings, hub, repo)
    assert "missing" not in output.lower()


def test_processor_config_is_fetched_with_an_alignment_model(services: Services, settings: Settings) -> None:
    from huggingface_hub import hf_hub_download

    assert _download(services, ZH_ALIGN) == "downloaded"
    path = hf_hub_download(
        ZH_ALIGN, "processor_config.json", cache_dir=settings.hub_cache, local_files_only=True
    )
    assert Path(path).is_file()


def _hf_snapshot(settings: Settings, hub: FakeHub, repo: str) -> Path:
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(repo, cache_dir=settings.hub_cache, endpoint=hub.url))


@pytest.mark.parametrize("with_trees", [True, False], ids=["hf-trees", "no-trees"])
def test_snapshot_left_incomplete_by_huggingface_hub_is_detected_and_repaired(
    services: Services, hub: FakeHub, settings: Settings, with_trees: bool
) -> None:
    snap = _hf_snapshot(settings, hub, TINY_REPO)
    repo_dir = services.store.repo_dir(services.catalog.get("tiny"))
    assert (repo_dir / "trees").is_dir(), "huggingface_hub 2.4 records the tree listing"
    if not with_trees:
        shutil.rmtree(repo_dir / "trees")  # older huggingface_hub versions write no trees/
    assert services.downloads.describe(services.catalog.get("tiny"))["status"] == "downloaded"
    (snap / "vocabulary.json").resolve().unlink()
    (snap / "vocabulary.json").unlink()
    assert services.downloads.describe(services.catalog.get("tiny"))["status"] == "incomplete"
    hub.reset_counters()
    assert _download(services, "tiny") == "downloaded"
    assert hub.get_count(TINY_REPO, "vocabulary.json") == 1
    assert hub.get_count(TINY_REPO, "model.bin") == 0


def test_a_hub_commit_change_is_seen_and_applied_with_only_changed_files(
    live_server: LiveServer, hub: FakeHub, tiny
) -> None:
    services, url = live_server.services, live_server.url
    repo = "Systran/faster-whisper-base"
    assert _download(services, "base") == "downloaded"
    old = services.store.local_commit(services.catalog.get("base"))
    files = {p.name: p.read_bytes() for p in tiny.whisper.iterdir() if p.is_file()}
    files["config.json"] = files["config.json"].rstrip()[:-1] + b', "revision_note": "v2"}'
    try:
        new = hub.add_repo(repo, files)
        # Known from the download; the hub moved since, but nobody asked it yet.
        assert httpx.get(f"{url}/api/models/base", timeout=60).json()["update_available"] is False
        model = httpx.get(f"{url}/api/models/base", params={"check_update": 1}, timeout=60).json()
        assert model["update_available"] is True and model["revision"] == old
        hub.reset_counters()
        assert httpx.post(f"{url}/api/models/base/update", timeout=60).status_code == 202
        wait_until(lambda: services.downloads.job("base").done.is_set(), 60, "the update")
        model = httpx.get(f"{url}/api/models/base", timeout=60).json()
        assert model["status"] == "downloaded" and model["revision"] == new, model
        assert model["update_available"] is False
        assert hub.get_count(repo, "config.json") == 1 and hub.get_count(repo, "model.bin") == 0
        repo_dir = services.store.repo_dir(services.catalog.get("base"))
        assert (repo_dir / "refs" / "main").read_text() == new
        assert not (repo_dir / "snapshots" / old).exists(), "the old revision was kept"
    finally:
        hub.add_repo_from_dir(repo, tiny.whisper)  # the session hub serves the original again


def test_after_hf_cache_prune_the_model_follows_refs_main(
    services: Services, hub: FakeHub, settings: Settings, tiny
) -> None:
    repo = "Systran/faster-whisper-base"
    assert _download(services, "base") == "downloaded"
    files = {p.name: p.read_bytes() for p in tiny.whisper.iterdir() if p.is_file()}
    files["config.json"] = files["config.json"].rstrip()[:-1] + b', "revision_note": "v3"}'
    try:
        new = hub.add_repo(repo, files)
        _hf_snapshot(settings, hub, repo)  # a loader or `hf download` moves refs/main
        done = hf(settings, hub, "cache", "prune", "--yes")
        assert done.returncode == 0, done.stdout + done.stderr
        model = services.downloads.describe(services.catalog.get("base"))
        assert model["status"] == "downloaded" and model["revision"] == new, model
    finally:
        hub.add_repo_from_dir(repo, tiny.whisper)


# --- events --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "raw",
    [b"\xb2", "¹²".encode("latin-1"), b"9" * 5000, b"-1", b"1e3"],
    ids=["superscript-2", "superscript-12", "5000-digits", "negative", "float"],
)
def test_odd_last_event_ids_mean_a_fresh_snapshot(live_server: LiveServer, raw: bytes) -> None:
    with httpx.stream(
        "GET", f"{live_server.url}/api/events", headers={"Last-Event-ID": raw}, timeout=10
    ) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("event:"):
                assert line == "event: snapshot"
                break
    with httpx.stream(
        "GET", f"{live_server.url}/api/events", params={"last_event_id": raw.decode("latin-1")}, timeout=10
    ) as response:
        assert response.status_code == 200


# --- shutdown -------------------------------------------------------------------------------
async def _open_streams(url: str, count: int, opened) -> list[str]:
    """Open ``count`` streams, wait for each snapshot, then read each to its end.

    Returns how each ended: "clean" (the body completed) or the error a cut stream raised.
    """
    import asyncio

    ready = asyncio.Semaphore(0)

    async def one(client: httpx.AsyncClient) -> str:
        try:
            async with client.stream("GET", f"{url}/api/events") as response:
                seen = False
                async for line in response.aiter_lines():
                    if line.startswith("event: snapshot") and not seen:
                        seen = True
                        ready.release()
            return "clean"
        except httpx.HTTPError as exc:
            if not seen:
                ready.release()
            return f"{type(exc).__name__}: {exc}"

    limits = httpx.Limits(max_connections=count + 10)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        tasks = [asyncio.create_task(one(client)) for _ in range(count)]
        for _ in range(count):
            await asyncio.wait_for(ready.acquire(), 60)
        opened.set()
        return list(await asyncio.gather(*tasks))


def test_twenty_shutdowns_with_a_hundred_streams_end_every_stream_cleanly(
    settings: Settings, caplog, monkeypatch
) -> None:
    import asyncio
    import threading

    from sse_starlette import sse

    caplog.set_level(logging.ERROR, logger="uvicorn.error")
    rounds, streams = 20, 100
    current: list = []
    # In a real process sse-starlette finds uvicorn through its SIGTERM handler; a server in a
    # test thread installs none, so hand the watcher the server as the real process would.
    monkeypatch.setattr(sse, "_get_uvicorn_server", lambda: current[-1] if current else None)
    for round_no in range(rounds):
        with run_server(settings) as live:
            current.append(live.server)
            opened = threading.Event()
            result: list[list[str]] = []

            def read(url: str = live.url, out: list = result, flag: threading.Event = opened) -> None:
                out.append(asyncio.run(_open_streams(url, streams, flag)))

            reader = threading.Thread(target=read, daemon=True)
            reader.start()
            assert opened.wait(120), "streams did not open"
            live.server.should_exit = True
            reader.join(60)
        assert result, f"round {round_no}: the readers did not finish"
        cut = [r for r in result[0] if r != "clean"]
        assert not cut, f"round {round_no}: {len(cut)} streams were cut: {cut[:3]}"
    incomplete = [r for r in caplog.records if "without completing response" in r.getMessage()]
    assert not incomplete, incomplete[0].getMessage()


def test_a_queued_job_never_starts_after_shutdown_began(services: Services, hub: FakeHub) -> None:
    hub.set_throttle(200_000)
    first = services.downloads.start("tiny", with_align=False)
    second = services.downloads.start("base", with_align=False)
    assert (first.status, second.status) == ("started", "queued")
    services.downloads.shutdown(timeout_s=10)
    assert first.job is not None and first.job.done.is_set()
    assert second.job is not None and second.job.status == "queued" and not second.job.done.is_set()
    assert services.downloads.transfers_started == 1
    with pytest.raises(ModelBusy):
        services.downloads.start("tiny.en", with_align=False)


def test_background_update_check_sees_a_moved_commit_and_never_runs_offline(
    services: Services, hub: FakeHub, settings: Settings, tiny
) -> None:
    offline = Services.build(settings.model_copy(update={"offline": True}))
    assert offline.downloads.start_update_checker(first_delay_s=0) is None
    assert offline.downloads.check_updates_due() == []
    repo = "Systran/faster-whisper-base"
    assert _download(services, "base") == "downloaded"
    assert services.downloads.check_updates_due() == []  # known from the download itself: unchanged
    files = {p.name: p.read_bytes() for p in tiny.whisper.iterdir() if p.is_file()}
    files["config.json"] = files["config.json"].rstrip()[:-1] + b', "revision_note": "v4"}'
    try:
        hub.add_repo(repo, files)
        assert services.downloads.check_updates_due() == []  # at most once per interval (a day)
        services.downloads.settings = settings.model_copy(update={"update_check_interval_s": 0.05})
        assert services.downloads.start_update_checker(first_delay_s=0) is not None
        spec = services.catalog.get("base")
        wait_until(lambda: services.downloads.describe(spec)["update_available"] is True, 30, "the checker")
    finally:
        hub.add_repo_from_dir(repo, tiny.whisper)


def test_verify_without_any_record_of_the_revision_asks_the_hub(
    services: Services, hub: FakeHub, settings: Settings
) -> None:
    snap = _hf_snapshot(settings, hub, TINY_REPO)
    shutil.rmtree(services.store.repo_dir(services.catalog.get("tiny")) / "trees")
    blob = (snap / "tokenizer.json").resolve()
    data = bytearray(blob.read_bytes())
    data[10] ^= 0xFF
    blob.write_bytes(bytes(data))
    job = services.downloads.verify("tiny")
    assert job.done.wait(30)
    model = services.downloads.describe(services.catalog.get("tiny"))
    assert model["status"] == "corrupt" and "tokenizer.json" in model["error"], model
    assert _download(services, "tiny") == "downloaded"
    assert hub.get_count(TINY_REPO, "model.bin") == 1  # the hf download's GET; ours fetched none
    with pytest.raises(InvalidInput):
        services.downloads.verify("base")  # not downloaded: nothing to verify
