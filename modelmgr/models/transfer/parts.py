"""A file cut into parts: the planner, and the part a worker writes and the watchdog watches.

Parts are planned in file order so that the finished prefix (what the hasher can follow and a
resume can trust) grows steadily: a stretch already written stays one part, and everything
not yet fetched is cut into ``part_bytes`` pieces.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(eq=False)
class Part:
    stop: threading.Event  # the file's: set when its parts must stop (failure or restart)
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


def plan_parts(
    stretches: Sequence[tuple[int, int, int]], part_bytes: int, stop: threading.Event
) -> list[Part]:
    """Parts for ``(start, end, done)`` stretches, in file order, none unstarted over ``part_bytes``."""
    planned: list[Part] = []
    for start, end, done in stretches:
        if done >= end - start or end - start <= part_bytes:
            planned.append(Part(stop, start, end, done))
            continue
        # an unstarted stretch (or the rest of a big part) is cut into parts in file order
        if done:
            planned.append(Part(stop, start, start + done, done))
        cut = start + done
        while cut < end:
            nxt = min(end, cut + part_bytes)
            planned.append(Part(stop, cut, nxt))
            cut = nxt
    return sorted(planned, key=lambda p: p.start)


def frontier(parts: Sequence[Part]) -> int:
    """End of the contiguous written prefix (parts sorted by start)."""
    front = 0
    for p in parts:
        if p.start > front:
            break
        front = max(front, p.pos)
        if not p.finished:
            break
    return front
