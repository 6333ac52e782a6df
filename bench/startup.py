"""Start-up cost: Gradio's own import vs. our app with the UI, and the API-only app.

    uv run python bench/startup.py [--runs 3]

Prints the median seconds until /api/health answers, side by side with the time
`import gradio` takes alone in a fresh interpreter and the time a minimal Gradio
app (one Markdown, mounted on FastAPI, served by uvicorn) takes to answer; the
target is UI start-up at most Gradio's own + 1 s, and API-only under 3 s.
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


MINIMAL_GRADIO = """
import sys
import uvicorn
import gradio as gr
from fastapi import FastAPI
app = FastAPI()
@app.get("/api/health")
def health():
    return {"status": "ok"}
with gr.Blocks() as demo:
    gr.Markdown("hello")
app = gr.mount_gradio_app(app, demo, path="/")
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="error")
"""


def time_until_health(extra: list[str], command: list[str] | None = None) -> float:
    port = free_port()
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "HF_HOME": home, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
        started = time.monotonic()
        proc = subprocess.Popen(
            [*command, str(port)] if command else [sys.executable, "app.py", "--port", str(port), *extra],
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
    samples: dict[str, list[float]] = {"gradio": [], "minimal": [], "ui": [], "api": []}
    for _ in range(runs):  # interleaved, so drift in machine load hits every variant alike
        samples["gradio"].append(time_import_gradio())
        samples["minimal"].append(time_until_health([], [sys.executable, "-c", MINIMAL_GRADIO]))
        samples["ui"].append(time_until_health([]))
        samples["api"].append(time_until_health(["--no-ui"]))
    gradio, minimal, ui, api = (statistics.median(samples[k]) for k in ("gradio", "minimal", "ui", "api"))
    print(f"{'median of ' + str(runs) + ' runs':32}{'seconds':>10}")
    print(f"{'import gradio (alone)':32}{gradio:10.2f}")
    print(f"{'minimal Gradio app -> 200':32}{minimal:10.2f}   (Gradio's own start-up)")
    print(f"{'app.py -> /api/health':32}{ui:10.2f}   (over the minimal Gradio app: {ui - minimal:+.2f} s)")
    print(f"{'app.py --no-ui -> /api/health':32}{api:10.2f}   (target < 3 s)")


if __name__ == "__main__":
    main()
