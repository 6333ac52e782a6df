"""The preload's shared record: what was asked for, what is loaded, and how many jobs hold it.

PreloadManager, its load worker (``loading``), its lease desk (``leases``) and its aligner
loader (``aligners``) all read and write these fields. They live in one record, guarded by one
lock, ``PreloadManager._lock``, so that one status snapshot taken under that lock is consistent
(the state, the loaded models and the lease count as of one moment); each class handed this
record is handed that lock too. Nothing here takes the lock: the ``*_locked`` queries are for
callers that hold it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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


@dataclass
class LoadedDiarizer:
    spec_id: str  # the pipeline
    part_ids: tuple[str, ...]  # the models it runs (loaded inside it: deleting them is refused too)
    model: Any


@dataclass(eq=False)
class PreloadState:
    """Every field is guarded by ``PreloadManager._lock`` (read and written only under it)."""

    state: str = "idle"  # idle, downloading, loading (both BUSY), ready or error
    request: Request | None = None
    error: str | None = None
    device: str | None = None
    whisper: Any = None
    whisper_info: dict[str, Any] | None = None
    aligners: dict[str, LoadedAligner] = field(default_factory=dict)  # language -> aligner on self.device
    align_info: dict[str, Any] | None = None  # the aligner the preload request asked for
    align_error: str | None = None  # why that aligner could not be had (Whisper times words)
    diarizers: dict[str, LoadedDiarizer] = field(default_factory=dict)  # pipeline id -> loaded on self.device
    loaded_at: float | None = None
    memory: dict[str, Any] = field(default_factory=dict)
    leases: int = 0  # jobs using the loaded models right now
    loads: int = 0  # whisper loads ever done; tests use it to prove idempotence

    def satisfied_locked(self, request: Request) -> bool:
        """The loaded (or loading) models already answer ``request``: a start changes nothing."""
        current = self.request
        if current is None or self.state not in (*BUSY, "ready"):
            return False
        if (current.model, current.language, current.device) != (
            request.model,
            request.language,
            request.device,
        ):
            return False
        if self.state in BUSY or not request.with_align or current.with_align:
            return True
        return request.language is None or request.language in self.aligners

    def serves_locked(self, model_id: str, device: str) -> bool:
        info = self.whisper_info
        return info is not None and info["id"] == model_id and device in (info["device"], "auto")

    def loaded_id_locked(self) -> str:
        return self.whisper_info["id"] if self.whisper_info else "a model"

    def loaded_ids_locked(self) -> list[str]:
        ids = [self.whisper_info["id"]] if self.whisper_info else []
        ids += [a.spec_id for a in self.aligners.values() if a.spec_id not in ids]
        for diarizer in self.diarizers.values():
            ids += [i for i in (diarizer.spec_id, *diarizer.part_ids) if i not in ids]
        return ids

    def status_locked(self) -> dict[str, Any]:
        request = self.request
        return {
            "state": self.state,
            "request": None
            if request is None
            else {"model": request.model, "language": request.language, "device": request.device},
            "whisper": self.whisper_info,
            "align": self.align_info,
            "align_error": self.align_error,
            "aligners": [{"id": a.spec_id, "language": a.language} for a in self.aligners.values()],
            "diarizers": [{"id": d.spec_id, "models": list(d.part_ids)} for d in self.diarizers.values()],
            "device": self.device if self.state == "ready" else None,
            "leases": self.leases,
            "loaded_at": self.loaded_at,
            "memory": self.memory,
            "error": self.error,
        }
