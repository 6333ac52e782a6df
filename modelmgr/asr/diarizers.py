"""Diarization pipelines loaded for jobs, recorded beside the Whisper model and the aligners.

A job that diarizes loads its pipeline at the start of its lease, on the lease's device, so
the pipeline and the models inside it are "loaded" for as long as the job runs: deleting or
clearing them answers ``ModelInUse``, as for Whisper. It stays loaded for the next job (one
load, like an aligner) until clear-cache. Loads are serialised so two jobs load it once.
"""

from __future__ import annotations

import threading

from modelmgr.asr import loaders
from modelmgr.asr.preload_state import LoadedDiarizer, PreloadState
from modelmgr.core.catalog import Catalog, ModelSpec
from modelmgr.core.errors import PreloadFailed
from modelmgr.core.events import EventBus
from modelmgr.models.pipeline_parts import config_path, named_models, pipeline_parts
from modelmgr.models.store import Store


class DiarizerLoader:
    """Builds pyannote pipelines from the files on disk and records them in the shared record."""

    def __init__(
        self, lock: threading.Lock, shared: PreloadState, catalog: Catalog, store: Store, bus: EventBus
    ) -> None:
        # lock is PreloadManager._lock, the one guard of `shared` (its diarizers included): held
        # only to read or record a diarizer, never while loading one.
        self._lock = lock
        self._shared = shared
        self._catalog = catalog
        self._store = store
        self._bus = bus
        self._load_lock = threading.Lock()  # serialises diarizer loads: one pipeline is loaded once

    def for_job(self, spec: ModelSpec, device: str) -> object:
        """``spec`` loaded on ``device`` (once), recorded and published. Its files must be on disk."""
        with self._lock:
            found = self._shared.diarizers.get(spec.id)
        if found is not None:
            return found.model
        with self._load_lock:
            with self._lock:
                found = self._shared.diarizers.get(spec.id)
            if found is None:
                found = self.load(spec, device)
                with self._lock:
                    self._shared.diarizers[spec.id] = found
                    status = self._shared.status_locked()
                self._bus.publish("preload", status)
        return found.model

    def load(self, spec: ModelSpec, device: str) -> LoadedDiarizer:
        config = config_path(self._store, spec)
        if config is None:
            raise PreloadFailed(f"{spec.id} is not downloaded")
        parts = pipeline_parts(self._catalog, self._store, spec)
        by_repo: dict[str, object] = {}
        for repo in named_models(config).values():
            part = self._catalog.part_for_repo(repo)
            folder = self._store.model_path(part) if part is not None else None
            if part is None or folder is None or self._store.local_state(part).status != "downloaded":
                raise PreloadFailed(f"{repo}, which {spec.id} runs, is not downloaded")
            by_repo[repo] = folder / "pytorch_model.bin"
        model = loaders.load_diarizer(config, by_repo, device)  # type: ignore[arg-type]
        return LoadedDiarizer(spec.id, tuple(p.id for p in parts), model)
