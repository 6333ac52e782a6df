"""How bytes move: parallel ranged parts, a range record for resume, verify, stall watchdog.

One function, ``fetch``, takes the files to write and knows nothing about jobs,
queues or events. Deliberate choices (keep them):

* **Parts in file order.** A file larger than ``part_bytes`` is cut into parts of
  that size; up to ``connections`` workers take the next part in file order, so
  many connections fill a per-connection-capped line and the finished prefix
  grows steadily. Small files of one call are fetched concurrently. Every request
  holds one of ``connections`` slots, so the total never exceeds the setting.
* **One probe per file.** The first part is requested alone; its answer tells the
  final URL after redirects (reused for every other part: the Hub redirects to a
  signed CDN URL) and whether the server honours ``Range``. A 200 to a ranged
  request switches the file to one sequential stream (adopting that body when it
  is the whole file). A 403/410 from a redirected URL means the signature
  expired: the part goes back to the original URL, which resolves it again.
  The HF token is never sent to another host.
* **Range record.** Beside ``<blob>.incomplete`` lives ``<blob>.incomplete.ranges``
  (JSON: every part's start, end and bytes written). Bytes are written with
  ``pwrite`` *before* the record says so, and the record is replaced atomically,
  so after ``kill -9`` it never claims more than the partial holds and a new
  process resumes every part where it stood. A partial without a record (an
  older sequential transfer) counts as a contiguous prefix.
* **Verify the prefix while fetching.** A hasher thread follows the contiguous
  finished prefix, reading it back (from the page cache) and feeding sha256 /
  git-sha1. Measured on the shared 2-core dev machine, 512 MiB from the local hub
  (``hash_while_fetching`` on/off, two runs each): one pass at the end adds
  1.2-1.9 s after the last byte; the prefix hasher is done within 1 ms of it,
  for the same CPU time (1.2-1.6 s per fetch either way), because parts finish
  in file order and hashlib and pread release the GIL. So: prefix.
  The partial is renamed into place only when size and hash match.
* **Retries per part.** A cut, 5xx or stall retries that part alone, from the byte
  it reached. The attempt counter resets whenever an attempt delivered bytes
  (like huggingface_hub's ``http_get``), so a link that drops every minute still
  finishes a big file. Cancel, a full disk and access errors are not retried.
* **Stall watchdog and prompt cancel.** Each request's socket is known (a thin
  wrapper over httpcore's network backend records the socket a part is reading);
  a watchdog thread shuts it down when the part moved no byte for ``stall_s``, or
  at once on cancel, so neither waits for the read deadline.
* **Progress never passes 100%.** A part reports only bytes inside its range, and
  bytes discarded (a checksum mismatch, a restart without ``Range``) are taken
  back out of the count with a negative ``on_progress``.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from filelock import FileLock, Timeout

from modelmgr.core.errors import AccessDenied, Cancelled, DiskFull, DownloadFailed, HubTimeout, RemoteNotFound
from modelmgr.models.netfaults import network_error
from modelmgr.models.store import Target

ProgressFn = Callable[[int], None]

DEFAULT_CONNECTIONS = 8
DEFAULT_PART_BYTES = 16 * 1024 * 1024
RANGES_SUFFIX = ".ranges"  # the range record: <blob>.incomplete.ranges
_HASH_BLOCK = 1 << 20
_RECORD_EVERY_S = 0.02  # a kill -9 loses at most this long of bytes (plus what was in flight)
_READ_BYTES = 1 << 20  # per recv
_RAMP_S = 0.4  # how long each connection level is measured
_RAMP_GAIN = 1.3  # the next level must raise the rate by this factor, or the ramp stops


def record_path(target: Target) -> Path:
    return target.partial.with_name(target.partial.name + RANGES_SUFFIX)


def bytes_present(targets: Sequence[Target]) -> int:
    """Bytes already on disk (final files, and parts of partials): where a resume starts."""
    total = 0
    for t in targets:
        final = _size(t.final)
        total += final if final == t.entry.size else sum(done for _, _, done in _load_parts(t))
    return total


def fetch(
    targets: Sequence[Target],
    *,
    headers: dict[str, str],
    on_progress: ProgressFn,
    cancel: threading.Event,
    retries: int = 4,
    timeout_s: float = 30.0,
    connections: int = DEFAULT_CONNECTIONS,
    part_bytes: int = DEFAULT_PART_BYTES,
    stall_s: float = 30.0,
    hash_while_fetching: bool = True,
    ramp: bool = True,
) -> None:
    """Bring every target to its final path, whole and verified, or raise.

    ``ramp=False`` opens all ``connections`` at once instead of adding them while they pay.
    """
    pending = [t for t in targets if _size(t.final) != t.entry.size]
    if not pending:
        return
    connections = max(1, connections)
    run = _Run(
        headers=headers,
        on_progress=on_progress,
        cancel=cancel,
        retries=retries,
        timeout_s=timeout_s,
        part_bytes=max(64 * 1024, part_bytes),
        stall_s=stall_s,
        hash_while_fetching=hash_while_fetching,
        connections=connections,
        ramp=ramp,
    )
    try:
        run.start_watchdog()
        files = [_File(run, t) for t in pending]
        threads = [
            threading.Thread(target=f.run_guarded, name=f"fetch:{f.entry.path}", daemon=True) for f in files
        ]
        # Files run concurrently, but each request holds a slot: at most `connections` at once.
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        errors = [f.error for f in files if f.error is not None]
        if errors:
            cancelled = [e for e in errors if isinstance(e, Cancelled)]
            raise cancelled[0] if cancel.is_set() and cancelled else _first_real(errors)
    finally:
        run.close()


def _first_real(errors: list[BaseException]) -> BaseException:
    """The error to report: a real fault rather than the cancels it caused in other files."""
    for exc in errors:
        if not isinstance(exc, Cancelled):
            return exc
    return errors[0]


# --- the shared state of one fetch call ---------------------------------------------------


class _Run:
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
        # _active_lock guards _active: the parts with a request in flight, for the watchdog.
        self._active_lock = threading.Lock()
        self._active: set[_Part] = set()
        self._stop = threading.Event()
        self.client = httpx.Client(
            follow_redirects=True,
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 15.0)),  # every read has a deadline
            limits=httpx.Limits(max_connections=connections + 4, max_keepalive_connections=connections + 4),
        )
        # Wrap the httpcore backends (direct and proxied) so the watchdog can see each socket.
        for transport in (self.client._transport, *self.client._mounts.values()):  # noqa: SLF001
            pool = getattr(transport, "_pool", None)
            if pool is not None and hasattr(pool, "_network_backend"):
                pool._network_backend = _WatchedBackend(pool._network_backend)
        self._watchdog: threading.Thread | None = None

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

    def acquire_slot(self, file: _File) -> None:
        while not self.slots.acquire(timeout=0.2):
            self.check()
            file.check()

    # --- watchdog ---
    def start_watchdog(self) -> None:
        self._watchdog = threading.Thread(target=self._watch, name="fetch-watchdog", daemon=True)
        self._watchdog.start()

    def track(self, part: _Part, on: bool) -> None:
        with self._active_lock:
            (self._active.add if on else self._active.discard)(part)

    def _watch(self) -> None:
        """Shut down the socket of a part that is cancelled, aborted or stalled."""
        tick = min(0.1, self.stall_s / 4)
        while not self._stop.wait(tick):
            now = time.monotonic()
            with self._active_lock:
                active = list(self._active)
            for part in active:
                if self.stopped() or part.file.stop.is_set():
                    part.interrupt()
                elif now - part.last_byte_at > self.stall_s:
                    part.stalled = True
                    part.interrupt()

    def close(self) -> None:
        self._stop.set()
        if self._watchdog is not None:
            self._watchdog.join(2)
        self.client.close()


# --- sockets the watchdog can shut down -----------------------------------------------------

_tls = threading.local()  # .part: the _Part whose request runs on this thread


class _WatchedStream:
    """httpcore network stream that tells the part reading it which socket it is."""

    def __init__(self, inner) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        part = getattr(_tls, "part", None)
        if part is not None:
            part.sock = self._inner.get_extra_info("socket")
            if part.interrupted:  # interrupted before the socket was known
                part.interrupt()
        # httpcore asks for 64 KiB; taking what the socket holds (up to 1 MiB) means 16x fewer
        # trips through the Python chunk loop, i.e. less GIL held by download threads while
        # the event loop waits to get it back after each send (the /api/health p99 under load).
        return self._inner.read(max(max_bytes, _READ_BYTES), timeout)

    def __getattr__(self, name: str):
        return getattr(self._inner, name)


class _WatchedBackend:
    def __init__(self, inner) -> None:
        self._inner = inner

    def connect_tcp(self, *args, **kwargs):
        return _WatchedStream(self._inner.connect_tcp(*args, **kwargs))

    def __getattr__(self, name: str):
        return getattr(self._inner, name)


# --- one file -----------------------------------------------------------------------------


@dataclass(eq=False)
class _Part:
    file: _File
    start: int
    end: int  # exclusive
    done: int = 0  # bytes written from start
    sock: socket.socket | None = None
    last_byte_at: float = field(default_factory=time.monotonic)
    stalled: bool = False
    interrupted: bool = False

    @property
    def pos(self) -> int:
        return self.start + self.done

    @property
    def finished(self) -> bool:
        return self.pos >= self.end

    def interrupt(self) -> None:
        """Wake a blocked read at once (close() alone does not interrupt recv on Linux)."""
        self.interrupted = True
        sock = self.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class _Retryable(Exception):
    """A server hiccup (5xx, short body, stall) worth another ranged attempt."""


class _NoRanges(Exception):
    """The server answered 200 to a ranged request: fetch this file as one stream."""


class _Reresolve(Exception):
    """The signed (redirected) URL expired: resolve the original URL again."""


class _File:
    """One target: its lock, parts, range record, prefix hasher and final rename."""

    def __init__(self, run: _Run, target: Target) -> None:
        self.run = run
        self.target = target
        self.entry = target.entry
        self.error: BaseException | None = None
        self.stop = threading.Event()  # this file's parts must stop (failure or restart)
        # _lock guards parts, url, single, counted, the record file and the hasher state.
        self._lock = threading.Lock()
        self._hash_cond = threading.Condition(self._lock)
        self._turn = threading.Condition(self._lock)  # parts in flight (_busy) vs _allowed
        self._busy = 0
        self._allowed = 1
        self.parts: list[_Part] = []
        self.url = self.entry.url  # the final URL after redirects, once known
        self.single = False  # one sequential stream (the server ignores Range)
        self.no_ranges = False
        self.counted = 0  # bytes of this file counted in progress (initial + new)
        self._fd: int | None = None
        self._record_at = 0.0
        self._queue: list[_Part] = []
        self._hasher = None
        self._hashed = 0
        self._hash_gen = 0
        self._hash_done = threading.Event()

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
            if _size(target.final) == self.entry.size:
                return  # another process finished it while we waited
            attempt = 0
            while True:
                self.run.check()
                try:
                    self._transfer()
                    return
                except _Retryable as exc:  # the whole file failed verification: start it over
                    attempt += 1
                    if attempt > self.run.retries:
                        raise DownloadFailed(
                            f"{self.entry.path}: gave up after {attempt - 1} retries ({exc})"
                        ) from exc
        finally:
            lock.release()

    def _transfer(self) -> None:
        self.stop.clear()
        self._fd = os.open(self.target.partial, os.O_RDWR | os.O_CREAT, 0o644)
        self._plan()
        hasher_thread = None
        try:
            if self.entry.hasher() is not None and self.run.hash_while_fetching:
                hasher_thread = threading.Thread(target=self._hash_loop, name="fetch-hash", daemon=True)
                hasher_thread.start()
            self._run_parts()
            if self.no_ranges and not self.single:
                self._go_single()
                self._run_parts()
            self._save_record(force=True)
        finally:
            self._hash_done.set()
            with self._hash_cond:
                self._hash_cond.notify_all()
            if hasher_thread is not None:
                hasher_thread.join()
            os.close(self._fd)
            self._fd = None
        self._verify_and_place()

    # --- planning and the record ---
    def _plan(self) -> None:
        parts = _load_parts(self.target)
        size = self.entry.size
        if not parts:  # nothing usable on disk: start from an empty partial
            os.ftruncate(self._fd, 0)
            parts = [(0, size, 0)]
        elif os.fstat(self._fd).st_size > size:
            os.ftruncate(self._fd, size)
        planned: list[_Part] = []
        for start, end, done in parts:
            if done >= end - start or end - start <= self.run.part_bytes:
                planned.append(_Part(self, start, end, done))
                continue
            # an unstarted stretch (or the rest of a big part) is cut into parts in file order
            if done:
                planned.append(_Part(self, start, start + done, done))
            cut = start + done
            while cut < end:
                nxt = min(end, cut + self.run.part_bytes)
                planned.append(_Part(self, cut, nxt))
                cut = nxt
        with self._lock:
            self.parts = sorted(planned, key=lambda p: p.start)
            self.counted = sum(p.done for p in self.parts)
            self.single = len(self.parts) == 1 and self.parts[0].start == 0
            self.no_ranges = False
            self.url = self.entry.url
            self._reset_hasher()
        self._save_record(force=True)

    def _save_record(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._record_at < _RECORD_EVERY_S:
            return
        with self._lock:
            self._record_at = now
            record = {
                "version": 1,
                "size": self.entry.size,
                "id": self.entry.etag,
                "parts": [[p.start, p.end, p.done] for p in self.parts],
            }
            path = record_path(self.target)
            tmp = path.with_name(path.name + ".tmp")
            try:
                tmp.write_text(json.dumps(record))
                os.replace(tmp, path)  # atomic: never half a record
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    raise DiskFull(f"the disk is full while writing {self.entry.path}") from exc
                raise

    def _go_single(self) -> None:
        """Switch to one sequential stream from byte 0 (the server will not do ranges)."""
        with self._lock:
            self.run.progress(-self.counted)  # those bytes are written again from the start
            self.counted = 0
            self.parts = [_Part(self, 0, self.entry.size)]
            self.single = True
            self.url = self.entry.url
            self._reset_hasher()
        os.ftruncate(self._fd, 0)
        self.stop.clear()
        self._save_record(force=True)

    # --- running the parts ---
    def _run_parts(self) -> None:
        todo = [p for p in self.parts if not p.finished]
        if not todo:
            return
        self._queue = list(todo)
        probe = self._queue.pop(0)
        ready = threading.Event()  # the probe's answer is known: URL and range support
        workers = [threading.Thread(target=self._worker, args=(probe, ready), daemon=True)]
        workers += [
            threading.Thread(target=self._worker, args=(None, ready), daemon=True)
            for _ in range(min(len(self._queue), self.run.connections))
        ]
        with self._lock:
            self._busy = 1  # the probe's turn
            self._allowed = 1 if self.run.ramp else self.run.connections
        for w in workers:
            w.start()
        self._ramp(workers, ready)
        if self.error_in_parts is not None:
            err, self.error_in_parts = self.error_in_parts, None
            raise err

    error_in_parts: BaseException | None = None

    def _ramp(self, workers: list[threading.Thread], ready: threading.Event) -> None:
        """Add connections while they pay: 1, 2, 4, 8, ... as long as each step raises the rate.

        Why: behind a per-connection cap (CDNs, mirrors) every connection adds its cap, but a
        server without one only gets slower with more connections (measured on the 2-core dev
        machine, 128 MiB from the Python test hub: 1 curl 0.95 s, 8 ranged curls 2.23 s).
        Each level is measured for ``_RAMP_S``; a step that raises the rate by less than
        ``_RAMP_GAIN`` stops the ramp (and goes back a level if the rate fell).
        """
        levels = [1]
        while levels[-1] < self.run.connections:
            levels.append(min(self.run.connections, levels[-1] * 2))
        level, best, mark = 0, None, None
        ramping = self.run.ramp and len(levels) > 1
        while any(w.is_alive() for w in workers):
            next(w for w in workers if w.is_alive()).join(0.05)
            if not ramping or not ready.is_set():
                continue
            now = time.monotonic()
            with self._lock:
                counted = self.counted
                if self.single or not self._queue:
                    ramping = False
                    continue
            if mark is None:
                mark = (now, counted)
                continue
            if now - mark[0] < _RAMP_S:
                continue
            rate = (counted - mark[1]) / (now - mark[0])
            if best is None or rate >= best * _RAMP_GAIN:
                best = rate
                level += 1
                ramping = level + 1 < len(levels)
            else:
                if rate < best:
                    level -= 1
                ramping = False
            with self._turn:
                self._allowed = levels[min(level, len(levels) - 1)]
                self._turn.notify_all()
            mark = (time.monotonic(), counted)

    def _next_part(self) -> _Part | None:
        """The next part in file order, once fewer than ``_allowed`` parts are in flight."""
        with self._turn:
            while True:
                if not self._queue or self.single:
                    return None
                self.run.check()
                self.check()
                if self._busy < self._allowed:
                    self._busy += 1
                    return self._queue.pop(0)
                self._turn.wait(0.2)

    def _done_with_part(self) -> None:
        with self._turn:
            self._busy -= 1
            self._turn.notify_all()

    def _worker(self, first: _Part | None, ready: threading.Event) -> None:
        try:
            if first is None:
                while not ready.wait(0.2):
                    self.run.check()
                    self.check()
                part = self._next_part()
            else:
                part = first
            while part is not None:
                try:
                    self._fetch_part(part, ready if first is part else None)
                finally:
                    self._done_with_part()
                part = self._next_part()
        except _NoRanges:
            with self._lock:
                self.no_ranges = True
            self.stop.set()
        except BaseException as exc:
            with self._lock:
                keep = self.error_in_parts is not None and not isinstance(self.error_in_parts, Cancelled)
                restarting = isinstance(exc, Cancelled) and self.stop.is_set() and self.no_ranges
                if not keep and not restarting:  # a real fault wins over the stops it caused
                    self.error_in_parts = exc
            self.stop.set()
        finally:
            ready.set()  # never leave the others waiting on a probe that failed

    def _fetch_part(self, part: _Part, probe: threading.Event | None) -> None:
        attempt = 0
        while True:
            with self._lock:
                if self.single and part is not self.parts[0]:
                    part = self.parts[0]  # a 200 turned the file into one stream: that is our part now
            if part.finished:
                return
            self.run.check()
            self.check()
            before = part.done
            self.run.acquire_slot(self)  # before the try: only a slot we hold is released
            try:
                part = self._request(part, probe)
                if not part.finished:
                    raise _Retryable(f"connection closed at {part.pos} of {part.end} bytes")
            except _Reresolve:
                continue  # the original URL resolves to a fresh signed URL
            except httpx.TooManyRedirects as exc:
                raise DownloadFailed(f"{self.entry.url} redirects in a loop: check HF_ENDPOINT") from exc
            except (httpx.TransportError, _Retryable) as exc:
                self.run.check()
                self.check()
                if part.done > before:
                    attempt = 0  # bytes arrived: this was progress, not a failing link
                attempt += 1
                if attempt > self.run.retries:
                    raise self._give_up(part, exc) from exc
                if self.run.cancel.wait(min(0.25 * 2**attempt, 8.0)):
                    raise Cancelled("cancelled") from None
            finally:
                self.run.slots.release()
                self._save_record(force=part.finished)

    def _give_up(self, part: _Part, exc: BaseException) -> BaseException:
        where = f"{urlsplit(self.url).netloc} ({self.entry.path})"
        if part.stalled:
            return HubTimeout(
                f"{where} sent no bytes for {self.run.stall_s:g} s, {self.run.retries} times: "
                "the hub or mirror may be overloaded; try again, or check HF_ENDPOINT and the proxy"
            )
        if isinstance(exc, httpx.TransportError):
            return network_error(exc, where)
        return DownloadFailed(f"{self.entry.path}: gave up after {self.run.retries} retries ({exc})")

    def _request(self, part: _Part, probe: threading.Event | None) -> _Part:
        """One GET for a part; returns the part written (another one if the file went single)."""
        url = self.url
        headers = dict(self.run.headers)
        headers["Accept-Encoding"] = "identity"  # bytes as stored: ranges and hashes refer to them
        if urlsplit(url).netloc != urlsplit(self.entry.url).netloc:
            headers.pop("authorization", None)  # never send the HF token to the CDN
            headers.pop("Authorization", None)
        whole = part.start == 0 and part.end == self.entry.size
        ranged = not (whole and part.done == 0)
        if ranged:
            last = "" if self.single else str(part.end - 1)
            headers["Range"] = f"bytes={part.pos}-{last}"
        part.stalled = part.interrupted = False
        part.sock = None
        part.last_byte_at = time.monotonic()
        _tls.part = part
        self.run.track(part, True)
        try:
            with self.run.client.stream("GET", url, headers=headers) as response:
                code = response.status_code
                if code in (403, 410) and url != self.entry.url:
                    with self._lock:
                        if self.url == url:
                            self.url = self.entry.url
                    raise _Reresolve()
                if code == 416:  # our partial no longer matches the remote file
                    self._discard()
                    raise _Retryable("range not satisfiable; restarting the file")
                _check_status(response, self.entry.url)
                if url == self.entry.url and response.history:
                    with self._lock:
                        self.url = str(response.url)  # the redirect target, reused by every other part
                if code == 200 and ranged:
                    full = response.headers.get("content-length") in (None, str(self.entry.size))
                    if not (full and (probe is not None or self.single)):
                        raise _NoRanges()
                    if not self.single or part.done:  # adopt this whole body as one stream
                        self._go_single()
                        part = self.parts[0]
                        _tls.part = part
                        self.run.track(part, True)
                elif code == 206:
                    _check_content_range(response, part.pos, self.entry.size)
                if probe is not None:
                    probe.set()
                self._copy(part, response)
                return part
        finally:
            _tls.part = None
            self.run.track(part, False)
            if part.interrupted and not part.stalled:  # the watchdog closed it: say why
                self.run.check()
                self.check()

    def _copy(self, part: _Part, response: httpx.Response) -> None:
        fd = self._fd
        assert fd is not None
        try:
            for chunk in response.iter_raw():  # as received: a cut loses nothing already written
                if self.run.stopped() or self.stop.is_set():
                    self.run.check()
                    self.check()
                room = part.end - part.pos
                if len(chunk) > room:
                    chunk = chunk[:room]  # never past the part (nor 100%)
                if chunk:
                    os.pwrite(fd, chunk, part.pos)
                    with self._lock:
                        part.done += len(chunk)
                        self.counted += len(chunk)
                        self._hash_cond.notify()
                    part.last_byte_at = time.monotonic()
                    self.run.progress(len(chunk))
                    self._save_record()
                if part.finished:
                    return
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise DiskFull(f"the disk is full while writing {self.entry.path}") from exc
            raise
        except httpx.TransportError as exc:
            if part.stalled:
                raise _Retryable(f"no bytes for {self.run.stall_s:g} s") from exc
            raise

    # --- verification ---
    def _reset_hasher(self) -> None:
        """Caller holds _lock."""
        self._hasher = self.entry.hasher()
        self._hashed = 0
        self._hash_gen += 1
        self._hash_done.clear()

    def _frontier(self) -> int:
        """End of the contiguous written prefix. Caller holds _lock."""
        front = 0
        for p in self.parts:
            if p.start > front:
                break
            front = max(front, p.pos)
            if not p.finished:
                break
        return front

    def _hash_loop(self) -> None:
        fd = os.open(self.target.partial, os.O_RDONLY)
        try:
            while True:
                with self._hash_cond:
                    while self._frontier() <= self._hashed and not self._hash_done.is_set():
                        self._hash_cond.wait(0.5)
                    front, start, gen = self._frontier(), self._hashed, self._hash_gen
                    if front <= start:
                        return  # finished (or stopped) with nothing new
                while start < front:
                    block = os.pread(fd, min(_HASH_BLOCK, front - start), start)
                    if not block:
                        break
                    with self._lock:
                        if gen != self._hash_gen:
                            break  # the file restarted under us
                        self._hasher.update(block)
                        start += len(block)
                        self._hashed = start
        finally:
            os.close(fd)

    def _digest(self) -> str | None:
        """The file's hash: finish the prefix hash (or do it all now)."""
        with self._lock:
            hasher, hashed = self._hasher, self._hashed
        if hasher is None:
            return None
        with self.target.partial.open("rb") as f:
            f.seek(hashed)
            for block in iter(lambda: f.read(_HASH_BLOCK), b""):
                hasher.update(block)
        return hasher.hexdigest()

    def _verify_and_place(self) -> None:
        size = _size(self.target.partial)
        if size != self.entry.size:
            self._discard()
            raise _Retryable(f"{self.entry.path}: {size} bytes on disk, expected {self.entry.size}")
        digest = self._digest()
        if digest is not None and digest != self.entry.expected_digest:
            self._discard()  # never resume from bytes we know are wrong
            raise _Retryable(f"{self.entry.path}: checksum mismatch, the partial file was discarded")
        os.replace(self.target.partial, self.target.final)
        record_path(self.target).unlink(missing_ok=True)

    def _discard(self) -> None:
        """Throw the partial away and take its bytes back out of the progress count."""
        with self._lock:
            self.run.progress(-self.counted)
            self.counted = 0
            for p in self.parts:
                p.done = 0
        self.target.partial.unlink(missing_ok=True)
        record_path(self.target).unlink(missing_ok=True)


def _load_parts(target: Target) -> list[tuple[int, int, int]]:
    """What a previous attempt left: the range record, or a partial as a contiguous prefix."""
    partial = _size(target.partial)
    if partial is None:
        return []
    size = target.entry.size
    record = record_path(target)
    if record.exists():  # written by parallel parts: trust it exactly, or start over
        try:
            raw = json.loads(record.read_text())
            covered = sorted((int(s), int(e), int(d)) for s, e, d in raw["parts"])
            ok = raw.get("size") == size and raw.get("id") == target.entry.etag
            ok = ok and bool(covered) and covered[0][0] == 0 and covered[-1][1] == size
            ok = ok and all(a[1] == b[0] for a, b in zip(covered, covered[1:], strict=False))
            ok = ok and all(0 <= d <= e - s and (d == 0 or s + d <= partial) for s, e, d in covered)
            return covered if ok else []
        except (OSError, ValueError, TypeError, KeyError):
            return []
    if partial > size:
        return []
    if partial == 0:
        return [(0, size, 0)]
    return [(0, partial, partial), (partial, size, 0)] if partial < size else [(0, size, size)]


def _check_content_range(response: httpx.Response, start: int, size: int) -> None:
    value = response.headers.get("content-range", "")
    try:
        unit, _, rest = value.partition(" ")
        first = int(rest.split("-", 1)[0])
        total = rest.rsplit("/", 1)[1]
    except (ValueError, IndexError):
        raise _Retryable(f"bad Content-Range {value!r}") from None
    if unit != "bytes" or first != start or total not in ("*", str(size)):
        raise _Retryable(f"Content-Range {value!r} does not start at byte {start} of {size}")


def _check_status(response: httpx.Response, url: str) -> None:
    code = response.status_code
    if code in (200, 206):
        return
    if code in (401, 403):
        raise AccessDenied(f"access denied to {url}: is HF_TOKEN set and accepted?")
    if code == 404:
        raise RemoteNotFound(f"{url} was not found")
    if code >= 500 or code == 429:
        raise _Retryable(f"server answered {code}")
    raise DownloadFailed(f"{url}: unexpected HTTP {code}")


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None
