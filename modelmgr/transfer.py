"""How bytes move: resumable, verified, cancellable HTTP transfers of files.

One function, ``fetch``, takes the files to write and knows nothing about jobs,
queues or events. Each file streams into a persistent ``.incomplete`` partial
that survives crashes; the next attempt (or the next process) resumes it with an
HTTP ``Range`` request. The hash is computed while streaming (after re-reading
the partial on resume) and checked before the partial is renamed into place, so
a file in its final place is always whole. Network errors are retried with
backoff; cancel, a full disk and integrity failures are not.
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx
from filelock import FileLock, Timeout

from .errors import AccessDenied, Cancelled, DiskFull, DownloadFailed, RemoteNotFound
from .store import Target

ProgressFn = Callable[[int], None]


def bytes_present(targets: Sequence[Target]) -> int:
    """Bytes already on disk (final files and partials): where a resume starts."""
    total = 0
    for t in targets:
        final = _size(t.final)
        total += final if final == t.entry.size else (_size(t.partial) or 0)
    return total


def fetch(
    targets: Sequence[Target],
    *,
    headers: dict[str, str],
    on_progress: ProgressFn,
    cancel: threading.Event,
    retries: int = 4,
    timeout_s: float = 30.0,
) -> None:
    """Bring every target to its final path, whole and verified, or raise."""
    with httpx.Client(headers=headers, follow_redirects=True, timeout=timeout_s) as client:
        for target in targets:
            if _size(target.final) == target.entry.size:
                continue
            _fetch_one(client, target, on_progress, cancel, retries)


def _fetch_one(
    client: httpx.Client,
    target: Target,
    on_progress: ProgressFn,
    cancel: threading.Event,
    retries: int,
) -> None:
    target.final.parent.mkdir(parents=True, exist_ok=True)
    target.lock.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(target.lock)
    while True:  # wait for another process writing the same file, but stay cancellable
        if cancel.is_set():
            raise Cancelled("cancelled")
        try:
            lock.acquire(timeout=0.5)
            break
        except Timeout:
            continue
    try:
        if _size(target.final) == target.entry.size:
            return  # the other process finished it while we waited
        attempt = 0
        while True:
            if cancel.is_set():
                raise Cancelled("cancelled")
            try:
                _stream(client, target, on_progress, cancel)
                return
            except (httpx.TransportError, _Retryable) as exc:
                attempt += 1
                if attempt > retries:
                    raise DownloadFailed(
                        f"{target.entry.path}: gave up after {retries} retries ({exc})"
                    ) from exc
                if cancel.wait(min(0.25 * 2**attempt, 8.0)):
                    raise Cancelled("cancelled") from None
    finally:
        lock.release()


class _Retryable(Exception):
    """A server hiccup (5xx, short body) worth another ranged attempt."""


def _stream(client: httpx.Client, target: Target, on_progress: ProgressFn, cancel: threading.Event) -> None:
    entry = target.entry
    hasher = entry.hasher()
    offset = _size(target.partial) or 0
    if offset > entry.size:
        target.partial.unlink()
        offset = 0
    if offset and hasher:
        with target.partial.open("rb") as existing:
            for block in iter(lambda: existing.read(1 << 20), b""):
                hasher.update(block)
    if offset < entry.size:
        range_header = {"Range": f"bytes={offset}-"} if offset else {}
        with client.stream("GET", entry.url, headers=range_header) as response:
            if response.status_code == 416:  # our partial no longer matches the remote file
                target.partial.unlink(missing_ok=True)
                raise _Retryable("range not satisfiable; restarting the file")
            _check_status(response, entry.url)
            if offset and response.status_code != 206:  # server ignored Range: start over
                offset = 0
                hasher = entry.hasher()
                on_progress(-(_size(target.partial) or 0))
            mode = "ab" if offset else "wb"
            try:
                with target.partial.open(mode) as out:
                    for chunk in response.iter_bytes():  # as received: a cut loses nothing already read
                        if cancel.is_set():
                            raise Cancelled("cancelled")
                        out.write(chunk)
                        if hasher:
                            hasher.update(chunk)
                        offset += len(chunk)
                        on_progress(len(chunk))
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    raise DiskFull(f"the disk is full while writing {entry.path}") from exc
                raise
    if offset < entry.size:
        raise _Retryable(f"connection closed at {offset} of {entry.size} bytes")
    if hasher and hasher.hexdigest() != entry.expected_digest:
        target.partial.unlink(missing_ok=True)  # never resume from bytes we know are wrong
        raise _Retryable(f"{entry.path}: checksum mismatch, the partial file was discarded")
    os.replace(target.partial, target.final)


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
