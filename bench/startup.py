"""Start-up cost: Gradio's own import vs. our app with the UI, and the API-only app.

    uv run python bench/startup.py [--runs 3]

Prints the median seconds until /api/health answers, side by side with the time
`import gradio` takes alone in a fresh interpreter; the target is UI start-up at
most Gradio's import + 1 s, and API-only under 3 s.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def time_import_gradio() -> float:
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", "import gradio"], check=True)
    return time.monotonic() - started


def time_until_health(extra: list[str]) -> float:
    port = free_port()
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "HF_HOME": home, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
        started = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "app.py", "--port", str(port), *extra],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            while True:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=1).status_code == 200:
                        return time.monotonic() - started
                except httpx.HTTPError:
                    time.sleep(0.02)
        finally:
            proc.terminate()
            proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    runs = parser.parse_args().runs
    gradio = statistics.median(time_import_gradio() for _ in range(runs))
    ui = statistics.median(time_until_health([]) for _ in range(runs))
    api = statistics.median(time_until_health(["--no-ui"]) for _ in range(runs))
    print(f"{'median of ' + str(runs) + ' runs':32}{'seconds':>10}")
    print(f"{'import gradio (alone)':32}{gradio:10.2f}")
    print(f"{'app.py -> /api/health':32}{ui:10.2f}   (UI cost over gradio import: {ui - gradio:+.2f} s)")
    print(f"{'app.py --no-ui -> /api/health':32}{api:10.2f}   (target < 3 s)")


if __name__ == "__main__":
    main()
