"""EventBus: worker threads publish, each SSE client reads its own asyncio.Queue.

Deliberate choices (keep them):

* ``publish`` may be called from any thread and never blocks: under one lock it
  stamps an id, appends to the replay buffer and hands fan-out to the event loop
  with ``loop.call_soon_threadsafe`` (so the loop sees events in id order).
  Only the loop thread touches the queues, so they need no lock of their own.
* Queues are bounded. When a slow client's queue is full, its oldest
  *progress* event is dropped (a newer one supersedes it); terminal events
  (downloaded / error / cancelled) and everything else are never dropped. If a
  queue holds nothing droppable, the client is marked ``lagging`` and gets a
  fresh snapshot instead of the backlog.
* Every event has an increasing id; a reconnecting client sends
  ``Last-Event-ID`` and gets what it missed from the replay buffer, or a fresh
  snapshot if the buffer no longer reaches back that far.
* ``close`` puts a sentinel in every queue so streams end at once on shutdown.
* **Serialized once.** ``publish`` encodes the event's SSE frame (JSON data, id,
  name) in the publishing thread, once; every stream sends those same bytes.
  With 100 clients, encoding per client was 100 ``json.dumps`` on the loop per
  event.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

DROPPABLE = frozenset({"model_progress"})
TERMINAL_STATUSES = frozenset({"downloaded", "error", "cancelled", "not_downloaded", "corrupt"})


@dataclass(frozen=True)
class Event:
    id: int
    name: str
    data: dict[str, Any]
    sse: bytes = b""  # the whole SSE frame, encoded once at publish

    @classmethod
    def make(cls, event_id: int, name: str, data: dict[str, Any]) -> Event:
        return cls(event_id, name, data, sse_frame(event_id, name, json.dumps(data, default=str)))

    @property
    def droppable(self) -> bool:
        return self.name in DROPPABLE and self.data.get("status") not in TERMINAL_STATUSES


CLOSED = Event(-1, "closed", {})


def sse_frame(event_id: int, name: str, data_json: str) -> bytes:
    """One Server-Sent Events frame. ``json.dumps`` output has no newline: one data line."""
    return f"id: {event_id}\r\nevent: {name}\r\ndata: {data_json}\r\n\r\n".encode()


class SubscriberQueue(asyncio.Queue):
    """A bounded queue that makes room by dropping superseded progress, never terminal events."""

    lagging = False

    def put_nowait(self, item: Event) -> None:
        if self.full():
            if item is CLOSED:
                self._queue.clear()  # type: ignore[attr-defined]
            elif not self._drop_superseded(item):
                self.lagging = True  # nothing can go: the client resyncs from a snapshot
                self._queue.clear()  # type: ignore[attr-defined]
        super().put_nowait(item)

    def _drop_superseded(self, incoming: Event) -> bool:
        """Drop the oldest progress event that a newer event of the same model replaces."""
        queued: deque[Event] = self._queue  # type: ignore[attr-defined]  # asyncio.Queue's storage, meant for subclasses
        newest = {e.data.get("model"): e.id for e in queued if e.name in DROPPABLE}
        if incoming.name in DROPPABLE:
            newest[incoming.data.get("model")] = incoming.id
        for event in queued:
            if event.droppable and newest.get(event.data.get("model"), -1) > event.id:
                queued.remove(event)
                return True
        return False


class EventBus:
    def __init__(self, *, replay: int = 2048, queue_size: int = 256) -> None:
        self._lock = threading.Lock()  # guards _next_id, _replay and the order of fan-out calls
        self._next_id = 1
        self._replay: deque[Event] = deque(maxlen=replay)
        self._queues: set[SubscriberQueue] = set()  # touched on the loop thread only
        self._queue_size = queue_size
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    # --- lifecycle (loop thread) ---
    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Remember the server's loop; publishing before this only fills the replay buffer."""
        self._loop = loop
        self._closed = False

    def close(self) -> None:
        """End every stream now (server shutdown)."""
        self._closed = True
        for queue in list(self._queues):
            queue.put_nowait(CLOSED)

    @property
    def closed(self) -> bool:
        return self._closed

    # --- publishing (any thread) ---
    @property
    def last_id(self) -> int:
        with self._lock:
            return self._next_id - 1

    def publish(self, name: str, data: dict[str, Any]) -> Event:
        with self._lock:
            event = Event.make(self._next_id, name, data)
            self._next_id += 1
            self._replay.append(event)
            loop = self._loop
            # Scheduled under the lock so the loop fans events out in id order; a stream skips
            # ids it has passed, so out-of-order delivery would lose events. The call only
            # appends to the loop's queue: it never blocks.
            if loop is not None and not loop.is_closed():
                with contextlib.suppress(RuntimeError):  # the loop closed between the check and the call
                    loop.call_soon_threadsafe(self._fan_out, event)
        return event

    def _fan_out(self, event: Event) -> None:
        for queue in self._queues:
            queue.put_nowait(event)

    # --- subscribing (loop thread) ---
    def subscribe(self, last_event_id: int | None = None) -> tuple[SubscriberQueue, list[Event] | None]:
        """Register a queue. Returns it with the events to replay, or None if a snapshot is needed."""
        queue = SubscriberQueue(self._queue_size)
        self._queues.add(queue)
        if self._closed:
            queue.put_nowait(CLOSED)
        if last_event_id is None:
            return queue, None
        with self._lock:
            oldest = self._replay[0].id if self._replay else self._next_id
            if last_event_id < oldest - 1 or last_event_id >= self._next_id:
                return queue, None
            missed = [e for e in self._replay if e.id > last_event_id]
        return queue, missed

    def unsubscribe(self, queue: SubscriberQueue) -> None:
        self._queues.discard(queue)

    @property
    def subscriber_count(self) -> int:
        return len(self._queues)
