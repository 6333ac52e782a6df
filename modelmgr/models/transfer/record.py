"""The range record beside a partial: what lets a new process resume after ``kill -9``.

Beside ``<blob>.incomplete`` lives ``<blob>.incomplete.ranges`` (JSON: every part's start,
end and bytes written). Bytes are written with ``pwrite`` *before* the record says so, and
the record is replaced atomically, so it never claims more than the partial holds. It is
trusted exactly or not at all: a record that does not tile the file, names another blob or
claims bytes past the partial's end means starting over. A partial without a record (an older
sequential transfer) counts as a contiguous prefix.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path

from modelmgr.models.cache_layout import Target, file_size
from modelmgr.models.transfer.disk import disk_full_is_fatal
from modelmgr.models.transfer.parts import Part

RANGES_SUFFIX = ".ranges"  # the range record: <blob>.incomplete.ranges
_RECORD_EVERY_S = 0.02  # a kill -9 loses at most this long of bytes (plus what was in flight)


def record_path(target: Target) -> Path:
    return target.partial.with_name(target.partial.name + RANGES_SUFFIX)


def bytes_present(targets: Sequence[Target]) -> int:
    """Bytes already on disk (final files, and parts of partials): where a resume starts."""
    total = 0
    for t in targets:
        final = file_size(t.final)
        total += final if final == t.entry.size else sum(done for _, _, done in load_parts(t))
    return total


def load_parts(target: Target) -> list[tuple[int, int, int]]:
    """What a previous attempt left: the range record, or a partial as a contiguous prefix."""
    partial = file_size(target.partial)
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


class RangeRecord:
    """Writes one target's record: atomically, and at most every ``_RECORD_EVERY_S`` unless forced.

    The parts are copied under the file's lock (``snapshot``: no I/O) and written without it
    (``write``), so a slow write never stops the parts: under load (two cores, load average
    10+) a write took 10-500 ms, and while it held the file's lock every part stopped reading
    its socket; the hub's bytes piled up in the socket buffers (14 MiB of a 64 MiB file) and a
    kill -9 lost them all. Writes are serialised by their own lock and numbered: an older copy
    never replaces a newer one, nor comes back after ``remove``.
    """

    def __init__(self, target: Target) -> None:
        self._target = target
        self._path = record_path(target)
        self._tmp = self._path.with_name(self._path.name + ".tmp")
        self._saved_at = 0.0  # when the last write began (read without a lock: a rate limit only)
        self._io = threading.Lock()  # one write at a time; guards _written and the files
        self._issued = 0  # copies taken (under the file's lock)
        self._written = 0  # the newest copy on disk: older ones are dropped

    def due(self, now: float, force: bool) -> bool:
        return force or now - self._saved_at >= _RECORD_EVERY_S

    def snapshot(self, parts: Sequence[Part]) -> tuple[int, list[list[int]]]:
        """A numbered copy of ``parts``. Caller holds the lock that guards the parts."""
        self._issued += 1
        return self._issued, [[p.start, p.end, p.done] for p in parts]

    def write(self, snapshot: tuple[int, list[list[int]]], now: float, *, wait: bool = True) -> None:
        """Replace the record with ``snapshot``, unless a newer one is on disk. Without ``wait``
        it gives way to a write in progress (a later chunk writes a newer copy)."""
        seq, parts = snapshot
        if not self._io.acquire(blocking=wait):
            return
        try:
            if seq <= self._written:
                return
            self._saved_at = now
            entry = self._target.entry
            data = json.dumps({"version": 1, "size": entry.size, "id": entry.etag, "parts": parts}).encode()
            with disk_full_is_fatal(entry.path):
                fd = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                try:
                    os.write(fd, data)
                finally:
                    os.close(fd)
                os.replace(self._tmp, self._path)  # atomic: never half a record
            self._written = seq
        finally:
            self._io.release()

    def remove(self) -> None:
        """Remove the record; copies taken before this are never written."""
        with self._io:
            self._written = max(self._written, self._issued)
            self._path.unlink(missing_ok=True)
