"""The real app under uvicorn on 127.0.0.1, for tests and benchmarks (SSE needs a socket)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import uvicorn

from modelmgr.core.settings import Settings
from modelmgr.services import Services
from modelmgr.web.server import StudioServer, create_app


def wait_until(predicate: Callable[[], object], timeout: float = 60.0, what: str = "condition") -> object:
    """Poll ``predicate`` until it is truthy; fail after a generous deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@dataclass
class LiveServer:
    url: str
    services: Services
    server: StudioServer


@contextmanager
def run_server(settings: Settings, *, ui: bool = False) -> Iterator[LiveServer]:
    """The real app on a free 127.0.0.1 port, lifespan on, stopped promptly."""
    app = create_app(settings, ui=ui)
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        lifespan="on",
        log_level="warning",
        timeout_graceful_shutdown=3,
    )
    server = StudioServer(config)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    wait_until(lambda: server.started or not thread.is_alive(), 60, "uvicorn to start")
    assert server.started, "uvicorn failed to start"
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield LiveServer(f"http://127.0.0.1:{port}", app.state.services, server)
    finally:
        server.should_exit = True
        thread.join(30)
        assert not thread.is_alive(), "uvicorn did not stop"
