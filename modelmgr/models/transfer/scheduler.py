"""Parts in file order over a file's workers, and the ramp that sets how many run at once.

A file larger than ``part_bytes`` is cut into parts; up to ``connections`` workers take the
next part in file order, so many connections fill a per-connection-capped line and the
finished prefix grows steadily. The first part (the probe) is requested alone: its answer
tells the final URL and whether the server honours ``Range``, and only then do the other
workers start. How many parts may be in flight is the ramp's call (see ``ramp``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from modelmgr.core.errors import Cancelled
from modelmgr.models.transfer.answers import NoRanges
from modelmgr.models.transfer.parts import Part
from modelmgr.models.transfer.ramp import Ramp

if TYPE_CHECKING:
    from modelmgr.models.transfer.file import FileTransfer

FetchPart = Callable[[Part, threading.Event | None], None]  # (part, the probe's event or None)


class PartScheduler:
    """Runs one file's unfinished parts; raises the first real fault of any of them."""

    def __init__(self, file: FileTransfer, fetch_part: FetchPart) -> None:
        self._file = file
        self._run = file.run
        self._fetch_part = fetch_part
        # _turn waits on the file's lock, which guards _queue, _busy, _allowed and _error:
        # parts in flight (_busy) vs those the ramp allows (_allowed).
        self._turn = threading.Condition(file.lock)
        self._queue: list[Part] = []
        self._busy = 0
        self._allowed = 1
        self._error: BaseException | None = None

    def run(self) -> None:
        todo = [p for p in self._file.parts if not p.finished]
        if not todo:
            return
        self._queue = list(todo)
        probe = self._queue.pop(0)
        ready = threading.Event()  # the probe's answer is known: URL and range support
        workers = [threading.Thread(target=self._worker, args=(probe, ready), daemon=True)]
        workers += [
            threading.Thread(target=self._worker, args=(None, ready), daemon=True)
            for _ in range(min(len(self._queue), self._run.connections))
        ]
        with self._turn:
            self._busy = 1  # the probe's turn
            self._allowed = 1 if self._run.ramp else self._run.connections
        for w in workers:
            w.start()
        self._ramp(workers, ready)
        if self._error is not None:
            err, self._error = self._error, None
            raise err

    def _ramp(self, workers: list[threading.Thread], ready: threading.Event) -> None:
        """Wait for the workers, raising the parts allowed in flight while that pays."""
        ramp = Ramp(self._run.connections, self._run.ramp)
        while any(w.is_alive() for w in workers):
            next(w for w in workers if w.is_alive()).join(0.05)
            if not ramp.active or not ready.is_set():
                continue
            now = time.monotonic()
            with self._turn:
                counted = self._file.counted
                if self._file.single or not self._queue:
                    ramp.stop()
                    continue
            allowed = ramp.observe(now, counted)
            if allowed is None:
                continue
            with self._turn:
                self._allowed = allowed
                self._turn.notify_all()
            ramp.measure_from(time.monotonic(), counted)

    def _next_part(self) -> Part | None:
        """The next part in file order, once fewer than ``_allowed`` parts are in flight."""
        with self._turn:
            while True:
                if not self._queue or self._file.single:
                    return None
                self._run.check()
                self._file.check()
                if self._busy < self._allowed:
                    self._busy += 1
                    return self._queue.pop(0)
                self._turn.wait(0.2)

    def _done_with_part(self) -> None:
        with self._turn:
            self._busy -= 1
            self._turn.notify_all()

    def _worker(self, first: Part | None, ready: threading.Event) -> None:
        file = self._file
        try:
            if first is None:
                while not ready.wait(0.2):
                    self._run.check()
                    file.check()
                part = self._next_part()
            else:
                part = first
            while part is not None:
                try:
                    self._fetch_part(part, ready if first is part else None)
                finally:
                    self._done_with_part()
                part = self._next_part()
        except NoRanges:
            with self._turn:
                file.no_ranges = True
            file.stop.set()
        except BaseException as exc:
            with self._turn:
                keep = self._error is not None and not isinstance(self._error, Cancelled)
                restarting = isinstance(exc, Cancelled) and file.stop.is_set() and file.no_ranges
                if not keep and not restarting:  # a real fault wins over the stops it caused
                    self._error = exc
            file.stop.set()
        finally:
            ready.set()  # never leave the others waiting on a probe that failed
