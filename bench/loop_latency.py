"""Does a download with many SSE clients slow the API down? Prints /api/health latency idle
and during a download with N SSE clients connected, side by side, and their ratio.

    uv run python bench/loop_latency.py [--clients 50] [--requests 300] [--mb 64] [--mbps 40]

Everything runs on 127.0.0.1: a local hub (tests/hub.py) serves a synthetic model
throttled to --mbps so the download lasts the whole measurement.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from huggingface_hub import constants as hf_constants  # noqa: E402

from modelmgr.core.settings import Settings  # noqa: E402
from tests.hub import FakeHub  # noqa: E402
from tests.live import run_server, wait_until  # noqa: E402

hf_constants.HF_HUB_DISABLE_TELEMETRY = True  # no probe of the real Hub from a benchmark


def measure(client: httpx.Client, url: str, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        client.get(url).raise_for_status()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def summary(samples: list[float]) -> tuple[float, float]:
    q = statistics.quantiles(samples, n=100)
    return statistics.median(samples), q[98]


def sse_client(url: str, stop: threading.Event, counts: list[int], i: int) -> None:
    with httpx.Client(timeout=None) as client, client.stream("GET", url) as response:
        for line in response.iter_lines():
            if line.startswith("event:"):
                counts[i] += 1
            if stop.is_set():
                return


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--mb", type=int, default=64, help="size of the synthetic model.bin")
    parser.add_argument("--mbps", type=float, default=40, help="hub bandwidth, MB/s")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, FakeHub() as hub:
        hub.add_repo(
            "Systran/faster-whisper-tiny",
            {"model.bin": os.urandom(args.mb * 1_000_000), "config.json": b"{}", "tokenizer.json": b"{}"},
        )
        settings = Settings(
            hf_endpoint=hub.url, hf_home=Path(tmp) / "hf", torch_home=Path(tmp) / "torch", min_free_bytes=0
        )
        with run_server(settings) as live, httpx.Client(base_url=live.url) as client:
            health = f"{live.url}/api/health"
            measure(client, health, 20)  # warm-up
            idle = measure(client, health, args.requests)

            stop = threading.Event()
            counts = [0] * args.clients
            readers = [
                threading.Thread(
                    target=sse_client, args=(f"{live.url}/api/events", stop, counts, i), daemon=True
                )
                for i in range(args.clients)
            ]
            for r in readers:
                r.start()
            wait_until(lambda: live.services.bus.subscriber_count == args.clients, 60, "SSE clients")
            hub.set_throttle(int(args.mbps * 1_000_000))
            client.post("/api/models/tiny/download", json={"with_align": False}).raise_for_status()
            wait_until(
                lambda: client.get("/api/models/tiny").json()["status"] == "downloading", 30, "download"
            )
            busy = measure(client, health, args.requests)
            still = client.get("/api/models/tiny").json()
            stop.set()
            hub.set_throttle(None)
            wait_until(
                lambda: client.get("/api/models/tiny").json()["status"] == "downloaded", 300, "completion"
            )

    (i50, i99), (b50, b99) = summary(idle), summary(busy)
    print(f"clients={args.clients} requests={args.requests} model={args.mb} MB at {args.mbps} MB/s")
    print(f"{'':28}{'p50 ms':>10}{'p99 ms':>10}")
    print(f"{'idle':28}{i50:10.2f}{i99:10.2f}")
    print(f"{'download + SSE clients':28}{b50:10.2f}{b99:10.2f}")
    print(f"{'ratio (busy / idle)':28}{b50 / i50:10.2f}{b99 / i99:10.2f}")
    print(f"status at end of busy window: {still['status']} {still['progress']['percent']}%")
    print(f"events received per client: min {min(counts)} max {max(counts)}")


if __name__ == "__main__":
    main()
