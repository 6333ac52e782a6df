"""Leases: the loaded models handed to one job, and the count that keeps them loaded meanwhile.

A job holds a lease for as long as it uses the models: the Whisper model, the resolved device
and the aligners come out of one lease together. The count of held leases is what makes
clear-cache and a preload of another model refuse (``ModelInUse``), so nothing is pulled out
from under a running job. A lease for another model waits here until no lease is held and no
preload runs, then starts its own preload and waits for it; this side only waits on the
preload's state and counts, it never downloads or loads.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from modelmgr.asr.aligners import AlignerLoader
from modelmgr.asr.diarizers import DiarizerLoader
from modelmgr.asr.preload_state import BUSY, PreloadState, Request
from modelmgr.core.catalog import ModelSpec
from modelmgr.core.errors import Cancelled, ModelBusy, ModelInUse, PreloadFailed
from modelmgr.core.events import EventBus


class Lease:
    """Loaded models handed to one job: Whisper, its device and (on demand) aligners and a diarizer.

    Valid only inside the ``with preload.lease(...)`` block that produced it.
    """

    def __init__(
        self,
        aligners: AlignerLoader,
        diarizers: DiarizerLoader,
        model_id: str,
        whisper: Any,
        device: str,
        compute_type: str,
    ):
        self._aligners = aligners
        self._diarizers = diarizers
        self.model_id = model_id
        self.whisper = whisper
        self.device = device
        self.compute_type = compute_type

    def aligner(self, spec: ModelSpec, language: str) -> tuple[Any, dict]:
        """``spec`` loaded for ``language`` on this lease's device (once; recorded like preloaded ones).

        The model must be on disk (the caller downloads it first, and chooses among candidates).
        """
        return self._aligners.for_job(spec, language, self.device)

    def diarizer(self, spec: ModelSpec) -> Any:
        """The diarization pipeline ``spec`` loaded on this lease's device (its files on disk)."""
        return self._diarizers.for_job(spec, self.device)


class LeaseDesk:
    """Hands out leases on the ready models and takes them back (``shared.leases`` counts them)."""

    def __init__(
        self,
        changed: threading.Condition,
        shared: PreloadState,
        aligners: AlignerLoader,
        diarizers: DiarizerLoader,
        start: Callable[..., dict[str, Any]],
        bus: EventBus,
    ) -> None:
        # changed is PreloadManager._changed, a Condition over its _lock: the one guard of `shared`,
        # the lease count included. Waiting on it releases the lock; every lease change notifies it.
        self._changed = changed
        self._shared = shared
        self._aligners = aligners
        self._diarizers = diarizers
        self._start = start  # PreloadManager.start: a lease that finds nothing loaded starts a preload
        self._bus = bus

    def acquire(
        self,
        request: Request,
        spec: ModelSpec,
        compute_type: str,
        cancel: threading.Event | None,
        on_state: Callable[[str], None] | None,
        deadline: float,
    ) -> Lease:
        """A lease on ``request``'s model once it is ready, loading it first if nothing is held."""
        shared = self._shared
        reported = None
        started = False  # we asked for this preload: its error is ours to report
        while True:
            with self._changed:
                if shared.state == "ready" and shared.serves_locked(spec.id, request.device):
                    shared.leases += 1
                    self._changed.notify_all()
                    lease = Lease(
                        self._aligners, self._diarizers, spec.id, shared.whisper, request.device, compute_type
                    )
                    status = shared.status_locked()
                    break
                ours = shared.request == request
                if started and ours and shared.state == "error":
                    raise PreloadFailed(shared.error or "preload failed")
                free = shared.state not in BUSY and shared.leases == 0
                if not free or (ours and shared.state in BUSY):
                    state = shared.state if ours else "waiting"
                    if on_state is not None and state != reported and state in (*BUSY, "waiting"):
                        reported = state
                        on_state(state)
                    self._changed.wait(0.25)
                    if cancel is not None and cancel.is_set():
                        raise Cancelled("cancelled while waiting for the models")
                    if time.monotonic() > deadline:
                        raise PreloadFailed("timed out waiting for the models to load")
                    continue
            try:  # free and not ours: start our preload (outside the lock), then wait on it
                self._start(request.model, request.language, request.device, with_align=False)
                started = True
            except (ModelBusy, ModelInUse):
                continue  # someone else got in first: wait for them
        self._bus.publish("preload", status)
        return lease

    def release(self) -> int:
        """Give one lease back (the end of a ``with preload.lease(...)`` block); returns those left."""
        with self._changed:
            self._shared.leases -= 1
            left = self._shared.leases
            self._changed.notify_all()
            status = self._shared.status_locked()
        self._bus.publish("preload", status)
        return left
