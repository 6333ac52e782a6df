"""A fresh server process, as a new user starts it: `python app.py`, nothing imported or preloaded.

Warm in-process servers have hidden bugs that the first request of a new process
meets (a half-imported torch seen by a polling thread). Tests of each main path
start one of these and poll the status endpoints alongside (``Poller``).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from modelmgr.core.settings import Settings
from tests.live import wait_until

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def app_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment that points a new process at the test hub and a private cache."""
    # Not GRADIO_TEMP_DIR either: an in-process test server set it for this process (each studio
    # picks its own upload folder by port, as a new process here must too).
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MODELMGR_", "HF_", "HUGGING_FACE_", "GRADIO_TEMP_DIR"))
    }
    env.update(
        HF_ENDPOINT=settings.hf_endpoint,
        HF_HOME=str(settings.hf_home),
        TORCH_HOME=str(settings.torch_home),
        HF_HUB_DISABLE_TELEMETRY="1",
        MODELMGR_TORCH_MODELS_BASE_URL=settings.torch_models_base_url,
        MODELMGR_NLTK_PUNKT_URL=settings.nltk_punkt_url,
        MODELMGR_MIN_FREE_BYTES="0",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


@dataclass
class FreshServer:
    url: str
    process: subprocess.Popen
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@contextmanager
def fresh_server(settings: Settings, log_dir: Path, *, ui: bool = False, **env: str) -> Iterator[FreshServer]:
    """`python app.py` on a free port of 127.0.0.1, stopped (SIGTERM, then SIGKILL) afterwards."""
    port = free_port()
    args = [sys.executable, "app.py", "--host", "127.0.0.1", "--port", str(port)]
    if not ui:
        args.append("--no-ui")
    log = log_dir / f"app-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(args, cwd=ROOT, env=app_env(settings, **env), stdout=out, stderr=out)
    url = f"http://127.0.0.1:{port}"
    server = FreshServer(url, process, log)

    def healthy() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"the app exited with {process.returncode}:\n{server.output()}")
        try:
            return httpx.get(f"{url}/api/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(healthy, 180, "the fresh app to answer /api/health")
        yield server
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


@dataclass
class Poller:
    """Polls URLs every ``interval_s`` in a thread and records every answer that is not 200."""

    urls: list[str]
    interval_s: float = 0.02
    headers: dict[str, str] = field(default_factory=dict)
    polls: int = 0
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Poller:
        self._thread = threading.Thread(target=self._run, name="poller", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)

    def _run(self) -> None:
        with httpx.Client(timeout=30, headers=self.headers) as client:
            while not self._stop.is_set():
                for url in self.urls:
                    try:
                        response = client.get(url)
                        if response.status_code != 200:
                            self.failures.append(f"{url}: {response.status_code} {response.text[:300]}")
                    except httpx.HTTPError as exc:
                        self.failures.append(f"{url}: {type(exc).__name__} {exc}")
                    self.polls += 1
                time.sleep(self.interval_s)
