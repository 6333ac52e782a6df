"""Aligners loaded on demand for a job, recorded beside the preloaded one.

A job learns its language only once Whisper has listened, so its aligner is loaded then, on
the lease's device, and recorded in the preload's record like a preloaded aligner: ``is_loaded``
then refuses its deletion and clear-cache frees it. Loads are serialised, so two jobs in one
language load its aligner once. The preload worker builds its aligner through ``load`` too, so
both paths make an aligner the same way, and both prefer candidates already on disk.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from modelmgr.asr import loaders
from modelmgr.asr.preload_state import LoadedAligner, PreloadState
from modelmgr.core.catalog import ModelSpec
from modelmgr.core.errors import Cancelled, ModelMgrError
from modelmgr.core.events import EventBus
from modelmgr.core.settings import Settings
from modelmgr.models.nltk_data import ensure_punkt
from modelmgr.models.store import Store

log = logging.getLogger(__name__)
T = TypeVar("T")


def first_that_works(
    candidates: Iterable[ModelSpec], attempt: Callable[[ModelSpec], T]
) -> tuple[ModelSpec | None, T | None, list[str]]:
    """``attempt`` each aligner candidate in turn until one works: (its spec, what it returned,
    why the ones before it failed). A typed error is a reason in its own words; any other error
    (odd files) is logged and a reason too; a cancel goes through. (None, None, reasons): none
    worked, and the caller lets Whisper time the words."""
    reasons: list[str] = []
    for spec in candidates:
        try:
            return spec, attempt(spec), reasons
        except Cancelled:
            raise
        except ModelMgrError as exc:
            reasons.append(exc.message)
        except Exception as exc:
            log.warning("aligner %s could not be loaded", spec.id, exc_info=True)
            reasons.append(f"{spec.id} could not be loaded: {exc}")
    return None, None, reasons


class AlignerLoader:
    """Loads aligners for the preload and for jobs; records those a job loads in the shared record."""

    def __init__(
        self,
        lock: threading.Lock,
        shared: PreloadState,
        settings: Settings,
        store: Store,
        fetch: Callable[[ModelSpec], None],
        bus: EventBus,
    ) -> None:
        # lock is PreloadManager._lock, the one guard of `shared` (its aligners included): held
        # only to read or record an aligner, never while downloading or loading one.
        self._lock = lock
        self._shared = shared
        self._settings = settings
        self._store = store
        self._fetch = fetch  # downloads a model through the DownloadManager, returning when it is on disk
        self._bus = bus
        # _align_load_lock serialises on-demand aligner loads so one language is loaded once.
        self._align_load_lock = threading.Lock()

    def prefer_present(self, candidates: list[ModelSpec]) -> list[ModelSpec]:
        """``candidates`` with those already on disk first (order kept otherwise): no needless fetch."""
        present = {s.id for s in candidates if self._store.local_state(s).status == "downloaded"}
        return sorted(candidates, key=lambda s: s.id not in present)

    def for_job(self, spec: ModelSpec, language: str, device: str) -> tuple[Any, dict]:
        """``spec`` loaded for ``language`` on ``device``: once, then recorded (and the status published)."""
        with self._lock:
            found = self._shared.aligners.get(language)
        if found is not None and found.spec_id == spec.id:
            return found.model, found.metadata
        with self._align_load_lock:
            with self._lock:
                found = self._shared.aligners.get(language)
            if found is None or found.spec_id != spec.id:
                self._fetch(spec)
                found = self.load(spec, language, device)
                with self._lock:
                    self._shared.aligners[language] = found
                    status = self._shared.status_locked()
                self._bus.publish("preload", status)
        return found.model, found.metadata

    def load(self, spec: ModelSpec, language: str, device: str) -> LoadedAligner:
        """Build the aligner from the files on disk (the caller downloads it first); records nothing."""
        path = self._store.model_path(spec)
        assert path is not None
        model, metadata = loaders.load_aligner(spec, language, path, device, ensure_punkt(self._settings))
        return LoadedAligner(spec.id, language, model, metadata)
