"""The preload worker: download, load Whisper, preload an aligner, then say ready (or why not).

It runs in the thread ``PreloadManager.start`` spawns, so the request that started it has
already answered. Downloads go through the DownloadManager (``wait_downloaded``), so a preload
of a model that is downloading joins that transfer instead of starting another. It takes the
preload's lock only to read what it may reuse and to record the outcome, never while it
downloads or loads. An aligner that cannot be had does not fail the preload: the record says
why (``align_error``) and jobs time words with Whisper.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from modelmgr.asr import loaders
from modelmgr.asr.aligners import AlignerLoader, first_that_works
from modelmgr.asr.preload_state import LoadedAligner, PreloadState, Request
from modelmgr.core.catalog import Catalog, ModelSpec
from modelmgr.core.errors import DownloadFailed, ModelMgrError
from modelmgr.core.events import EventBus
from modelmgr.models.downloads import DownloadManager
from modelmgr.models.store import Store

log = logging.getLogger(__name__)


def wait_downloaded(downloads: DownloadManager, spec: ModelSpec, languages: list[str] | None = None) -> None:
    """Download ``spec`` (joining a transfer already running) and return once it is on disk."""
    result = downloads.start(spec.id, languages=languages, with_align=languages is not None)
    if result.job is None:
        return
    result.job.done.wait()
    if result.job.status != "downloaded":
        raise DownloadFailed(f"{spec.id} could not be downloaded: {result.job.error or result.job.status}")


class PreloadWorker:
    """The body of the preload thread: one ``run`` per accepted ``start``."""

    def __init__(
        self,
        changed: threading.Condition,
        shared: PreloadState,
        catalog: Catalog,
        store: Store,
        downloads: DownloadManager,
        aligners: AlignerLoader,
        bus: EventBus,
    ) -> None:
        # changed is PreloadManager._changed, a Condition over its _lock: the one guard of `shared`.
        # Every state change is notified on it (a lease waiting for "ready" wakes).
        self._changed = changed
        self._shared = shared
        self._catalog = catalog
        self._store = store
        self._downloads = downloads
        self._aligners = aligners
        self._bus = bus

    def run(self, request: Request, spec: ModelSpec) -> None:
        try:
            wants_align = request.with_align and request.language is not None
            wait_downloaded(self._downloads, spec, [request.language] if wants_align else None)
            self._set(state="loading")
            device, compute_type = loaders.resolve_device(request.device)
            whisper_path = self._store.model_path(spec)
            assert whisper_path is not None
            info = {"id": spec.id, "device": device, "compute_type": compute_type}
            shared = self._shared
            with self._changed:
                reuse = shared.whisper_info == info
                whisper = shared.whisper if reuse else None
                kept = dict(shared.aligners) if shared.device == device else {}
                kept_diarizers = dict(shared.diarizers) if shared.device == device else {}
            if whisper is None:
                whisper = loaders.load_whisper(whisper_path, device, compute_type)
            align_spec, align_error = None, None
            if wants_align and request.language:
                align_spec, align_error = self._preload_aligner(request.language, device, kept)
            memory = loaders.memory_report()
            with self._changed:
                if not reuse:
                    shared.loads += 1
                shared.whisper, shared.device, shared.whisper_info = whisper, device, info
                shared.aligners = kept
                shared.diarizers = kept_diarizers
                shared.align_info = (
                    {"id": align_spec.id, "language": request.language} if align_spec is not None else None
                )
                shared.align_error = align_error
                shared.loaded_at, shared.memory = time.time(), memory
                shared.state = "ready"
                self._changed.notify_all()
                status = shared.status_locked()
            self._bus.publish("preload", status)
        except ModelMgrError as exc:
            self._set(state="error", error=exc.message)
        except Exception as exc:  # a loader failing on odd files must show up as an error, not a dead thread
            log.exception("preload of %s failed", spec.id)
            self._set(
                state="error",
                error=f"loading failed: {exc}. If the files may be damaged, run Verify on {spec.id} "
                f"(POST /api/models/{spec.id}/verify); a download then repairs them",
            )

    def _preload_aligner(
        self, language: str, device: str, kept: dict[str, LoadedAligner]
    ) -> tuple[ModelSpec | None, str | None]:
        """Download and load the first aligner candidate that can be had (into ``kept``).

        Returns the aligner's spec (None: whisperx has none for the language) and, when
        every candidate failed, why: the preload is still ready, and Whisper times words.
        """
        candidates = self._catalog.align_candidates(language)
        loaded = kept.get(language)
        for align_spec in candidates:
            if loaded is not None and loaded.spec_id == align_spec.id:
                return align_spec, None  # a job already loaded one of them

        def attempt(align_spec: ModelSpec) -> LoadedAligner:
            wait_downloaded(self._downloads, align_spec)
            return self._aligners.load(align_spec, language, device)

        chosen, aligner, reasons = first_that_works(self._aligners.prefer_present(candidates), attempt)
        if chosen is not None and aligner is not None:
            kept[language] = aligner
            return chosen, None
        if not reasons:
            return None, None
        message = f"no alignment model for {language!r} could be had ({'; '.join(reasons)})"
        log.warning("%s; word times will come from Whisper", message)
        return None, message

    def _set(self, **fields: Any) -> None:
        with self._changed:
            self._shared.state = fields.get("state", self._shared.state)
            self._shared.error = fields.get("error")
            self._changed.notify_all()
            status = self._shared.status_locked()
        self._bus.publish("preload", status)
