"""Download speed and loop latency, side by side in one run, printed as ONE table with ratios.

    uv run python bench/download.py [--mb 512] [--cap 24] [--clients 100] [--idle 1000]

Everything runs on 127.0.0.1, each party in its own process so none steals the others' GIL:

* a local hub (tests/hub.py) serving a synthetic ``Systran/faster-whisper-tiny`` whose
  ``model.bin`` is ``--mb`` MiB of random bytes, uncapped or capped per connection (``--cap``
  MiB/s, like a CDN);
* our app (``--no-ui``), asked through ``POST /api/models/tiny/download`` and polled until
  ``downloaded`` (the time includes metadata, verification and linking);
* ``huggingface_hub.snapshot_download`` (plain HTTP, no Xet: the hub has none) and ``curl``
  of the same file.

Then kill -9 at ~45% with parallel parts and a restart (bytes the hub sent / file size), the
``/api/health`` p50/p99 idle vs during a capped download with ``--clients`` SSE clients, the
publish-to-client latency of progress events (the bench stamps them; the app does not), and
``--idle`` idle SSE connections (the app's RSS growth per connection).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
REPO = "Systran/faster-whisper-tiny"
MiB = 1024 * 1024


# --- role: hub (a process of its own; commands on stdin) -----------------------------------
def role_hub(args: argparse.Namespace) -> None:
    from tests.hub import FakeHub

    with FakeHub() as hub:
        hub.add_repo(
            REPO,
            {"model.bin": os.urandom(args.mb * MiB), "config.json": b"{}", "tokenizer.json": b"{}"},
        )
        print(hub.url, flush=True)
        for line in sys.stdin:
            cmd, *rest = line.split()
            if cmd == "cap":
                mbps = float(rest[0])
                hub.set_throttle(int(mbps * MiB) if mbps > 0 else None)
            elif cmd == "reset":
                hub.reset_counters()
            elif cmd == "sent":
                pass
            print(hub.bytes_sent(REPO, "model.bin"), hub.get_count(REPO, "model.bin"), flush=True)


# --- role: app (our server; progress events stamped for the latency figure) -----------------
def role_app(args: argparse.Namespace) -> None:
    import uvicorn

    from modelmgr.core.events import EventBus
    from modelmgr.core.settings import Settings
    from modelmgr.web.server import StudioServer, create_app

    if args.stamp:  # bench-only instrumentation: when each progress event was published
        publish = EventBus.publish

        def stamped(self, name, data):
            if name == "model_progress":
                data = {**data, "t": time.time()}
            return publish(self, name, data)

        EventBus.publish = stamped
    settings = Settings(port=args.port, min_free_bytes=0)
    app = create_app(settings, ui=False)
    stack = os.environ.get("BENCH_STACK", "auto")  # "asyncio": stdlib loop + h11, for comparison
    loop, http = ("asyncio", "h11") if stack == "asyncio" else ("auto", "auto")
    config = uvicorn.Config(
        app, host="127.0.0.1", port=args.port, log_level="warning", backlog=4096, loop=loop, http=http
    )
    profile = os.environ.get("BENCH_PROFILE")  # a file: pyinstrument report of the loop thread
    if profile:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.001)
        profiler.start()

        def dump(*_) -> None:  # SIGUSR1 (uvicorn re-raises SIGTERM: no code runs after run())
            profiler.stop()
            Path(profile).write_text(profiler.output_text(unicode=False, color=False, show_all=True))

        signal.signal(signal.SIGUSR1, dump)
    StudioServer(config).run()


# --- role: sse (N clients on raw asyncio sockets; results on stdout when stdin closes) ---------
def role_sse(args: argparse.Namespace) -> None:
    asyncio.run(_sse_clients(args.port, args.clients))


async def _sse_clients(port: int, n: int) -> None:
    latencies: list[float] = []
    connected = 0
    writers = []

    async def client() -> None:
        nonlocal connected
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writers.append(writer)
        writer.write(f"GET /api/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        await writer.drain()
        counted = False
        while line := await reader.readline():
            if line.startswith(b"data: ") and b'"t": ' in line:
                try:
                    t = json.loads(line[6:])["t"]
                    latencies.append((time.time() - t) * 1000)
                except (ValueError, KeyError, TypeError):
                    pass
            elif line.startswith(b"event: snapshot") and not counted:
                counted = True
                connected += 1

    tasks = []
    for i in range(n):  # in batches: the listen backlog is finite
        tasks.append(asyncio.create_task(client()))
        if i % 100 == 99:
            await asyncio.sleep(0.2)
    print("started", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the bench says stop
    print(json.dumps({"connected": connected, "latencies": latencies}), flush=True)
    for w in writers:
        w.close()
    os._exit(0)


# --- the orchestrator -------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(*role_args: str, env: dict | None = None, stdin=subprocess.PIPE) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, __file__, *role_args],
        stdin=stdin,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


class Hub:
    def __init__(self, mb: int) -> None:
        self.proc = spawn("--role", "hub", "--mb", str(mb))
        self.url = self.proc.stdout.readline().strip()

    def cmd(self, text: str) -> tuple[int, int]:
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()
        sent, gets = self.proc.stdout.readline().split()
        return int(sent), int(gets)

    def stop(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(30)


class App:
    def __init__(self, hub: Hub, home: Path, *, stamp: bool = False, connections: int = 8) -> None:
        import httpx

        self.port = free_port()
        env = {
            "HF_ENDPOINT": hub.url,
            "HF_HOME": str(home),
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "MODELMGR_DOWNLOAD_CONNECTIONS": str(connections),
        }
        extra = ["--stamp"] if stamp else []
        self.proc = spawn("--role", "app", "--port", str(self.port), *extra, env=env, stdin=None)
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=30)
        deadline = time.monotonic() + 60
        while True:
            try:
                self.http.get("/api/health").raise_for_status()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("the app did not start") from None
                time.sleep(0.05)

    def warm_up(self) -> None:
        """Import huggingface_hub (a second, once per process) the way a first download would,
        so the timed download measures the transfer; snapshot_download's timer also starts
        after its import. `base` is not on the bench hub: its download fails at once."""
        self.http.post("/api/models/base/download", json={"with_align": False})
        deadline = time.monotonic() + 60
        while self.http.get("/api/models/base").json()["status"] in ("queued", "downloading"):
            if time.monotonic() > deadline:
                raise RuntimeError("warm-up download did not end")
            time.sleep(0.05)

    def model(self) -> dict:
        return self.http.get("/api/models/tiny").json()

    def download(self, *, until_percent: float | None = None) -> float:
        t0 = time.perf_counter()
        self.http.post("/api/models/tiny/download", json={"with_align": False}).raise_for_status()
        return self.wait(t0, until_percent)

    def wait(self, t0: float, until_percent: float | None = None) -> float:
        while True:
            m = self.model()
            if m["status"] == "downloaded":
                return time.perf_counter() - t0
            if m["status"] == "error":
                raise RuntimeError(m["error"])
            if until_percent is not None and (m["progress"]["percent"] or 0) >= until_percent:
                return time.perf_counter() - t0
            time.sleep(0.02)

    def rss(self) -> int:
        import psutil

        return psutil.Process(self.proc.pid).memory_info().rss

    def stop(self, kill: bool = False) -> None:
        self.http.close()
        if os.environ.get("BENCH_PROFILE") and not kill:
            self.proc.send_signal(signal.SIGUSR1)
            time.sleep(3)
        self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        self.proc.wait(30)


def ours(hub: Hub, work: Path, connections: int) -> float:
    home = work / "ours"
    app = App(hub, home, connections=connections)
    try:
        app.warm_up()
        return app.download()
    finally:
        app.stop()
        shutil.rmtree(home, ignore_errors=True)


HF_CODE = """
import sys, time
from huggingface_hub import snapshot_download
t0 = time.perf_counter()
snapshot_download({repo!r}, cache_dir={cache!r}, endpoint={url!r})
print(time.perf_counter() - t0)
"""


def hf(hub: Hub, work: Path) -> float:
    cache = work / "hf"
    env = {**os.environ, "HF_HUB_DISABLE_XET": "1", "HF_HUB_DISABLE_TELEMETRY": "1", "HF_ENDPOINT": hub.url}
    code = HF_CODE.format(repo=REPO, cache=str(cache), url=hub.url)
    try:
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        return float(out.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def curl(hub: Hub, work: Path) -> float:
    out = work / "curl.bin"
    t0 = time.perf_counter()
    subprocess.run(
        ["curl", "-s", "-f", "-o", str(out), f"{hub.url}/{REPO}/resolve/main/model.bin"], check=True
    )
    took = time.perf_counter() - t0
    out.unlink()
    return took


def kill_and_resume(hub: Hub, work: Path, mb: int, cap: float, connections: int) -> tuple[float, float]:
    """kill -9 at ~45%, start again; returns (percent at the kill, bytes sent / size)."""
    home = work / "kill"
    hub.cmd(f"cap {cap}")
    hub.cmd("reset")
    app = App(hub, home, connections=connections)
    app.download(until_percent=45)
    at = app.model()["progress"]["percent"]
    app.stop(kill=True)
    time.sleep(0.5)  # let the hub notice the dead connections before it stops counting
    hub.cmd(f"cap {cap}")
    again = App(hub, home, connections=connections)  # resumes interrupted downloads at start-up
    try:
        again.wait(time.perf_counter())
    finally:
        again.stop()
    sent, _ = hub.cmd("sent")
    shutil.rmtree(home, ignore_errors=True)
    return at, sent / (mb * MiB)


def health_samples(http, n: int | None = None, until=None) -> list[float]:
    out = []
    while (n is not None and len(out) < n) or (until is not None and not until()):
        t0 = time.perf_counter()
        http.get("/api/health").raise_for_status()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def p(samples: list[float], q: int) -> float:
    if len(samples) < 2:
        return float("nan")
    return statistics.quantiles(samples, n=100)[q - 1]


def loop_latency(hub: Hub, work: Path, clients: int, cap: float, connections: int) -> dict:
    home = work / "lat"
    hub.cmd(f"cap {cap}")
    app = App(hub, home, stamp=True, connections=connections)
    sse = spawn("--role", "sse", "--port", str(app.port), "--clients", str(clients))
    try:
        assert sse.stdout.readline().strip() == "started"
        deadline = time.monotonic() + 60
        while app.http.get("/api/system").json()["events"]["subscribers"] < clients:
            if time.monotonic() > deadline:
                raise RuntimeError("SSE clients did not connect")
            time.sleep(0.1)
        health_samples(app.http, 50)  # warm-up
        idle = health_samples(app.http, 500)
        app.http.post("/api/models/tiny/download", json={"with_align": False}).raise_for_status()
        ref = home / "hub" / ("models--" + REPO.replace("/", "--")) / "refs" / "main"

        def finished() -> bool:  # the disk says so: asking the app would add load to what we measure
            return ref.exists()

        busy: list[float] = []
        busy.extend(health_samples(app.http, until=finished))
        sse.stdin.close()
        result = json.loads(sse.stdout.readline())
        sse.wait(30)
        return {
            "idle": idle,
            "busy": busy,
            "latencies": result["latencies"],
            "connected": result["connected"],
        }
    finally:
        if sse.poll() is None:
            sse.kill()
        app.stop()
        shutil.rmtree(home, ignore_errors=True)


def idle_connections(hub: Hub, work: Path, n: int) -> tuple[int, float]:
    home = work / "idle"
    app = App(hub, home)
    sse = None
    try:
        health_samples(app.http, 20)
        before = app.rss()
        sse = spawn("--role", "sse", "--port", str(app.port), "--clients", str(n))
        assert sse.stdout.readline().strip() == "started"
        deadline = time.monotonic() + 120
        while (held := app.http.get("/api/system").json()["events"]["subscribers"]) < n:
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
        time.sleep(1.0)
        after = app.rss()
        return held, (after - before) / max(held, 1)
    finally:
        if sse is not None:
            sse.kill()
            sse.wait(10)
        app.stop()
        shutil.rmtree(home, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--role", choices=["hub", "app", "sse"])
    parser.add_argument("--mb", type=int, default=512, help="size of model.bin in MiB")
    parser.add_argument("--cap", type=float, default=24, help="per-connection cap, MiB/s")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--idle", type=int, default=1000)
    parser.add_argument("--port", type=int)
    parser.add_argument("--stamp", action="store_true")
    parser.add_argument("--skip", default="", help="comma list: speed,capped,kill,latency,idle")
    args = parser.parse_args()
    if args.role:
        {"hub": role_hub, "app": role_app, "sse": role_sse}[args.role](args)
        return
    skip = set(args.skip.split(","))
    rows: list[tuple[str, str, str, str, str]] = []
    hub = Hub(args.mb)
    work = Path(tempfile.mkdtemp(prefix="bench-download-"))
    size = args.mb * MiB
    try:
        if "speed" not in skip:
            hub.cmd("cap 0")
            t_ours, t_hf, t_curl = ours(hub, work, args.connections), hf(hub, work), curl(hub, work)
            rows.append(_speed_row("vs snapshot_download, uncapped", size, t_ours, t_hf, ">= 1.0x"))
            rows.append(_speed_row("vs curl, uncapped", size, t_ours, t_curl, ">= 0.8x"))
        if "capped" not in skip:
            hub.cmd(f"cap {args.cap}")
            t_ours, t_hf = ours(hub, work, args.connections), hf(hub, work)
            rows.append(
                _speed_row(f"vs snapshot_download, {args.cap:g} MiB/s/conn", size, t_ours, t_hf, ">= 2.5x")
            )
        if "kill" not in skip:
            at, ratio = kill_and_resume(hub, work, args.mb, args.cap, args.connections)
            rows.append(
                (f"bytes sent / size, kill -9 at {at:.0f}%", f"{ratio:.3f}x", "1.000x", "", "<= 1.05x")
            )
        if "latency" not in skip:
            lat = loop_latency(hub, work, args.clients, args.cap, args.connections)
            i99, b99 = p(lat["idle"], 99), p(lat["busy"], 99)
            rows.append(("/api/health p50 ms, busy vs idle", f"{statistics.median(lat['busy']):.2f}",
                         f"{statistics.median(lat['idle']):.2f}", "", f"n={len(lat['busy'])}"))  # fmt: skip
            rows.append((f"/api/health p99 ms, {args.clients} SSE + download", f"{b99:.2f}", f"{i99:.2f}",
                         f"{b99 / i99:.2f}", "<= 2, < 25 ms"))  # fmt: skip
            lats = lat["latencies"]
            rows.append((f"publish->client p99 ms, {lat['connected']} clients", f"{p(lats, 99):.1f}",
                         f"p50 {p(lats, 50):.1f}", "", f"< 100 ms, n={len(lats)}"))  # fmt: skip
        if "idle" not in skip:
            held, per = idle_connections(hub, work, args.idle)
            rows.append((f"idle SSE connections held (of {args.idle})", str(held), "", "", "all"))
            rows.append(("RSS per idle SSE connection", f"{per / 1024:.1f} KiB", "", "", "< 64 KiB"))
    finally:
        hub.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(f"\nmodel.bin {args.mb} MiB, {args.connections} connections, {os.cpu_count()} CPUs, 127.0.0.1\n")
    widths = [max(len(r[i]) for r in rows + [HEADER]) for i in range(5)]
    for r in [HEADER, tuple("-" * w for w in widths), *rows]:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |")


HEADER = ("figure", "ours", "reference", "ratio", "goal")


def _speed_row(
    name: str, size: int, ours_s: float, ref_s: float, goal: str
) -> tuple[str, str, str, str, str]:
    return (
        name,
        f"{ours_s:.2f} s ({size / MiB / ours_s:.0f} MiB/s)",
        f"{ref_s:.2f} s ({size / MiB / ref_s:.0f} MiB/s)",
        f"{ref_s / ours_s:.2f}x",
        goal,
    )


if __name__ == "__main__":
    main()
