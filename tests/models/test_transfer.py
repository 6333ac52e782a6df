"""transfer.fetch against the local hub: parallel parts, range record, fallbacks, redirects,
stalls, cancel, progress accounting. Small files with small parts keep every test fast."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from modelmgr.core.errors import Cancelled, DiskFull, HubUnreachable
from modelmgr.models import transfer
from modelmgr.models.store import FileEntry, Target
from modelmgr.services import Services
from tests.conftest import wait_until
from tests.hub import FakeHub

MiB = 1024 * 1024
REPO = "test/parts"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def drained(hub: FakeHub):
    """Let the hub finish writing to connections a test abandoned, so the next test's counters
    see only its own bytes (a throttled or paused sender notices a closed socket late)."""
    yield
    quiet(hub)


def quiet(hub: FakeHub) -> None:
    """Wait until no abandoned sender writes any more (bounded)."""
    hub.resume()
    hub.set_throttle(None)
    deadline = time.monotonic() + 5
    before = None
    while time.monotonic() < deadline:  # until no sender has written for 0.3 s
        now = dict(hub._sent)  # noqa: SLF001
        if now == before:
            break
        before = now
        time.sleep(0.3)


class Progress:
    """A thread-safe on_progress that remembers the running total's peak."""

    def __init__(self, start: int = 0) -> None:
        self.total = start
        self.peak = start
        self.lock = threading.Lock()

    def __call__(self, n: int) -> None:
        with self.lock:
            self.total += n
            self.peak = max(self.peak, self.total)


def publish(hub: FakeHub, size: int, name: str = "big.bin", seed: int = 0) -> tuple[bytes, str]:
    data = random.Random(seed).randbytes(size)  # not periodic: a part written at a wrong offset shows
    hub.add_repo(REPO, {name: data})
    return data, name


def target_for(hub: FakeHub, tmp: Path, data: bytes, name: str = "big.bin") -> Target:
    entry = FileEntry(
        name, len(data), f"{hub.url}/{REPO}/resolve/main/{name}", sha256=hashlib.sha256(data).hexdigest()
    )
    final = tmp / "blobs" / entry.etag
    return Target(entry, final, final.with_name(final.name + ".incomplete"), tmp / "locks" / "x.lock")


def run_fetch(target: Target, progress=None, cancel=None, **kw) -> Progress:
    progress = progress or Progress(transfer.bytes_present([target]))
    kw = {"retries": 2, "timeout_s": 10.0, "connections": 4, "part_bytes": MiB, "stall_s": 10.0} | kw
    transfer.fetch([target], headers={}, on_progress=progress, cancel=cancel or threading.Event(), **kw)
    return progress


def in_thread(fn) -> tuple[threading.Thread, dict]:
    out: dict = {}

    def body() -> None:
        try:
            out["result"] = fn()
        except BaseException as exc:  # handed to the test
            out["error"] = exc

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    return thread, out


def test_parallel_parts_give_a_byte_identical_file(hub: FakeHub, tmp_path: Path) -> None:
    data, name = publish(hub, 8 * MiB)
    target = target_for(hub, tmp_path, data)
    progress = run_fetch(target)
    assert target.final.read_bytes() == data
    ranges = hub.ranges(REPO, name)
    assert sorted(ranges) == sorted(f"bytes={i * MiB}-{(i + 1) * MiB - 1}" for i in range(8))
    assert progress.total == progress.peak == len(data)
    assert not target.partial.exists() and not transfer.record_path(target).exists()


def test_a_cut_in_one_part_retries_that_part_alone(hub: FakeHub, tmp_path: Path) -> None:
    data, name = publish(hub, 8 * MiB)
    target = target_for(hub, tmp_path, data)
    hub.cut_range(name, 3 * MiB, 300_000)
    progress = run_fetch(target)
    assert target.final.read_bytes() == data
    ranges = hub.ranges(REPO, name)
    assert len(ranges) == 9, ranges
    third = [r for r in ranges if int(r.split("=")[1].split("-")[0]) // MiB == 3]
    assert third[0] == f"bytes={3 * MiB}-{4 * MiB - 1}"
    resumed_at = int(third[1].split("=")[1].split("-")[0])
    assert 3 * MiB < resumed_at <= 3 * MiB + 300_000, "the retry resumes where the cut part stood"
    for i in (0, 1, 2, 4, 5, 6, 7):  # no other part was fetched again
        assert ranges.count(f"bytes={i * MiB}-{(i + 1) * MiB - 1}") == 1
    assert hub.bytes_sent(REPO, name) <= len(data) + 64 * 1024
    assert progress.peak == progress.total == len(data)


KILLED_CHILD = """
import sys, threading, json
sys.path.insert(0, {root!r})
from pathlib import Path
from modelmgr.models import transfer
from modelmgr.models.store import FileEntry, Target
e = json.loads({entry!r})
entry = FileEntry(**e)
final = Path({final!r})
target = Target(entry, final, final.with_name(final.name + ".incomplete"), Path({lock!r}))
transfer.fetch([target], headers={{}}, on_progress=lambda n: None, cancel=threading.Event(),
               connections=8, part_bytes={part}, retries=2, timeout_s=30, stall_s=30, ramp=False)
"""


def test_kill_9_with_8_parts_resumes_every_part(hub: FakeHub, tmp_path: Path) -> None:
    data, name = publish(hub, 16 * MiB, seed=9)
    target = target_for(hub, tmp_path, data)
    entry = target.entry
    code = KILLED_CHILD.format(
        root=str(ROOT),
        entry=json.dumps(entry.__dict__),
        final=str(target.final),
        lock=str(target.lock),
        part=2 * MiB,
    )
    hub.set_throttle(1_000_000)  # per connection: 8 parts move at once, each for ~2 s
    child = subprocess.Popen([sys.executable, "-c", code])
    record = transfer.record_path(target)

    def every_part_started() -> list | None:
        try:
            parts = json.loads(record.read_text())["parts"]
        except (OSError, ValueError):
            return None
        return parts if len(parts) == 8 and all(d >= 200_000 for _, _, d in parts) else None

    try:
        wait_until(every_part_started, 60, "all 8 parts to be under way")
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
    parts = json.loads(record.read_text())["parts"]
    done_before = sum(d for _, _, d in parts)
    assert 0 < done_before < len(data)
    quiet(hub)
    hub.reset_counters()
    progress = run_fetch(target, connections=8, part_bytes=2 * MiB, ramp=False)
    assert target.final.read_bytes() == data
    starts = sorted(int(r.split("=")[1].split("-")[0]) for r in hub.ranges(REPO, name))
    assert starts == sorted(s + d for s, e, d in parts if d < e - s), "every part resumed where it stood"
    assert hub.bytes_sent(REPO, name) <= len(data) - done_before + 64 * 1024
    assert progress.peak == progress.total == len(data)


@pytest.mark.parametrize("mode", ["ignore", "slice200"])
def test_server_without_ranges_falls_back_to_one_stream(hub: FakeHub, tmp_path: Path, mode: str) -> None:
    data, name = publish(hub, 4 * MiB, seed=2)
    target = target_for(hub, tmp_path, data)
    hub.set_range_mode(mode)
    progress = run_fetch(target)
    assert target.final.read_bytes() == data
    assert progress.total == len(data) and progress.peak <= len(data)
    assert hub.get_count(REPO, name) <= 2, "one probe, then (at most) one plain stream"


def test_the_one_stream_a_fallback_adopts_is_watched_as_itself(hub: FakeHub, tmp_path: Path) -> None:
    """A 200 to the ranged probe is adopted as the file's one stream: the watchdog must follow
    that stream (its socket, its bytes), not the probe's part, which receives no more bytes and
    would look stalled: it cut the healthy stream once ``stall_s`` had passed."""
    data, name = publish(hub, 3 * MiB, seed=12)
    target = target_for(hub, tmp_path, data)
    hub.set_range_mode("ignore")
    hub.set_throttle(1_000_000)  # about 3 s of one stream, twice the stall deadline
    progress = run_fetch(target, stall_s=1.5, retries=0)
    assert target.final.read_bytes() == data
    assert progress.total == len(data)
    assert hub.get_count(REPO, name) == 1, "the probe's answer was the whole file, read once"


def test_fallback_after_a_partial_from_parts_takes_its_bytes_back(hub: FakeHub, tmp_path: Path) -> None:
    data, name = publish(hub, 4 * MiB, seed=3)
    target = target_for(hub, tmp_path, data)
    cancel = threading.Event()
    hub.set_throttle(500_000)
    thread, out = in_thread(lambda: run_fetch(target, cancel=cancel))
    wait_until(lambda: transfer.bytes_present([target]) > 300_000, 30, "some parts on disk")
    cancel.set()
    thread.join(10)
    assert isinstance(out.get("error"), Cancelled)
    hub.set_throttle(None)
    hub.set_range_mode("ignore")
    progress = run_fetch(target)
    assert target.final.read_bytes() == data
    assert progress.peak <= len(data) and progress.total == len(data)


@pytest.mark.parametrize("expire_after", [None, 2])
def test_redirect_to_another_host_reuses_the_final_url_and_re_resolves_when_expired(
    hub: FakeHub, tmp_path: Path, expire_after: int | None
) -> None:
    data, name = publish(hub, 8 * MiB, seed=4)
    target = target_for(hub, tmp_path, data)
    hub.redirect_resolve("localhost", expire_after=expire_after)
    progress = Progress()
    transfer.fetch(
        [target],
        headers={"authorization": "Bearer hf_secret"},
        on_progress=progress,
        cancel=threading.Event(),
        connections=4,
        part_bytes=MiB,
        retries=2,
    )
    assert target.final.read_bytes() == data
    seen = hub.signed_requests
    assert seen and all(s["host"].startswith("localhost:") for s in seen)
    assert all(s["authorization"] == "" for s in seen), "the token never goes to another host"
    if expire_after is None:
        assert hub.redirects == 1, "followed once per file; the parts reuse the final URL"
    else:
        assert hub.redirects >= 8 // expire_after, "an expired URL is resolved again"
    assert progress.total == len(data) == progress.peak


def test_progress_is_exact_and_never_past_100_after_a_discarded_partial(hub: FakeHub, tmp_path: Path) -> None:
    data, name = publish(hub, 4 * MiB, seed=5)
    target = target_for(hub, tmp_path, data)
    target.partial.parent.mkdir(parents=True)
    target.partial.write_bytes(b"\0" * (MiB + 5))  # not a prefix of the file: caught by the hash
    hub.cut_range(name, 2 * MiB, 100_000)
    start = transfer.bytes_present([target])
    assert start == MiB + 5
    progress = run_fetch(target)
    assert target.final.read_bytes() == data
    assert progress.peak <= len(data), "a discarded partial takes its bytes back before they count again"
    assert progress.total == len(data)


def test_cancel_during_parallel_parts_removes_the_partial_and_the_record(settings, hub: FakeHub) -> None:
    settings = settings.model_copy(update={"download_part_bytes": 256 * 1024, "download_connections": 4})
    services = Services.build(settings)
    try:
        hub.set_throttle(200_000)
        services.downloads.start("tiny", with_align=False)
        spec = services.catalog.get("tiny")
        manifest = wait_until(lambda: services.store.load_manifest(spec), what="manifest")
        model_bin = next(t for t in services.store.targets(spec, manifest) if t.entry.path == "model.bin")
        wait_until(
            lambda: transfer.record_path(model_bin).exists() and transfer.bytes_present([model_bin]) > 0,
            what="parts under way",
        )
        assert len(json.loads(transfer.record_path(model_bin).read_text())["parts"]) > 4
        services.downloads.cancel("tiny")
        wait_until(lambda: services.downloads.describe(spec)["status"] == "cancelled", what="cancelled")
        leftovers = [p for p in settings.hf_home.rglob("*") if ".incomplete" in p.name]
        assert leftovers == []
    finally:
        services.shutdown()


def test_two_processes_on_one_cache_fetch_each_byte_once(settings, hub: FakeHub) -> None:
    settings = settings.model_copy(update={"download_part_bytes": 512 * 1024})
    hub.set_throttle(1_000_000)
    first, second = Services.build(settings), Services.build(settings)
    try:
        spec = first.catalog.get("tiny")
        first.downloads.start("tiny", with_align=False)
        wait_until(lambda: first.downloads.describe(spec)["progress"]["bytes_done"] > 0, what="first writer")
        second.downloads.start("tiny", with_align=False)
        for s in (first, second):
            wait_until(lambda s=s: s.downloads.describe(spec)["status"] == "downloaded", what="done")
        manifest = first.store.load_manifest(spec)
        for entry in manifest.files:
            assert hub.bytes_sent("Systran/faster-whisper-tiny", entry.path) == entry.size, (
                entry.path,
                hub.ranges("Systran/faster-whisper-tiny", entry.path),
            )
        assert first.store.verify(spec) == []
    finally:
        first.shutdown()
        second.shutdown()


def test_stall_watchdog_retries_a_silent_part_and_completes_after_resume(
    hub: FakeHub, tmp_path: Path
) -> None:
    data, name = publish(hub, 4 * MiB, seed=6)
    target = target_for(hub, tmp_path, data)
    hub.pause()  # every body stops after its first chunk, the connection stays open
    thread, out = in_thread(lambda: run_fetch(target, stall_s=0.5, retries=1))
    wait_until(lambda: hub.get_count(REPO, name) >= 6, 30, "stalled parts to be retried")
    hub.resume()
    thread.join(60)
    assert "error" not in out, out.get("error")
    assert target.final.read_bytes() == data


def test_cancel_while_the_hub_sends_nothing_returns_promptly(hub: FakeHub, tmp_path: Path) -> None:
    data, name = publish(hub, 4 * MiB, seed=7)
    target = target_for(hub, tmp_path, data)
    hub.pause()
    cancel = threading.Event()
    progress = Progress()
    thread, out = in_thread(
        lambda: run_fetch(target, progress=progress, cancel=cancel, stall_s=60, timeout_s=60)
    )
    wait_until(lambda: progress.total > 0, 30, "the first bytes")
    time.sleep(0.3)  # the reads are now blocked on a silent socket
    t0 = time.monotonic()
    cancel.set()
    thread.join(10)
    assert time.monotonic() - t0 < 2.0
    assert isinstance(out.get("error"), Cancelled)


def test_cancel_while_waiting_for_response_headers_returns_promptly(tmp_path: Path) -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts (the kernel does), never answers
    url = f"http://127.0.0.1:{silent.getsockname()[1]}/f.bin"
    entry = FileEntry("f.bin", 10 * MiB, url, sha256="0" * 64)
    target = Target(entry, tmp_path / "f", tmp_path / "f.incomplete", tmp_path / "f.lock")
    cancel = threading.Event()
    thread, out = in_thread(lambda: run_fetch(target, cancel=cancel, stall_s=60, timeout_s=60))
    time.sleep(0.5)
    t0 = time.monotonic()
    cancel.set()
    thread.join(10)
    silent.close()
    assert time.monotonic() - t0 < 2.0
    assert isinstance(out.get("error"), Cancelled)


def test_retries_reset_when_bytes_arrive(hub: FakeHub, tmp_path: Path) -> None:
    data, name = publish(hub, 3 * MiB, seed=8)
    target = target_for(hub, tmp_path, data)
    hub.cut_after(name, 200_000, times=6)  # six drops, with only one retry allowed per failure
    progress = run_fetch(target, retries=1, part_bytes=16 * MiB)
    assert target.final.read_bytes() == data
    assert hub.get_count(REPO, name) == 7
    assert progress.total == len(data)


def test_a_full_disk_mid_transfer_is_disk_full(hub: FakeHub, tmp_path: Path, monkeypatch) -> None:
    data, _ = publish(hub, 2 * MiB, seed=10)
    target = target_for(hub, tmp_path, data)

    def full(fd, chunk, offset):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(transfer.os, "pwrite", full)
    with pytest.raises(DiskFull):
        run_fetch(target)


def test_a_closed_port_is_hub_unreachable(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    entry = FileEntry("f.bin", 1000, f"http://127.0.0.1:{port}/f.bin", sha256="0" * 64)
    target = Target(entry, tmp_path / "f", tmp_path / "f.incomplete", tmp_path / "f.lock")
    with pytest.raises(HubUnreachable, match="f.bin"):
        run_fetch(target, retries=0)


def test_a_record_with_parts_not_yet_started_still_resumes(hub: FakeHub, tmp_path: Path) -> None:
    data, name = publish(hub, 8 * MiB, seed=11)
    target = target_for(hub, tmp_path, data)
    cancel = threading.Event()
    hub.set_throttle(1_000_000)
    thread, out = in_thread(lambda: run_fetch(target, cancel=cancel, connections=2, ramp=False))
    wait_until(lambda: transfer.bytes_present([target]) > MiB, 30, "two parts under way")
    cancel.set()
    thread.join(10)
    assert isinstance(out.get("error"), Cancelled)
    parts = json.loads(transfer.record_path(target).read_text())["parts"]
    assert any(d == 0 for _, _, d in parts), "some parts never started"
    done = sum(d for _, _, d in parts)
    quiet(hub)
    hub.reset_counters()
    assert transfer.bytes_present([target]) == done
    progress = run_fetch(target)
    assert target.final.read_bytes() == data
    assert progress.total == progress.peak == len(data)
    assert hub.bytes_sent(REPO, name) <= len(data) - done + 64 * 1024
