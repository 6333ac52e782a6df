"""Relay: the workers' events (Redis pub/sub) onto this web process's own EventBus.

Every web replica runs one relay thread. The local bus stamps its own ids, so ids stay
increasing per web process and ``Last-Event-ID`` replay works unchanged. Job events keep
their name (``transcription``); a worker's download and preload events become
``worker_model_progress`` / ``worker_preload`` with the worker's name, so they are not
mistaken for this process's own model cache.

Pub/sub delivers nothing while the connection is down: the relay reconnects with a
backoff and then reconciles (the job records in Redis are the truth; waiters re-read them).
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import redis

from modelmgr.core.errors import QueueUnavailable
from modelmgr.core.events import EventBus
from modelmgr.distributed.state import CHANNEL, SharedState

log = logging.getLogger(__name__)
RECONCILE_S = 2.0
SWEEP_S = 60.0


class Relay:
    def __init__(
        self,
        state: SharedState,
        bus: EventBus,
        on_event: Callable[[str, dict[str, Any]], None],
        reconcile: Callable[[], None],
        sweep: Callable[[], None] | None = None,
    ) -> None:
        self.state, self.bus = state, bus
        self.on_event, self.reconcile, self.sweep = on_event, reconcile, sweep
        self.connected = False  # written by the relay thread only; a plain bool read is atomic
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="redis-relay", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def _run(self) -> None:
        backoff = 0.2
        while not self._stop.is_set():
            pubsub = None
            try:
                pubsub = self.state.redis.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(CHANNEL)
                self.connected, backoff = True, 0.2
                self._safe_reconcile()
                next_reconcile = time.monotonic() + RECONCILE_S
                next_sweep = time.monotonic()
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=0.5)
                    if message is not None and message.get("type") == "message":
                        self._handle(message["data"])
                    now = time.monotonic()
                    if now >= next_reconcile:
                        self._safe_reconcile()
                        next_reconcile = now + RECONCILE_S
                    if self.sweep is not None and now >= next_sweep:
                        self.sweep()  # never raises: it logs and waits for the next round
                        next_sweep = now + SWEEP_S
            except (redis.RedisError, OSError) as exc:
                if self.connected:
                    log.warning("lost the Redis event channel (%s); reconnecting", exc)
                self.connected = False
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                if pubsub is not None:
                    with contextlib.suppress(Exception):  # closing a dead connection may fail
                        pubsub.close()
        self.connected = False

    def _handle(self, raw: str) -> None:
        try:
            envelope = json.loads(raw)
            name, data, origin = envelope["name"], envelope["data"], envelope.get("origin")
        except (ValueError, KeyError, TypeError):
            log.warning("ignored a malformed event on %s", CHANNEL)
            return
        if name == "transcription":
            self.on_event(name, data)  # the live job first: a waiter woken by the bus sees its status
            self.bus.publish(name, data)
        elif name in ("model_progress", "preload"):
            self.bus.publish(f"worker_{name}", {**data, "worker": origin})
        elif name == "worker":
            self.bus.publish("worker", data)

    def _safe_reconcile(self) -> None:
        try:
            self.reconcile()
        except QueueUnavailable as exc:
            raise redis.ConnectionError(exc.message) from exc
