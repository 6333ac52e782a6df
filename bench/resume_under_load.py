"""Bytes re-fetched after kill -9 of a parallel download, with two CPU hogs beside it.

    uv run python bench/resume_under_load.py [--runs 20] [--mb 64] [--cap 8] [--kill-mb 28] [--hogs 2]

Each run: a local hub (tests/hub.py, in this process) serves ``--mb`` MiB of random bytes at
``--cap`` MiB/s per connection; a child process fetches it with the production defaults
(``Settings``' connections and part size, the ramp on) and is SIGKILLed once ``--kill-mb`` MiB
are recorded in the range record; the fetch is then resumed in this process. The figure is the
hub's bytes sent over both runs / the file size (1.000x: nothing fetched twice). Two busy-loop
processes (``--hogs``) run beside it the whole time. Per run it also prints where the bytes sent
but not recorded were (``lost``, MiB):

* ``unrec``: on disk and right, just past a part's recorded end, but not in the record;
* ``sockets``: in the kernel's socket queues when the kill was sent (/proc/net/tcp): the child
  was behind the hub;
* ``dying``: sent after the kill was sent, until the child was reaped (its sockets take data
  until its last thread has exited);
* ``rest``: the remainder: read by the child but not yet written, or queued while it died.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from modelmgr.core.settings import Settings  # noqa: E402
from modelmgr.models import transfer  # noqa: E402
from modelmgr.models.store import FileEntry, Target  # noqa: E402
from tests.hub import FakeHub  # noqa: E402

MiB = 1024 * 1024
REPO = "bench/resume"
NAME = "model.bin"

CHILD = """
import sys, threading, json
sys.path.insert(0, {root!r})
from pathlib import Path
from modelmgr.models import transfer
from modelmgr.models.store import FileEntry, Target
entry = FileEntry(**json.loads({entry!r}))
final = Path({final!r})
target = Target(entry, final, final.with_name(final.name + ".incomplete"), Path({lock!r}))
transfer.fetch([target], headers={{}}, on_progress=lambda n: None, cancel=threading.Event(),
               **json.loads({kw!r}))
"""


def fetch_kwargs() -> dict:
    s = Settings()
    return {
        "connections": s.download_connections,
        "part_bytes": s.download_part_bytes,
        "retries": s.download_retries,
        "timeout_s": s.download_timeout_s,
        "ramp": True,
    }


def quiet(hub: FakeHub) -> None:
    """Wait until no abandoned sender writes any more (the dead child's connections)."""
    deadline = time.monotonic() + 10
    before = None
    while time.monotonic() < deadline:
        now = dict(hub._sent)  # noqa: SLF001
        if now == before:
            return
        before = now
        time.sleep(0.3)


def socket_queues(hub: FakeHub) -> int:
    """Bytes waiting in the kernel on the hub's connections (its send queues and the client's
    receive queues), from /proc/net/tcp: sent by the hub, not yet read by the child."""
    port = int(hub.url.rsplit(":", 1)[1])
    total = 0
    try:
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return 0
    for line in lines:
        f = line.split()
        local, remote = int(f[1].split(":")[1], 16), int(f[2].split(":")[1], 16)
        tx, rx = (int(x, 16) for x in f[4].split(":"))
        if local == port:
            total += tx  # the hub's side: not yet acknowledged
        elif remote == port:
            total += rx  # the child's side: received, not yet read
    return total


def unrecorded(target: Target, data: bytes) -> int:
    """Bytes just past each part's recorded end that are on disk and right (written, not recorded)."""
    parts = transfer.record_path(target)
    if not parts.exists():
        return 0
    raw = target.partial.read_bytes()
    extra = 0
    for s, e, d in json.loads(parts.read_text())["parts"]:
        pos = s + d
        end = min(e, len(raw))
        n = 0
        while pos + n < end:  # 64 KiB blocks, then byte by byte in the first block that differs
            step = min(64 * 1024, end - pos - n)
            if raw[pos + n : pos + n + step] == data[pos + n : pos + n + step]:
                n += step
                continue
            while raw[pos + n] == data[pos + n]:
                n += 1
            break
        extra += n
    return extra


def one_run(hub: FakeHub, work: Path, data: bytes, kill_at: int, cap: int) -> dict:
    entry = FileEntry(
        NAME, len(data), f"{hub.url}/{REPO}/resolve/main/{NAME}", sha256=hashlib.sha256(data).hexdigest()
    )
    final = work / "blobs" / entry.etag
    target = Target(entry, final, final.with_name(final.name + ".incomplete"), work / "locks" / "x.lock")
    kw = fetch_kwargs()
    code = CHILD.format(
        root=str(ROOT),
        entry=json.dumps(entry.__dict__),
        final=str(final),
        lock=str(target.lock),
        kw=json.dumps(kw),
    )
    hub.set_throttle(cap)
    hub.reset_counters()
    child = subprocess.Popen([sys.executable, "-c", code])
    t0 = time.monotonic()
    try:
        while transfer.bytes_present([target]) < kill_at:
            if child.poll() is not None or time.monotonic() > t0 + 120:
                raise RuntimeError(f"the child ended (rc {child.returncode}) before {kill_at} bytes")
            time.sleep(0.005)
    finally:
        queued = socket_queues(hub)
        sent_at_kill = hub.bytes_sent(REPO, NAME)
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
        sent_at_reap = hub.bytes_sent(REPO, NAME)
    took = time.monotonic() - t0
    quiet(hub)
    recorded = transfer.bytes_present([target])
    extra = unrecorded(target, data)
    sent_first = hub.bytes_sent(REPO, NAME)
    transfer.fetch([target], headers={}, on_progress=lambda n: None, cancel=threading.Event(), **kw)
    assert target.final.read_bytes() == data
    sent = hub.bytes_sent(REPO, NAME)
    shutil.rmtree(work, ignore_errors=True)
    lost = sent_first - recorded
    dying = sent_at_reap - sent_at_kill
    return {
        "ratio": sent / len(data),
        "recorded": recorded,
        "rate": recorded / took,
        "lost": lost,
        "unrec": extra,
        "sockets": queued,
        "dying": dying,
        "rest": lost - extra - queued - dying,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--mb", type=int, default=64)
    parser.add_argument("--cap", type=float, default=8.0, help="MiB/s per connection")
    parser.add_argument("--kill-mb", type=float, default=28.0)
    parser.add_argument("--hogs", type=int, default=2, help="busy-loop processes beside the runs")
    parser.add_argument("--goal", type=float, default=1.05)
    args = parser.parse_args()

    data = random.Random(7).randbytes(args.mb * MiB)
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.hogs)]
    ratios, loads = [], []
    cols = ("unrec", "sockets", "dying", "rest")
    try:
        with FakeHub() as hub:
            hub.add_repo(REPO, {NAME: data})
            print(
                f"{args.mb} MiB at {args.cap:g} MiB/s per connection, kill -9 at {args.kill_mb:g} MiB "
                f"recorded, {args.hogs} CPU hogs, {os.cpu_count()} CPUs, fetch {fetch_kwargs()}"
            )
            print(
                f"{'run':>4} {'ratio':>7} {'MiB/s':>6} {'recorded':>9} {'lost':>6}  "
                + " ".join(f"{c:>7}" for c in cols)
            )
            for i in range(args.runs):
                work = Path(tempfile.mkdtemp(prefix="resume-bench-"))
                r = one_run(hub, work, data, int(args.kill_mb * MiB), int(args.cap * MiB))
                ratios.append(r["ratio"])
                loads.append(os.getloadavg()[0])
                print(
                    f"{i + 1:>4} {r['ratio']:>6.3f}x {r['rate'] / MiB:>6.1f} {r['recorded'] / MiB:>9.2f} "
                    f"{r['lost'] / MiB:>6.2f}  " + " ".join(f"{r[c] / MiB:>7.2f}" for c in cols),
                    flush=True,
                )
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    ok = sum(r <= args.goal for r in ratios)
    print(
        f"refetch ratio: min {min(ratios):.3f}x  median {statistics.median(ratios):.3f}x  "
        f"max {max(ratios):.3f}x  runs <= {args.goal:g}x: {ok} of {len(ratios)}  "
        f"(load average {min(loads):.1f}-{max(loads):.1f})"
    )


if __name__ == "__main__":
    main()
