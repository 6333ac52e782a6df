"""One file of a fetch: its cross-process lock, its transfer, and the rename once verified.

The file owns the state its parts share (the parts, the URL they reuse, whether it went to
one stream, the bytes counted) and the moves that change all of it at once: planning from
what is on disk, switching to one stream, discarding the partial. The partial is renamed
into place only when size and hash match; a mismatch discards it (never resume from bytes
known to be wrong) and starts the file over, ``retries`` times at most. Bytes discarded are
taken back out of the progress count with a negative ``on_progress``.
"""

from __future__ import annotations

import os
import threading
import time

from filelock import FileLock, Timeout

from modelmgr.core.errors import Cancelled, DownloadFailed
from modelmgr.models.cache_layout import Target, file_size
from modelmgr.models.transfer.answers import Retryable
from modelmgr.models.transfer.hasher import PrefixHasher
from modelmgr.models.transfer.part_fetch import PartFetcher
from modelmgr.models.transfer.parts import Part, frontier, plan_parts
from modelmgr.models.transfer.record import RangeRecord, load_parts
from modelmgr.models.transfer.scheduler import PartScheduler
from modelmgr.models.transfer.session import Session


class FileTransfer:
    """One target: its lock, parts, range record, prefix hasher and final rename."""

    def __init__(self, run: Session, target: Target) -> None:
        self.run = run
        self.target = target
        self.entry = target.entry
        self.error: BaseException | None = None
        self.stop = threading.Event()  # this file's parts must stop (failure or restart)
        # lock guards parts, url, single, no_ranges, counted, the record's copies (not its file:
        # no I/O under this lock) and the hasher state; the hasher and the scheduler wait on
        # conditions over it.
        self.lock = threading.Lock()
        self.parts: list[Part] = []
        self.url = self.entry.url  # the final URL after redirects, once known
        self.single = False  # one sequential stream (the server ignores Range)
        self.no_ranges = False
        self.counted = 0  # bytes of this file counted in progress (initial + new)
        self.fd: int | None = None  # the partial, open for pwrite while a transfer runs
        self.record = RangeRecord(target)
        self.hasher = PrefixHasher(self.entry, target.partial, self.lock, lambda: frontier(self.parts))
        self._scheduler = PartScheduler(self, PartFetcher(self).fetch)

    # --- lifecycle ---
    def run_guarded(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # handed to fetch(), which raises the first real one
            self.error = exc
            if not isinstance(exc, Cancelled):
                self.run.abort.set()

    def check(self) -> None:
        if self.stop.is_set():
            raise Cancelled("stopped")

    def _run(self) -> None:
        target = self.target
        target.final.parent.mkdir(parents=True, exist_ok=True)
        target.lock.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(target.lock)
        while True:  # wait for another process writing the same file, but stay cancellable
            self.run.check()
            try:
                lock.acquire(timeout=0.5)
                break
            except Timeout:
                continue
        try:
            if file_size(target.final) == self.entry.size:
                return  # another process finished it while we waited
            attempt = 0
            while True:
                self.run.check()
                try:
                    self._transfer()
                    return
                except Retryable as exc:  # the whole file failed verification: start it over
                    attempt += 1
                    if attempt > self.run.retries:
                        raise DownloadFailed(
                            f"{self.entry.path}: gave up after {attempt - 1} retries ({exc})"
                        ) from exc
        finally:
            lock.release()

    def _transfer(self) -> None:
        self.stop.clear()
        self.fd = os.open(self.target.partial, os.O_RDWR | os.O_CREAT, 0o644)
        self._plan()
        try:
            if self.run.hash_while_fetching:
                self.hasher.start()
            self._scheduler.run()
            if self.no_ranges and not self.single:
                self.go_single()
                self._scheduler.run()
            self.save_record(force=True)
        finally:
            self.hasher.finish()
            os.close(self.fd)
            self.fd = None
        self._verify_and_place()

    # --- planning and the record ---
    def _plan(self) -> None:
        parts = load_parts(self.target)
        size = self.entry.size
        if not parts:  # nothing usable on disk: start from an empty partial
            os.ftruncate(self.fd, 0)
            parts = [(0, size, 0)]
        elif os.fstat(self.fd).st_size > size:
            os.ftruncate(self.fd, size)
        planned = plan_parts(parts, self.run.part_bytes, self.stop)
        with self.lock:
            self.parts = planned
            self.counted = sum(p.done for p in self.parts)
            self.single = len(self.parts) == 1 and self.parts[0].start == 0
            self.no_ranges = False
            self.url = self.entry.url
            self.hasher.reset()
        self.save_record(force=True)

    def save_record(self, force: bool = False) -> None:
        """Write the range record (at most every ``_RECORD_EVERY_S`` unless forced). The parts
        are copied under the lock and written without it: a slow disk never stops the parts."""
        now = time.monotonic()
        if not self.record.due(now, force):
            return
        with self.lock:
            snapshot = self.record.snapshot(self.parts)
        self.record.write(snapshot, now, wait=force)

    def wrote(self, part: Part, nbytes: int) -> None:
        """``nbytes`` more of ``part`` are on disk (written before this says so)."""
        with self.lock:
            part.done += nbytes
            self.counted += nbytes
            self.hasher.grew()

    def go_single(self) -> None:
        """Switch to one sequential stream from byte 0 (the server will not do ranges)."""
        with self.lock:
            self.run.progress(-self.counted)  # those bytes are written again from the start
            self.counted = 0
            self.parts = [Part(self.stop, 0, self.entry.size)]
            self.single = True
            self.url = self.entry.url
            self.hasher.reset()
        os.ftruncate(self.fd, 0)
        self.stop.clear()
        self.save_record(force=True)

    # --- verification ---
    def _verify_and_place(self) -> None:
        size = file_size(self.target.partial)
        if size != self.entry.size:
            self.discard()
            raise Retryable(f"{self.entry.path}: {size} bytes on disk, expected {self.entry.size}")
        digest = self.hasher.digest()
        if digest is not None and digest != self.entry.expected_digest:
            self.discard()  # never resume from bytes we know are wrong
            raise Retryable(f"{self.entry.path}: checksum mismatch, the partial file was discarded")
        os.replace(self.target.partial, self.target.final)
        self.record.remove()

    def discard(self) -> None:
        """Throw the partial away and take its bytes back out of the progress count."""
        with self.lock:
            self.run.progress(-self.counted)
            self.counted = 0
            for p in self.parts:
                p.done = 0
        self.target.partial.unlink(missing_ok=True)
        self.record.remove()
