"""Cluster mode: what a listing's queue positions cost with many jobs queued.

    uv run python bench/queue_listing.py [--jobs 5000] [--runs 50]

Starts redis-server on a free port of 127.0.0.1, builds a web process's
RemoteTranscriptionManager on it (no worker: every job stays queued), submits one real job and
copies its record to --jobs queued jobs. Then times ``queue_positions()`` (uncached: what each
0.5 s refresh of a listing costs) the old way, a scan of the newest 500 job records (the code
before the queued index, reimplemented below), and the new way, the ``modelmgr:queued`` sorted
set; prints both medians, their ratio, the Redis commands and how many jobs each positions.
Then the same with all but the newest --few jobs finished (where both give the same answer),
and how long rebuilding the index from the records takes (a web start on Redis data without it).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
import wave
from collections.abc import Callable
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from modelmgr.asr.job_record import JobOptions  # noqa: E402
from modelmgr.core.settings import Settings  # noqa: E402
from modelmgr.distributed.jobs import RemoteTranscriptionManager  # noqa: E402
from modelmgr.distributed.state import QUEUED  # noqa: E402
from modelmgr.services import Services  # noqa: E402
from tests.distributed.test_distributed import RedisServer  # noqa: E402
from tests.fresh import free_port  # noqa: E402


def old_scan_positions(manager: RemoteTranscriptionManager) -> dict[str, int]:
    """OLD (before the queued index): read the newest 500 job records, keep the queued, sort."""
    queued = sorted((j for j in manager.jobs(500) if j.status == "queued"), key=lambda j: j.created_at)
    return {job.id: i + 1 for i, job in enumerate(queued)}


def new_index_positions(manager: RemoteTranscriptionManager) -> dict[str, int]:
    """NEW: ``queue_positions()`` past its 0.5 s cache, i.e. ZRANGE modelmgr:queued."""
    manager._positions = (0.0, {})
    return manager.queue_positions()


def tone(path: Path) -> Path:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        samples = (int(8000 * math.sin(i / 8)) for i in range(1600))
        out.writeframes(b"".join(v.to_bytes(2, "little", signed=True) for v in samples))
    return path


def commands(client: redis.Redis) -> dict[str, int]:
    return {k[8:]: v["calls"] for k, v in client.info("commandstats").items() if k.startswith("cmdstat_")}


def measure(
    client: redis.Redis, fn: Callable[[], dict[str, int]], runs: int
) -> tuple[float, dict[str, int], dict[str, int]]:
    fn()  # warm-up
    before = commands(client)
    result = fn()
    after = commands(client)
    # Redis commands of one call, without INFO itself
    calls = {k: v - before.get(k, 0) for k, v in after.items() if k != "info" and v != before.get(k, 0)}
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    return statistics.median(samples), calls, result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=5000, help="queued jobs")
    parser.add_argument("--few", type=int, default=50, help="queued jobs in the second round")
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        server = RedisServer(free_port(), root / "redis")
        server.folder.mkdir()
        server.start()
        try:
            settings = Settings(
                hf_home=root / "hf",
                hf_hub_cache=None,
                hf_token=None,
                offline=True,
                torch_home=root / "torch",
                data_dir=root / "shared",
                redis_url=server.url,
                redis_timeout_s=30.0,
                fetch_sizes=False,
                min_free_bytes=0,
            )
            services = Services.build(settings)
            manager = services.transcriptions
            assert isinstance(manager, RemoteTranscriptionManager)
            client = redis.Redis.from_url(server.url, decode_responses=True)
            first = manager.submit(tone(root / "tone.wav"), "tone.wav", JobOptions(model="tiny"))
            record = manager.state.load(first.id)
            assert record is not None
            for i in range(args.jobs - 1):
                manager.state.save(record | {"id": f"{i:032x}", "created_at": record["created_at"] + 1 + i})

            rounds = []

            def compare(title: str) -> tuple[dict[str, int], dict[str, int]]:
                old = measure(client, lambda: old_scan_positions(manager), args.runs)
                new = measure(client, lambda: new_index_positions(manager), args.runs)
                rounds.append((title, old, new))
                return old[2], new[2]

            old, new = compare(f"{args.jobs} jobs, all queued")
            assert len(new) == args.jobs and new[first.id] == 1

            for job_id in [first.id, *(f"{i:032x}" for i in range(args.jobs - 1 - args.few))]:
                done = manager.state.load(job_id)
                assert done is not None
                manager.state.save(done | {"status": "done", "finished_at": time.time()})
            old, new = compare(f"{args.jobs} jobs, the newest {args.few} queued")
            assert old == new and len(new) == args.few

            for i in range(args.jobs - 1 - args.few):  # all queued again, for the rebuild
                manager.state.save(record | {"id": f"{i:032x}", "created_at": record["created_at"] + 1 + i})
            manager.state.save(record)
            client.delete(QUEUED)
            t0 = time.perf_counter()
            rebuilt = manager.state.ensure_queue_index()
            rebuild_ms = (time.perf_counter() - t0) * 1000
            assert rebuilt == args.jobs and len(new_index_positions(manager)) == args.jobs
            services.shutdown()
        finally:
            server.kill()

    def fmt(calls: dict[str, int]) -> str:
        return ", ".join(f"{n} {name}" for name, n in sorted(calls.items()))

    print(f"queue_positions() uncached, median of {args.runs} (Redis on 127.0.0.1):")
    for title, (old_ms, old_calls, old), (new_ms, new_calls, new) in rounds:
        print(f"{title}:")
        print(f"  old: scan 500 records  {old_ms:9.2f} ms  positions {len(old):5d} jobs  ({fmt(old_calls)})")
        print(f"  new: queued index      {new_ms:9.2f} ms  positions {len(new):5d} jobs  ({fmt(new_calls)})")
        print(f"  old / new: {old_ms / new_ms:.1f}x")
        wrong = sum(1 for job_id, place in old.items() if new.get(job_id) != place)
        if wrong:
            print(f"  the old scan sees only the newest 500 jobs: {wrong} of its {len(old)} positions wrong")
    print(f"rebuilding the index from {args.jobs} records (a web start without it): {rebuild_ms:.1f} ms")


if __name__ == "__main__":
    main()
