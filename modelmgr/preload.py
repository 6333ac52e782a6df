"""PreloadManager: keep one Whisper model and its alignment model loaded.

``start`` is idempotent: the same request while it is downloading, loading or
ready returns the current status and loads nothing twice. Downloads go through
the DownloadManager, so a preload of a model that is downloading joins that
download instead of starting another transfer. Loading happens in a worker
thread; the request returns at once.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from . import loaders
from .catalog import Catalog, ModelSpec
from .downloads import DownloadManager
from .errors import DownloadFailed, InvalidInput, ModelBusy, ModelMgrError
from .events import EventBus
from .nltk_data import ensure_punkt
from .settings import Settings
from .store import Store

log = logging.getLogger(__name__)
BUSY = ("downloading", "loading")


@dataclass(frozen=True)
class Request:
    model: str
    language: str | None
    device: str


class PreloadManager:
    def __init__(
        self, settings: Settings, catalog: Catalog, store: Store, downloads: DownloadManager, bus: EventBus
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.store = store
        self.downloads = downloads
        self.bus = bus
        # _lock guards every field below; never held while loading or waiting.
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # notified on every state change
        self._state = "idle"
        self._request: Request | None = None
        self._error: str | None = None
        self._device: str | None = None
        self._whisper: Any = None
        self._whisper_info: dict[str, Any] | None = None
        self._aligners: dict[str, tuple[Any, dict]] = {}  # language -> (model, metadata)
        self._align_info: dict[str, Any] | None = None
        self._loaded_at: float | None = None
        self._memory: dict[str, Any] = {}
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

    def start(self, model: str, language: str | None = None, device: str = "auto") -> dict[str, Any]:
        request, spec = self.validate(model, language, device)
        with self._lock:
            if self._request == request and self._state in (*BUSY, "ready"):
                return self._status_locked()
            if self._state in BUSY:
                raise ModelBusy(
                    f"a preload of {self._request.model if self._request else '?'} is in progress"
                )
            self._request = request
            self._state, self._error = "downloading", None
            self._changed.notify_all()
            thread = threading.Thread(target=self._run, args=(request, spec), name="preload", daemon=True)
            status = self._status_locked()
        self.bus.publish("preload", status)
        thread.start()
        return status

    def ensure_ready(self, model: str, language: str | None, device: str, timeout_s: float = 3600) -> None:
        """Block (in a worker thread, never on the event loop) until the requested models are loaded."""
        request, _ = self.validate(model, language, device)
        self.start(model, language, device)
        with self._changed:
            settled = self._changed.wait_for(
                lambda: self._request != request or self._state in ("ready", "error"), timeout_s
            )
            state, error, current = self._state, self._error, self._request
        if not settled:
            raise DownloadFailed("timed out waiting for the models to load")
        if current != request:
            raise ModelBusy("another preload replaced this one; try again")
        if state == "error":
            raise DownloadFailed(error or "preload failed")

    def whisper(self) -> Any:
        with self._lock:
            return self._whisper

    def aligner(self, language: str) -> tuple[Any, dict] | None:
        """The loaded aligner for ``language``, loading it (downloading if needed) on demand."""
        with self._lock:
            found = self._aligners.get(language)
            device = self._device or "cpu"
        if found:
            return found
        spec = self.catalog.align_for(language)
        if spec is None:
            return None
        self._wait_downloaded(spec)
        path = self.store.model_path(spec)
        assert path is not None
        loaded = loaders.load_aligner(spec, language, path, device, ensure_punkt(self.settings))
        with self._lock:
            self._aligners[language] = loaded
        return loaded

    def clear_cache(self) -> dict[str, Any]:
        with self._lock:
            if self._state in BUSY:
                raise ModelBusy("a preload is in progress; wait for it to finish")
            unloaded = [info["id"] for info in (self._whisper_info, self._align_info) if info]
            self._whisper = None
            self._aligners.clear()
            self._whisper_info = self._align_info = None
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
        with self._lock:
            return any(info and info["id"] == model_id for info in (self._whisper_info, self._align_info))

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
            self._wait_downloaded(spec, [request.language] if request.language else None)
            align_spec = self.catalog.align_for(request.language) if request.language else None
            if align_spec is not None:
                self._wait_downloaded(align_spec)
            self._set(state="loading")
            device, compute_type = loaders.resolve_device(request.device)
            whisper_path = self.store.model_path(spec)
            assert whisper_path is not None
            with self._lock:
                reuse = self._whisper_info == {
                    "id": spec.id,
                    "device": device,
                    "compute_type": compute_type,
                }
            whisper = self.whisper() if reuse else loaders.load_whisper(whisper_path, device, compute_type)
            aligners: dict[str, tuple[Any, dict]] = {}
            if align_spec is not None and request.language:
                align_path = self.store.model_path(align_spec)
                assert align_path is not None
                nltk_dir = ensure_punkt(self.settings)
                aligners[request.language] = loaders.load_aligner(
                    align_spec, request.language, align_path, device, nltk_dir
                )
            memory = loaders.memory_report()
            with self._lock:
                if not reuse:
                    self.loads += 1
                self._whisper, self._device = whisper, device
                self._whisper_info = {"id": spec.id, "device": device, "compute_type": compute_type}
                self._aligners = aligners
                self._align_info = (
                    {"id": align_spec.id, "language": request.language} if align_spec is not None else None
                )
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

    def _status_locked(self) -> dict[str, Any]:
        request = self._request
        return {
            "state": self._state,
            "request": None
            if request is None
            else {"model": request.model, "language": request.language, "device": request.device},
            "whisper": self._whisper_info,
            "align": self._align_info,
            "device": self._device if self._state == "ready" else None,
            "loaded_at": self._loaded_at,
            "memory": self._memory,
            "error": self._error,
        }
