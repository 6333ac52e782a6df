"""TranscriptionManager: a queue of transcription jobs run under a lease on the loaded models.

Knows nothing of Gradio or HTTP: the UI, the REST/OpenAI API and the CLI all
submit here and read the same job records.

* **Jobs** have an id, an input file (moved into the job's own folder under
  ``settings.jobs_dir``) and concrete options. One worker thread takes them in
  order, so jobs run one at a time (they share the one loaded model).
* **Stages** are published on the EventBus as ``transcription`` events: queued,
  downloading (the model, through the DownloadManager, deduplicated as always),
  loading, transcribing (percent by audio time), aligning, done, error, cancelled.
* **Leases.** The pipeline runs inside ``preload.lease(...)``: Whisper, aligner and
  the resolved device come together, and nothing unloads them mid-job.
* **Results** (JSON, SRT, VTT, TXT) are written to the job folder and kept for
  ``transcription_retention_s``; ``job.json`` is rewritten at every stage change, so
  finished jobs survive a restart and interrupted ones run again.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from modelmgr.asr import loaders
from modelmgr.asr.preload import PreloadManager
from modelmgr.asr.subtitles import Transcript, from_json, write_all
from modelmgr.core.catalog import Catalog, ModelSpec
from modelmgr.core.errors import (
    AlignUnavailable,
    Cancelled,
    DownloadFailed,
    InvalidAudio,
    InvalidInput,
    JobNotFound,
    ModelMgrError,
    ResultNotReady,
    UnsupportedFormat,
)
from modelmgr.core.events import EventBus
from modelmgr.core.settings import Settings
from modelmgr.models.downloads import DownloadManager

log = logging.getLogger(__name__)

FORMATS = ("json", "srt", "vtt", "txt")
TASKS = ("transcribe", "translate")
ACTIVE = ("downloading", "loading", "transcribing", "aligning")
IN_FLIGHT = ("queued", *ACTIVE)
FINISHED = ("done", "error", "cancelled")
CUDA_BATCH_SIZE = 16  # WhisperX's default on GPUs (not measured here: no GPU was lent)
# bench/transcribe.py with the real tiny.en on 6 min of espeak-ng speech, 2 CPUs (README,
# "Transcription speed and accuracy"): batched 8 with Silero VAD had the lowest word error
# rate (0.071, whisperx 0.080, sequential 0.091) at 0.58x whisperx's time; sequential
# decoding (the old default, chosen on random weights) was 1.2x whisperx's time.
CPU_BATCH_SIZE = 8
_JOB_ID = re.compile(r"^[0-9a-f]{32}$")
_SAFE_NAME = re.compile(r"[^\w.\- ]+")


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


class TranscriptionManager:
    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        downloads: DownloadManager,
        preload: PreloadManager,
        bus: EventBus,
        root: Path | None = None,
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.downloads = downloads
        self.preload = preload
        self.bus = bus
        self.root = root or settings.jobs_dir  # the CLI uses a private folder beside a running server
        # _lock guards _jobs, _queue, _running and _stopping; held for bookkeeping only
        # (no I/O, no publishing, no waiting except Condition.wait, which releases it).
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._jobs: dict[str, Job] = {}
        self._queue: deque[Job] = deque()
        self._running: Job | None = None
        self._stopping = False
        self._worker: threading.Thread | None = None
        self._loaded = False

    # --- lifecycle ---
    def start(self) -> None:
        """Load the jobs on disk (re-queueing interrupted ones) and start the worker. Idempotent."""
        with self._lock:
            if self._worker is not None or self._stopping:
                return
            self._worker = threading.Thread(target=self._work, name="transcriptions", daemon=True)
        self._load_from_disk()
        self._worker.start()

    def shutdown(self, timeout_s: float = 5.0) -> None:
        """Stop taking jobs; a running job is interrupted and left queued for the next start."""
        with self._lock:
            self._stopping = True
            running = self._running
            worker = self._worker
            self._wake.notify_all()
        if running is not None:
            running.cancel.set()
        if worker is not None and worker is not threading.current_thread():
            worker.join(timeout_s)

    # --- requests ---
    def validate(self, options: JobOptions) -> JobOptions:
        """Check every option up front: a bad request changes nothing. Returns them normalised."""
        spec = self.catalog.get(options.model)
        if spec.kind != "whisper":
            raise InvalidInput(f"{options.model} is an alignment model; transcribe with a Whisper model")
        language = options.language or None
        if language is not None:
            self.catalog.check_model_language(spec, language)
        elif options.task == "transcribe":
            language = spec.language  # "auto" with an English-only model is English
        loaders.check_device(options.device)
        if options.task not in TASKS:
            raise InvalidInput(f"task must be one of {', '.join(TASKS)}, not {options.task!r}")
        if options.task == "translate" and spec.language:
            raise InvalidInput(f"{spec.id} is an English-only model: it cannot translate")
        formats = tuple(dict.fromkeys(f.lower() for f in options.formats)) or FORMATS
        for fmt in formats:
            self.check_format(fmt)
        if options.batch_size is not None and not 1 <= options.batch_size <= 256:
            raise InvalidInput("batch_size must be between 1 and 256")
        if options.temperature is not None and not 0.0 <= options.temperature <= 1.0:
            raise InvalidInput("temperature must be between 0 and 1")
        if options.initial_prompt is not None and len(options.initial_prompt) > 4000:
            raise InvalidInput("initial_prompt is limited to 4000 characters")
        return replace(options, model=spec.id, language=language, formats=formats)

    @staticmethod
    def check_format(fmt: str) -> str:
        if fmt not in FORMATS:
            raise UnsupportedFormat(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
        return fmt

    def submit(self, upload: Path, filename: str, options: JobOptions) -> Job:
        """Queue a transcription of ``upload`` (moved into the job folder). Call off the event loop.

        Raises InvalidInput (options), InvalidAudio (not audio, empty, no samples) before
        anything is stored.
        """
        options = self.validate(options)
        size = upload.stat().st_size if upload.exists() else 0
        probe_audio(upload, filename)
        job_id = uuid.uuid4().hex
        folder = self.root / job_id
        folder.mkdir(parents=True, exist_ok=True)
        name = safe_filename(filename)
        target = folder / ("input" + (Path(name).suffix.lower()[:12] or ".audio"))
        shutil.move(str(upload), target)
        job = Job(job_id, options, name, target, size)
        self._save(job)
        with self._lock:
            if self._stopping:
                shutil.rmtree(folder, ignore_errors=True)
                raise InvalidInput("the server is shutting down; submit again when it is back")
            self._jobs[job.id] = job
            self._queue.append(job)
            self._wake.notify_all()
        self._publish(job)
        self.start()
        self._sweep()
        return job

    def get(self, job_id: str) -> Job:
        if not _JOB_ID.match(job_id or ""):
            raise JobNotFound(f"no transcription job {job_id!r}")
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise JobNotFound(f"no transcription job {job_id!r}")
        return job

    def jobs(self, limit: int = 100) -> list[Job]:
        """Newest first."""
        with self._lock:
            jobs = sorted(self._jobs.values(), key=lambda j: j.created_at, reverse=True)
        return jobs[:limit]

    def snapshot(self, limit: int = 50) -> list[dict[str, Any]]:
        positions = self.queue_positions()
        return [job.describe() | {"queue_position": positions.get(job.id)} for job in self.jobs(limit)]

    def queue_positions(self) -> dict[str, int]:
        with self._lock:
            return {job.id: i + 1 for i, job in enumerate(self._queue)}

    def cancel(self, job_id: str) -> Job:
        """Cancel a queued or running job (a finished job is left as it is)."""
        job = self.get(job_id)
        with self._lock:
            if job.status in FINISHED:
                return job
            job.cancel_requested = True
            job.cancel.set()
            was_queued = job in self._queue
            if was_queued:
                self._queue.remove(job)
        if was_queued:
            self._finish(job, "cancelled")
        return job

    def delete(self, job_id: str) -> str:
        """Cancel a job in flight ("cancelling") or remove a finished one and its files ("deleted")."""
        job = self.get(job_id)
        if job.status not in FINISHED:
            self.cancel(job_id)
            if job.status not in FINISHED:
                return "cancelling"
        with self._lock:
            self._jobs.pop(job.id, None)
        shutil.rmtree(job.folder, ignore_errors=True)
        self.bus.publish("transcription", {**job.describe(), "deleted": True})
        return "deleted"

    def result(self, job_id: str, fmt: str) -> Path:
        """The result file of a finished job in ``fmt``; rendered from the JSON if not written yet."""
        self.check_format(fmt)
        job = self.get(job_id)
        if job.status != "done":
            detail = f": {job.error['message']}" if job.error else ""
            raise ResultNotReady(f"job {job.id} is {job.status}, it has no result{detail}")
        path = job.result_path(fmt)
        if not path.exists():
            transcript = self.transcript(job_id)
            written = write_all(transcript, job.folder, "result")
            path = written[fmt]
        return path

    def transcript(self, job_id: str) -> Transcript:
        job = self.get(job_id)
        if job.status != "done":
            raise ResultNotReady(f"job {job.id} is {job.status}, it has no result")
        return from_json(job.result_path("json").read_text(encoding="utf-8"))

    # --- worker ---
    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._stopping:
                    if not self._wake.wait(timeout=60.0):
                        break  # an idle minute: sweep expired results
                if self._stopping:
                    return
                job = self._queue.popleft() if self._queue else None
                self._running = job
            if job is None:
                self._sweep()
                continue
            try:
                self._run(job)
            finally:
                with self._lock:
                    self._running = None

    def run_job(self, job: Job) -> None:
        """Run one job to its end in this thread (download, lease, pipeline, results, events).

        The in-process worker calls it for each queued job; a distributed worker calls it for
        the job a Celery task names. It never raises: the outcome is the job's status.
        """
        self._run(job)

    def _run(self, job: Job) -> None:
        job.started_at = time.time()
        try:
            spec = self.catalog.get(job.options.model)
            self._download(job, spec)
            self._set(job, "loading", progress=0.0)
            opts = job.options
            with self.preload.lease(
                spec.id,
                opts.language,
                opts.device,
                cancel=job.cancel,
                on_state=lambda state: self._set(job, "downloading" if state == "downloading" else "loading"),
            ) as lease:
                job.device = lease.device
                job.batch_size = (
                    opts.batch_size
                    or self.settings.batch_size
                    or (CUDA_BATCH_SIZE if lease.device == "cuda" else CPU_BATCH_SIZE)
                )
                transcript = self._pipeline(job, lease)
            job.language, job.duration_s = transcript.language, transcript.duration
            job.alignment = transcript.alignment
            if transcript.alignment != "wav2vec2":
                job.align_model = None
            job.segments = len(transcript.segments)
            job.text = " ".join(s.text for s in transcript.segments)
            write_all(transcript, job.folder, "result")
            self._finish(job, "done")
        except Cancelled:
            if self._stopping and not job.cancel_requested:
                job.status, job.progress, job.started_at = "queued", 0.0, None  # runs again on the next start
                self._save(job)
                return
            self._finish(job, "cancelled")
        except ModelMgrError as exc:
            self._finish(job, "error", {"code": exc.code, "message": exc.message})
        except Exception as exc:  # a decoder or model failing on odd input: say it, keep the worker alive
            log.exception("transcription job %s failed", job.id)
            self._finish(
                job, "error", {"code": "transcription_failed", "message": f"transcription failed: {exc}"}
            )

    def _pipeline(self, job: Job, lease: Any) -> Transcript:
        from modelmgr.asr.pipeline import AudioDecodeError, Options, run_pipeline

        opts = job.options
        options = Options(
            language=opts.language,
            task=opts.task,
            word_timestamps=opts.word_timestamps,
            vad=opts.vad,
            batch_size=job.batch_size or 1,
            initial_prompt=opts.initial_prompt,
            temperature=opts.temperature,
        )

        def on_stage(name: str) -> None:
            if name in ("transcribing", "aligning"):
                self._set(job, name, progress=0.0)

        def on_progress(percent: float) -> None:
            job.progress = percent
            self._publish(job, throttle=True)

        def on_warning(message: str) -> None:
            job.warnings.append(message)
            self._save(job)
            self.bus.publish("transcription", {**job.describe(), "warning": message})

        def on_segment(segment: dict) -> None:
            self.bus.publish(
                "transcription",
                {**job.describe(), "segment": {k: segment[k] for k in ("start", "end", "text")}},
            )

        try:
            return run_pipeline(
                job.input_path,
                language=opts.language,
                device=lease.device,
                get_whisper=lambda: lease.whisper,
                get_aligner=lambda language: self._aligner(job, lease, language),
                on_stage=on_stage,
                options=options,
                on_progress=on_progress,
                on_segment=on_segment,
                on_warning=on_warning,
                cancel=job.cancel,
            )
        except AudioDecodeError as exc:
            raise InvalidAudio(str(exc)) from exc

    def _aligner(self, job: Job, lease: Any, language: str) -> tuple[Any, dict] | None:
        """The first aligner for ``language`` that can be had, downloading it if needed.

        None: whisperx has no aligner for the language. AlignUnavailable: it has, but none
        could be downloaded or loaded (e.g. download.pytorch.org unreachable behind a Hub
        mirror, offline): the pipeline then times the words with Whisper and warns.
        """
        candidates = self.catalog.align_candidates(language)
        if not candidates:
            return None
        reasons = []
        for spec in self.preload.prefer_present(candidates):
            try:
                self._download(job, spec)
                self._set(job, "loading")
                found = lease.aligner(spec, language)
            except Cancelled:
                raise
            except ModelMgrError as exc:
                reasons.append(exc.message)
                continue
            except Exception as exc:  # odd files: the job goes on with Whisper's word times
                log.warning("aligner %s could not be loaded", spec.id, exc_info=True)
                reasons.append(f"{spec.id} could not be loaded: {exc}")
                continue
            job.align_model = spec.id
            return found
        raise AlignUnavailable(
            f"no alignment model for {language!r} could be had ({'; '.join(reasons)}); "
            "word times come from Whisper instead"
        )

    def _download(self, job: Job, spec: ModelSpec) -> None:
        """Fetch ``spec`` (alone) through the DownloadManager, showing its progress on the job."""
        result = self.downloads.start(spec.id, with_align=False)
        if result.job is None:
            return
        download = result.job
        job.download = {"model": spec.id, **download.progress()}
        self._set(job, "downloading", progress=job.download["percent"])
        while not download.done.wait(0.25):
            if job.cancel.is_set():
                raise Cancelled("cancelled")  # the download goes on: others may be waiting for it
            job.download = {"model": spec.id, **download.progress()}
            job.progress = job.download["percent"]
            self._publish(job, throttle=True)
        if download.status != "downloaded":
            raise DownloadFailed(f"{spec.id} could not be downloaded: {download.error or download.status}")

    # --- state ---
    def _set(self, job: Job, status: str, progress: float | None = None) -> None:
        if job.status == status and progress is None:
            return
        job.status = status
        if progress is not None:
            job.progress = progress
        self._save(job)
        self._publish(job)

    def _finish(self, job: Job, status: str, error: dict[str, str] | None = None) -> None:
        job.status, job.error, job.finished_at = status, error, time.time()
        job.progress = 100.0 if status == "done" else job.progress
        job.input_path.unlink(missing_ok=True)  # the upload is not needed any more; results stay
        self._save(job)
        job.done.set()
        self._publish(job)
        for callback in job._take_callbacks():
            try:
                callback(job)
            except Exception:  # a waiting client that went away must not stop the worker
                log.exception("a done-callback of job %s failed", job.id)
        log.info("transcription %s ended: %s%s", job.id, status, f" ({error['message']})" if error else "")

    def _publish(self, job: Job, throttle: bool = False) -> None:
        now = time.monotonic()
        if throttle and now - job.last_publish < self.settings.progress_interval_s:
            return
        job.last_publish = now
        data = job.describe()
        if job.status == "queued":
            data["queue_position"] = self.queue_positions().get(job.id)
        self.bus.publish("transcription", data)

    # --- disk ---
    def _save(self, job: Job) -> None:
        """Persist the job's record at every stage change (a distributed worker also writes it to Redis)."""
        try:
            job.folder.mkdir(parents=True, exist_ok=True)
            tmp = job.folder / "job.json.tmp"
            tmp.write_text(json.dumps(job.to_record() | {"input": job.input_path.name}), encoding="utf-8")
            os.replace(tmp, job.folder / "job.json")
        except OSError as exc:  # a full disk must not kill the worker; the job still finishes in memory
            log.warning("could not save job %s: %s", job.id, exc)

    def _load_from_disk(self) -> None:
        if not self.root.is_dir():
            return
        found = [
            job for folder in sorted(self.root.iterdir()) if (job := _job_from_folder(folder)) is not None
        ]
        requeue = []
        for job in found:
            if job.status in IN_FLIGHT:
                if not job.input_path.exists():
                    job.status, job.error = "error", {"code": "interrupted", "message": "the upload was lost"}
                else:
                    job.status, job.progress = "queued", 0.0
            if job.status in FINISHED:
                job.done.set()
        with self._lock:
            for job in sorted(found, key=lambda j: j.created_at):
                if job.id in self._jobs:  # submitted in this process already: that record is live
                    continue
                self._jobs[job.id] = job
                if job.status == "queued":
                    self._queue.append(job)
                    requeue.append(job)
            self._wake.notify_all()
        for job in requeue:
            log.info("re-queued interrupted transcription %s (%s)", job.id, job.filename)
        self._sweep()

    def _sweep(self) -> None:
        """Remove finished jobs (and their results) older than the retention period."""
        cutoff = time.time() - self.settings.transcription_retention_s
        with self._lock:
            expired = [
                j for j in self._jobs.values() if j.status in FINISHED and (j.finished_at or 0) < cutoff
            ]
            for job in expired:
                del self._jobs[job.id]
        for job in expired:
            shutil.rmtree(job.folder, ignore_errors=True)
            log.info("removed expired transcription %s", job.id)


def safe_filename(name: str) -> str:
    """A display/download name from an uploaded file name: no folders, no odd characters."""
    base = Path(name.replace("\\", "/")).name.strip() or "audio"
    cleaned = _SAFE_NAME.sub("_", base)[:120].strip(" .") or "audio"
    return cleaned


def probe_audio(path: Path, filename: str) -> None:
    """Fail fast (InvalidAudio) for an empty file, a non-audio file or an audio stream with no samples.

    Decodes only up to the first frame with samples: cheap even for long files.
    """
    if not path.exists() or path.stat().st_size == 0:
        raise InvalidAudio(f"{filename!r} is empty")
    import av

    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise InvalidAudio(f"{filename!r} has no audio stream")
            for frame in container.decode(audio=0):
                if frame.samples > 0:
                    return
    except InvalidAudio:
        raise
    except Exception as exc:  # PyAV raises a zoo of error types (av.error.*, OSError, ValueError)
        raise InvalidAudio(
            f"{filename!r} is not an audio or video file this server can read ({exc})"
        ) from exc
    raise InvalidAudio(f"{filename!r} contains no audio (zero length)")


def _job_from_folder(folder: Path) -> Job | None:
    try:
        record = json.loads((folder / "job.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return job_from_record(record, folder)


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
    for key in ("finished_at", "language", "alignment", "align_model", "duration_s", "segments", "text"):
        setattr(job, key, record.get(key))
    job.warnings = [str(w) for w in record.get("warnings") or ()]
    return job
