"""The shared state of one ``fetch`` call: one HTTP client, the connection slots, progress, stop.

Every file of a call runs in its own thread, but they share one budget: every request holds
one of ``connections`` slots, so the total never exceeds the setting whatever the number of
files. One file failing for good stops the others (``abort``), as does ``cancel``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import httpx

from modelmgr.core.errors import Cancelled
from modelmgr.models.transfer.watchdog import Watchdog, watch_sockets

ProgressFn = Callable[[int], None]


class Session:
    def __init__(
        self,
        *,
        headers: dict[str, str],
        on_progress: ProgressFn,
        cancel: threading.Event,
        retries: int,
        timeout_s: float,
        part_bytes: int,
        stall_s: float,
        hash_while_fetching: bool,
        connections: int,
        ramp: bool,
    ) -> None:
        self.headers = dict(headers)
        self._on_progress = on_progress
        self.cancel = cancel
        self.abort = threading.Event()  # a file failed for good: the others stop too
        self.retries = retries
        self.part_bytes = part_bytes
        self.stall_s = stall_s
        self.hash_while_fetching = hash_while_fetching
        self.connections = connections
        self.ramp = ramp
        self.slots = threading.Semaphore(connections)  # one per request in flight
        self._progress_lock = threading.Lock()  # serialises on_progress (callers do `+=`)
        self.client = httpx.Client(
            follow_redirects=True,
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 15.0)),  # every read has a deadline
            limits=httpx.Limits(max_connections=connections + 4, max_keepalive_connections=connections + 4),
        )
        watch_sockets(self.client)
        self.watchdog = Watchdog(stall_s, self.stopped)

    def progress(self, nbytes: int) -> None:
        if nbytes:
            with self._progress_lock:
                self._on_progress(nbytes)

    def stopped(self) -> bool:
        return self.cancel.is_set() or self.abort.is_set()

    def check(self) -> None:
        if self.cancel.is_set():
            raise Cancelled("cancelled")
        if self.abort.is_set():
            raise Cancelled("stopped: another file failed")

    def acquire_slot(self, check_file: Callable[[], None]) -> None:
        """Wait for a slot, staying cancellable (``check_file`` raises when the file must stop)."""
        while not self.slots.acquire(timeout=0.2):
            self.check()
            check_file()

    def start_watchdog(self) -> None:
        self.watchdog.start()

    def close(self) -> None:
        self.watchdog.close()
        self.client.close()
