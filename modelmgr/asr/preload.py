"""PreloadManager: what is loaded, and leases on it for the jobs that use it.

``start`` is idempotent: the same request while it is downloading, loading or
ready returns the current status and loads nothing twice. Downloads go through
the DownloadManager, so a preload of a model that is downloading joins that
download instead of starting another transfer. Loading happens in a worker
thread; the request returns at once.

**Leases.** Whoever uses the loaded models holds a lease (``with
preload.lease(...) as lease``): the Whisper model, the resolved device and the
aligners come out of one lease together. While any lease is held, clear-cache and
a preload of another model answer ``ModelInUse`` (409) and a second lease for
another model waits; nothing is pulled out from under a running job. Aligners a
job loads on demand (for a detected language) are recorded like preloaded ones,
so ``is_loaded`` refuses their deletion and clear-cache frees them.

**Who does what.** This class takes requests and owns the state machine; the
work is done by parts it composes, each on the one shared record
(``preload_state.PreloadState``) under this class's one lock: the load worker
(``loading``), the lease desk (``leases``) and the aligner loader (``aligners``).
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from modelmgr.asr import loaders
from modelmgr.asr.aligners import AlignerLoader
from modelmgr.asr.diarizers import DiarizerLoader
from modelmgr.asr.leases import Lease, LeaseDesk
from modelmgr.asr.loading import PreloadWorker, wait_downloaded
from modelmgr.asr.preload_state import BUSY, PreloadState, Request
from modelmgr.core.catalog import Catalog, ModelSpec
from modelmgr.core.errors import InvalidInput, ModelBusy, ModelInUse
from modelmgr.core.events import EventBus
from modelmgr.core.settings import Settings
from modelmgr.models.downloads import DownloadManager
from modelmgr.models.store import Store

__all__ = ["Lease", "PreloadManager", "Request"]


class PreloadManager:
    def __init__(
        self, settings: Settings, catalog: Catalog, store: Store, downloads: DownloadManager, bus: EventBus
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.store = store
        self.downloads = downloads
        self.bus = bus
        # _lock guards every field of _shared; never held while loading, downloading or waiting
        # (Condition.wait releases it). The worker, the lease desk and the aligner loader below
        # are handed it (or _changed, over it) to read and write _shared: there is no other lock
        # on those fields.
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # notified on every state or lease change
        self._shared = PreloadState()
        self._aligners = AlignerLoader(
            self._lock, self._shared, settings, store, functools.partial(wait_downloaded, downloads), bus
        )
        self._worker = PreloadWorker(
            self._changed, self._shared, catalog, store, downloads, self._aligners, bus
        )
        self._diarizers = DiarizerLoader(self._lock, self._shared, catalog, store, bus)
        self._desk = LeaseDesk(self._changed, self._shared, self._aligners, self._diarizers, self.start, bus)
        # Called (outside the lock) when the last lease is given back: Services hands it the
        # download manager's collection of old revisions that waited for the jobs to end.
        self.on_leases_ended: Callable[[], object] = lambda: None

    @property
    def loads(self) -> int:
        """Whisper loads ever done; tests use it to prove idempotence."""
        return self._shared.loads

    # --- requests ---
    def validate(self, model: str, language: str | None, device: str) -> tuple[Request, ModelSpec]:
        spec = self.catalog.get(model)
        if spec.kind != "whisper":
            raise InvalidInput(f"{model} is an alignment model; preload a Whisper model")
        if language is not None:
            self.catalog.check_model_language(spec, language)
        loaders.check_device(device)
        return Request(spec.id, language or spec.language, device), spec

    def start(
        self, model: str, language: str | None = None, device: str = "auto", *, with_align: bool = True
    ) -> dict[str, Any]:
        """Download if needed and load ``model`` (and, ``with_align``, its language's aligner) in a thread.

        An aligner that cannot be had does not fail the preload: the status says why in
        ``align_error``, and jobs time words with Whisper.
        """
        request, spec = self.validate(model, language, device)
        request = Request(request.model, request.language, request.device, with_align)
        shared = self._shared
        with self._lock:
            if shared.satisfied_locked(request):
                return shared.status_locked()
            if shared.state in BUSY:
                raise ModelBusy(
                    f"a preload of {shared.request.model if shared.request else '?'} is in progress"
                )
            if shared.leases and not shared.serves_locked(spec.id, device):
                raise ModelInUse(
                    f"{shared.loaded_id_locked()} is in use by a transcription; "
                    "preload another model when it has finished"
                )
            shared.request = request
            shared.state, shared.error = "downloading", None
            self._changed.notify_all()
            thread = threading.Thread(
                target=self._worker.run, args=(request, spec), name="preload", daemon=True
            )
            status = shared.status_locked()
        self.bus.publish("preload", status)
        thread.start()
        return status

    @contextmanager
    def lease(
        self,
        model: str,
        language: str | None,
        device: str,
        *,
        cancel: threading.Event | None = None,
        on_state: Callable[[str], None] | None = None,
        timeout_s: float = 24 * 3600,
    ) -> Iterator[Lease]:
        """Load (downloading first if needed) and hold ``model`` on ``device`` for the block.

        Call from a worker thread. ``device`` "auto" is resolved here, once. Waits while
        another job's lease holds a different model. ``on_state`` hears "downloading" and
        "loading" as the preload moves; ``cancel`` stops the wait (raises Cancelled).
        """
        request, spec = self.validate(model, language, device)
        resolved, compute_type = loaders.resolve_device(device)
        request = Request(request.model, request.language, resolved, with_align=False)
        lease = self._desk.acquire(
            request, spec, compute_type, cancel, on_state, time.monotonic() + timeout_s
        )
        try:
            yield lease
        finally:
            if self._desk.release() == 0:
                self.on_leases_ended()

    def clear_cache(self) -> dict[str, Any]:
        shared = self._shared
        with self._lock:
            if shared.leases:
                raise ModelInUse("a transcription is using the loaded models; clear the cache when it ends")
            if shared.state in BUSY:
                raise ModelBusy("a preload is in progress; wait for it to finish")
            unloaded = shared.loaded_ids_locked()
            shared.whisper = None
            shared.aligners.clear()
            shared.diarizers.clear()
            shared.whisper_info = shared.align_info = shared.align_error = None
            shared.state, shared.request, shared.error, shared.loaded_at = "idle", None, None, None
            self._changed.notify_all()
        before = loaders.memory_report() if unloaded else None
        loaders.release_memory()
        after = loaders.memory_report()
        with self._lock:
            shared.memory = after
            status = shared.status_locked()
        self.bus.publish("preload", status)
        freed: dict[str, Any] = {"models": unloaded, "rss_bytes": 0, "cuda_bytes": 0}
        if before:
            freed["rss_bytes"] = max(0, before["rss_bytes"] - after["rss_bytes"])
            if before["cuda"] and after["cuda"]:
                freed["cuda_bytes"] = max(
                    0, before["cuda"]["allocated_bytes"] - after["cuda"]["allocated_bytes"]
                )
        return {"freed": freed, "status": status}

    def is_loaded(self, model_id: str) -> bool:
        """True for the loaded Whisper model, every loaded aligner (preloaded or on demand) and every
        loaded diarization pipeline with the models inside it."""
        with self._lock:
            return model_id in self._shared.loaded_ids_locked()

    def in_use(self, model_id: str) -> bool:
        """True while a job's lease holds ``model_id`` (or an aligner loaded beside it)."""
        with self._lock:
            return bool(self._shared.leases) and model_id in self._shared.loaded_ids_locked()

    def status(self) -> dict[str, Any]:
        """The status with memory measured now (the event copies carry it as of the last change)."""
        memory = loaders.memory_report()
        with self._lock:
            status = self._shared.status_locked()
        status["memory"] = memory
        return status

    def prefer_present(self, candidates: list[ModelSpec]) -> list[ModelSpec]:
        """``candidates`` with those already on disk first (order kept otherwise): no needless fetch."""
        return self._aligners.prefer_present(candidates)
