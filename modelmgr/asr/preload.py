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
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from modelmgr.asr import loaders
from modelmgr.core.catalog import Catalog, ModelSpec
from modelmgr.core.errors import (
    Cancelled,
    DownloadFailed,
    InvalidInput,
    ModelBusy,
    ModelInUse,
    ModelMgrError,
    PreloadFailed,
)
from modelmgr.core.events import EventBus
from modelmgr.core.settings import Settings
from modelmgr.models.downloads import DownloadManager
from modelmgr.models.nltk_data import ensure_punkt
from modelmgr.models.store import Store

log = logging.getLogger(__name__)
BUSY = ("downloading", "loading")


@dataclass(frozen=True)
class Request:
    model: str
    language: str | None
    device: str
    with_align: bool = True  # also load the language's aligner (a job's lease loads its own, on demand)


@dataclass
class LoadedAligner:
    spec_id: str
    language: str
    model: Any
    metadata: dict


class Lease:
    """Loaded models handed to one job: Whisper, its device and (on demand) aligners.

    Valid only inside the ``with preload.lease(...)`` block that produced it.
    """

    def __init__(self, manager: PreloadManager, model_id: str, whisper: Any, device: str, compute_type: str):
        self._manager = manager
        self.model_id = model_id
        self.whisper = whisper
        self.device = device
        self.compute_type = compute_type

    def aligner(self, spec: ModelSpec, language: str) -> tuple[Any, dict]:
        """``spec`` loaded for ``language`` on this lease's device (once; recorded like preloaded ones).

        The model must be on disk (the caller downloads it first, and chooses among candidates).
        """
        return self._manager._aligner_for(spec, language, self.device)


class PreloadManager:
    def __init__(
        self, settings: Settings, catalog: Catalog, store: Store, downloads: DownloadManager, bus: EventBus
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.store = store
        self.downloads = downloads
        self.bus = bus
        # _lock guards every field below; never held while loading, downloading or waiting
        # (Condition.wait releases it).
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # notified on every state or lease change
        self._state = "idle"
        self._request: Request | None = None
        self._error: str | None = None
        self._device: str | None = None
        self._whisper: Any = None
        self._whisper_info: dict[str, Any] | None = None
        self._aligners: dict[str, LoadedAligner] = {}  # language -> aligner on self._device
        self._align_info: dict[str, Any] | None = None  # the aligner the preload request asked for
        self._align_error: str | None = None  # why that aligner could not be had (Whisper times words)
        self._loaded_at: float | None = None
        self._memory: dict[str, Any] = {}
        self._leases = 0  # jobs using the loaded models right now
        # _align_load_lock serialises on-demand aligner loads so one language is loaded once.
        self._align_load_lock = threading.Lock()
        self.loads = 0  # whisper loads ever done; tests use it to prove idempotence

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
        with self._lock:
            if self._satisfied_locked(request):
                return self._status_locked()
            if self._state in BUSY:
                raise ModelBusy(
                    f"a preload of {self._request.model if self._request else '?'} is in progress"
                )
            if self._leases and not self._serves_locked(spec.id, device):
                raise ModelInUse(
                    f"{self._loaded_id_locked()} is in use by a transcription; "
                    "preload another model when it has finished"
                )
            self._request = request
            self._state, self._error = "downloading", None
            self._changed.notify_all()
            thread = threading.Thread(target=self._run, args=(request, spec), name="preload", daemon=True)
            status = self._status_locked()
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
        lease = self._acquire(request, spec, compute_type, cancel, on_state, time.monotonic() + timeout_s)
        try:
            yield lease
        finally:
            with self._lock:
                self._leases -= 1
                self._changed.notify_all()
                status = self._status_locked()
            self.bus.publish("preload", status)

    def _acquire(
        self,
        request: Request,
        spec: ModelSpec,
        compute_type: str,
        cancel: threading.Event | None,
        on_state: Callable[[str], None] | None,
        deadline: float,
    ) -> Lease:
        reported = None
        started = False  # we asked for this preload: its error is ours to report
        while True:
            with self._changed:
                if self._state == "ready" and self._serves_locked(spec.id, request.device):
                    self._leases += 1
                    self._changed.notify_all()
                    lease = Lease(self, spec.id, self._whisper, request.device, compute_type)
                    status = self._status_locked()
                    break
                ours = self._request == request
                if started and ours and self._state == "error":
                    raise PreloadFailed(self._error or "preload failed")
                free = self._state not in BUSY and self._leases == 0
                if not free or (ours and self._state in BUSY):
                    state = self._state if ours else "waiting"
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
                self.start(request.model, request.language, request.device, with_align=False)
                started = True
            except (ModelBusy, ModelInUse):
                continue  # someone else got in first: wait for them
        self.bus.publish("preload", status)
        return lease

    def clear_cache(self) -> dict[str, Any]:
        with self._lock:
            if self._leases:
                raise ModelInUse("a transcription is using the loaded models; clear the cache when it ends")
            if self._state in BUSY:
                raise ModelBusy("a preload is in progress; wait for it to finish")
            unloaded = self._loaded_ids_locked()
            self._whisper = None
            self._aligners.clear()
            self._whisper_info = self._align_info = self._align_error = None
            self._state, self._request, self._error, self._loaded_at = "idle", None, None, None
            self._changed.notify_all()
        before = loaders.memory_report() if unloaded else None
        loaders.release_memory()
        after = loaders.memory_report()
        with self._lock:
            self._memory = after
            status = self._status_locked()
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
        """True for the loaded Whisper model and every loaded aligner (preloaded or on demand)."""
        with self._lock:
            return model_id in self._loaded_ids_locked()

    def in_use(self, model_id: str) -> bool:
        """True while a job's lease holds ``model_id`` (or an aligner loaded beside it)."""
        with self._lock:
            return bool(self._leases) and model_id in self._loaded_ids_locked()

    def status(self) -> dict[str, Any]:
        """The status with memory measured now (the event copies carry it as of the last change)."""
        memory = loaders.memory_report()
        with self._lock:
            status = self._status_locked()
        status["memory"] = memory
        return status

    # --- worker ---
    def _run(self, request: Request, spec: ModelSpec) -> None:
        try:
            wants_align = request.with_align and request.language is not None
            self._wait_downloaded(spec, [request.language] if wants_align else None)
            self._set(state="loading")
            device, compute_type = loaders.resolve_device(request.device)
            whisper_path = self.store.model_path(spec)
            assert whisper_path is not None
            info = {"id": spec.id, "device": device, "compute_type": compute_type}
            with self._lock:
                reuse = self._whisper_info == info
                whisper = self._whisper if reuse else None
                kept = dict(self._aligners) if self._device == device else {}
            if whisper is None:
                whisper = loaders.load_whisper(whisper_path, device, compute_type)
            align_spec, align_error = None, None
            if wants_align and request.language:
                align_spec, align_error = self._preload_aligner(request.language, device, kept)
            memory = loaders.memory_report()
            with self._lock:
                if not reuse:
                    self.loads += 1
                self._whisper, self._device, self._whisper_info = whisper, device, info
                self._aligners = kept
                self._align_info = (
                    {"id": align_spec.id, "language": request.language} if align_spec is not None else None
                )
                self._align_error = align_error
                self._loaded_at, self._memory = time.time(), memory
                self._state = "ready"
                self._changed.notify_all()
                status = self._status_locked()
            self.bus.publish("preload", status)
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
        candidates = self.catalog.align_candidates(language)
        loaded = kept.get(language)
        for align_spec in candidates:
            if loaded is not None and loaded.spec_id == align_spec.id:
                return align_spec, None  # a job already loaded one of them
        reasons = []
        for align_spec in self.prefer_present(candidates):
            try:
                self._wait_downloaded(align_spec)
                kept[language] = self._load_aligner(align_spec, language, device)
                return align_spec, None
            except ModelMgrError as exc:
                reasons.append(exc.message)
            except Exception as exc:  # odd files: say so, the preload still serves Whisper
                log.warning("aligner %s could not be loaded", align_spec.id, exc_info=True)
                reasons.append(f"{align_spec.id} could not be loaded: {exc}")
        if not reasons:
            return None, None
        message = f"no alignment model for {language!r} could be had ({'; '.join(reasons)})"
        log.warning("%s; word times will come from Whisper", message)
        return None, message

    def prefer_present(self, candidates: list[ModelSpec]) -> list[ModelSpec]:
        """``candidates`` with those already on disk first (order kept otherwise): no needless fetch."""
        present = {s.id for s in candidates if self.store.local_state(s).status == "downloaded"}
        return sorted(candidates, key=lambda s: s.id not in present)

    def _aligner_for(self, spec: ModelSpec, language: str, device: str) -> tuple[Any, dict]:
        with self._lock:
            found = self._aligners.get(language)
        if found is not None and found.spec_id == spec.id:
            return found.model, found.metadata
        with self._align_load_lock:
            with self._lock:
                found = self._aligners.get(language)
            if found is None or found.spec_id != spec.id:
                self._wait_downloaded(spec)
                found = self._load_aligner(spec, language, device)
                with self._lock:
                    self._aligners[language] = found
                    status = self._status_locked()
                self.bus.publish("preload", status)
        return found.model, found.metadata

    def _load_aligner(self, spec: ModelSpec, language: str, device: str) -> LoadedAligner:
        path = self.store.model_path(spec)
        assert path is not None
        model, metadata = loaders.load_aligner(spec, language, path, device, ensure_punkt(self.settings))
        return LoadedAligner(spec.id, language, model, metadata)

    def _wait_downloaded(self, spec: ModelSpec, languages: list[str] | None = None) -> None:
        result = self.downloads.start(spec.id, languages=languages, with_align=languages is not None)
        if result.job is None:
            return
        result.job.done.wait()
        if result.job.status != "downloaded":
            raise DownloadFailed(
                f"{spec.id} could not be downloaded: {result.job.error or result.job.status}"
            )

    def _set(self, **fields: Any) -> None:
        with self._lock:
            self._state = fields.get("state", self._state)
            self._error = fields.get("error")
            self._changed.notify_all()
            status = self._status_locked()
        self.bus.publish("preload", status)

    # --- under _lock ---
    def _satisfied_locked(self, request: Request) -> bool:
        """The loaded (or loading) models already answer ``request``: a start changes nothing."""
        current = self._request
        if current is None or self._state not in (*BUSY, "ready"):
            return False
        if (current.model, current.language, current.device) != (
            request.model,
            request.language,
            request.device,
        ):
            return False
        if self._state in BUSY or not request.with_align or current.with_align:
            return True
        return request.language is None or request.language in self._aligners

    def _serves_locked(self, model_id: str, device: str) -> bool:
        info = self._whisper_info
        return info is not None and info["id"] == model_id and device in (info["device"], "auto")

    def _loaded_id_locked(self) -> str:
        return self._whisper_info["id"] if self._whisper_info else "a model"

    def _loaded_ids_locked(self) -> list[str]:
        ids = [self._whisper_info["id"]] if self._whisper_info else []
        return ids + [a.spec_id for a in self._aligners.values() if a.spec_id not in ids]

    def _status_locked(self) -> dict[str, Any]:
        request = self._request
        return {
            "state": self._state,
            "request": None
            if request is None
            else {"model": request.model, "language": request.language, "device": request.device},
            "whisper": self._whisper_info,
            "align": self._align_info,
            "align_error": self._align_error,
            "aligners": [{"id": a.spec_id, "language": a.language} for a in self._aligners.values()],
            "device": self._device if self._state == "ready" else None,
            "leases": self._leases,
            "loaded_at": self._loaded_at,
            "memory": self._memory,
            "error": self._error,
        }
