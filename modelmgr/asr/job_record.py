"""What a transcription job is: its options, its live state, and the record it is stored as.

One definition for every place a job lives: the embedded manager (jobs.py), the web process in
cluster mode and the Celery workers (``modelmgr.distributed``). They all write and read the same
record (``job.json``, the Redis hash), so its shape is fixed here; ``job_from_record`` reads the
records older versions wrote too (missing fields take their defaults).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from modelmgr.core.errors import JobNotFound

log = logging.getLogger(__name__)

FORMATS = ("json", "srt", "vtt", "txt")
ACTIVE = ("downloading", "loading", "transcribing", "aligning", "diarizing")
IN_FLIGHT = ("queued", *ACTIVE)
FINISHED = ("done", "error", "cancelled")
JOB_ID = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True)
class JobOptions:
    """What a client asks for; ``device`` "auto" and ``batch_size`` None are resolved when the job runs."""

    model: str
    language: str | None = None
    device: str = "auto"
    task: str = "transcribe"
    word_timestamps: bool = True
    # Silero VAD: no words in long silences (Whisper hallucinates there and stretches segments
    # across them) and faster on speech with pauses; the batched path always runs it.
    vad: bool = True
    batch_size: int | None = None
    initial_prompt: str | None = None
    temperature: float | None = None
    formats: tuple[str, ...] = FORMATS
    # who spoke when (pyannote through whisperx); the counts are hints, None lets pyannote decide
    diarize: bool = False
    num_speakers: int | None = None
    min_speakers: int | None = None
    max_speakers: int | None = None
    diarize_model: str | None = None  # None: the settings' diarize_model


@dataclass(eq=False)
class Job:
    id: str
    options: JobOptions
    filename: str
    input_path: Path
    size_bytes: int
    status: str = "queued"
    progress: float = 0.0  # percent of the current stage (transcribing: of the audio time)
    device: str | None = None  # resolved device, once known
    batch_size: int | None = None  # resolved batch size, once known
    error: dict[str, str] | None = None
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    language: str | None = None  # the language transcribed (given or detected)
    alignment: str | None = None  # what timed the words: "wav2vec2", "whisper" or "none"
    align_model: str | None = None  # the aligner's catalog id when alignment is "wav2vec2"
    warnings: list[str] = field(default_factory=list)  # what went less well than asked (still done)
    duration_s: float | None = None
    segments: int | None = None
    text: str | None = None
    # diarized jobs: [{"id": "SPEAKER_00", "name": "Alice"}, ...] in order of first appearance
    speakers: list[dict[str, str]] | None = None
    download: dict[str, Any] | None = None  # the model download's progress while downloading
    cancel: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    cancel_requested: bool = False  # a person cancelled (not a shutdown interrupting the job)
    last_publish: float = 0.0
    _callbacks: list[Callable[[Job], None]] = field(default_factory=list)
    _callbacks_lock: threading.Lock = field(default_factory=threading.Lock)  # guards _callbacks

    @property
    def folder(self) -> Path:
        return self.input_path.parent

    def result_path(self, fmt: str) -> Path:
        return self.folder / f"result.{fmt}"

    def describe(self) -> dict[str, Any]:
        """The job as clients see it (API, events, UI)."""
        finished = self.status == "done"
        return {
            "id": self.id,
            "status": self.status,
            "progress": round(self.progress, 1),
            "file": {"name": self.filename, "size_bytes": self.size_bytes},
            "options": asdict(self.options) | {"formats": list(self.options.formats)},
            "device": self.device,
            "batch_size": self.batch_size,
            "language": self.language,
            "alignment": self.alignment,
            "align_model": self.align_model,
            "warnings": list(self.warnings),
            "duration_s": self.duration_s,
            "segments": self.segments,
            "speakers": self.speakers,
            "download": self.download if self.status == "downloading" else None,
            "error": self.error,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "formats": list(self.options.formats) if finished else [],
        }

    def to_record(self) -> dict[str, Any]:
        record = self.describe()
        record["text"] = self.text
        return record

    def add_done_callback(self, callback: Callable[[Job], None]) -> None:
        """``callback(job)`` once the job has finished (at once if it already has); from any thread."""
        with self._callbacks_lock:
            if not self.done.is_set():
                self._callbacks.append(callback)
                return
        callback(self)

    def _take_callbacks(self) -> list[Callable[[Job], None]]:
        """Called once ``done`` is set: later callers of add_done_callback run theirs themselves."""
        with self._callbacks_lock:
            callbacks, self._callbacks = self._callbacks, []
        return callbacks

    def run_done_callbacks(self) -> None:
        """Once ``done`` is set: run the waiting callbacks; one that fails is logged, not raised."""
        for callback in self._take_callbacks():
            try:
                callback(self)
            except Exception:  # a waiting client that went away must not stop the worker
                log.exception("a done-callback of job %s failed", self.id)


def stored_record(job: Job) -> dict[str, Any]:
    """The record as stored (``job.json``, a distributed job's Redis hash): also names the upload."""
    return job.to_record() | {"input": job.input_path.name}


def finish_job(
    job: Job,
    status: str,
    error: dict[str, str] | None,
    save: Callable[[Job], None],
    publish: Callable[[Job], None],
) -> None:
    """End ``job`` (done, error, cancelled): saved, then done, announced, and its waiters called."""
    job.status, job.error, job.finished_at = status, error, time.time()
    job.progress = 100.0 if status == "done" else job.progress
    job.input_path.unlink(missing_ok=True)  # the upload is not needed any more; results stay
    save(job)
    job.done.set()
    publish(job)
    job.run_done_callbacks()
    log.info("transcription %s ended: %s%s", job.id, status, f" ({error['message']})" if error else "")


def not_found(job_id: str) -> JobNotFound:
    return JobNotFound(f"no transcription job {job_id!r}")


def check_job_id(job_id: str) -> str:
    """A job id is 32 hex digits: anything else (a path, say) is no job, before any lookup."""
    if not JOB_ID.match(job_id or ""):
        raise not_found(job_id)
    return job_id


def job_from_record(record: dict[str, Any], folder: Path, cls: type[Job] = Job) -> Job | None:
    """Rebuild a Job from its record (``job.json``, or a distributed worker's copy); None if malformed."""
    try:
        options = dict(record["options"])
        options["formats"] = tuple(options.get("formats") or FORMATS)
        job = cls(
            record["id"],
            JobOptions(**options),
            record["file"]["name"],
            folder / record.get("input", "input"),
            int(record["file"]["size_bytes"]),
        )
    except (ValueError, KeyError, TypeError):
        return None
    for key in ("status", "progress", "device", "batch_size", "error", "created_at", "started_at"):
        setattr(job, key, record.get(key, getattr(job, key)))
    for key in (
        "finished_at",
        "language",
        "alignment",
        "align_model",
        "duration_s",
        "segments",
        "text",
        "speakers",
    ):
        setattr(job, key, record.get(key))
    job.warnings = [str(w) for w in record.get("warnings") or ()]
    return job
