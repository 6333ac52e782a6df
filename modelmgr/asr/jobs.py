"""TranscriptionManager: a queue of transcription jobs run under a lease on the loaded models.

Knows nothing of Gradio or HTTP: the UI, the REST/OpenAI API and the CLI all
submit here (through the ``JobManager`` interface, manager.py) and read the same job records.

* **Jobs** have an id, an input file (moved into the job's own folder under
  ``settings.jobs_dir``) and concrete options. One worker thread takes them in
  order (job_queue.py), so jobs run one at a time (they share the one loaded model).
* **Stages** are published on the EventBus as ``transcription`` events: queued,
  downloading (the model, through the DownloadManager, deduplicated as always),
  loading, transcribing (percent by audio time), aligning, done, error, cancelled.
* **Leases.** The pipeline runs inside ``preload.lease(...)`` (job_runner.py): Whisper,
  aligner and the resolved device come together, and nothing unloads them mid-job.
* **Results** (JSON, SRT, VTT, TXT) are written to the job folder and kept for
  ``transcription_retention_s``; ``job.json`` is rewritten at every stage change (job_store.py),
  so finished jobs survive a restart and interrupted ones run again.

The manager itself is the glue: requests, and the stage hooks (``_set``, ``_save``, ``_publish``,
``_finish``) the runner reports to and a distributed worker (``WorkerTranscriptions``) overrides.
The names other modules import from here (``JobOptions``, ``Job``, ``FORMATS``, ...) still are.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from modelmgr.asr.job_options import TASKS, check_format, probe_audio, validate_options
from modelmgr.asr.job_queue import JobQueue
from modelmgr.asr.job_record import (
    ACTIVE,
    FINISHED,
    FORMATS,
    IN_FLIGHT,
    Job,
    JobOptions,
    check_job_id,
    finish_job,
    job_from_record,
    not_found,
)
from modelmgr.asr.job_runner import CPU_BATCH_SIZE, CUDA_BATCH_SIZE, JobRunner
from modelmgr.asr.job_store import JobStore, expired, retention_cutoff, safe_filename
from modelmgr.asr.manager import JobManager, NoWorkers, delete_job, rename_job_speakers, snapshot_of
from modelmgr.asr.preload import PreloadManager
from modelmgr.asr.results import read_transcript, result_file
from modelmgr.asr.subtitles import Transcript
from modelmgr.core.catalog import Catalog
from modelmgr.core.errors import InvalidInput
from modelmgr.core.events import EventBus
from modelmgr.core.settings import Settings
from modelmgr.models.downloads import DownloadManager

__all__ = [
    "ACTIVE",
    "CPU_BATCH_SIZE",
    "CUDA_BATCH_SIZE",
    "FINISHED",
    "FORMATS",
    "IN_FLIGHT",
    "TASKS",
    "Job",
    "JobOptions",
    "TranscriptionManager",
    "job_from_record",
    "probe_audio",
    "safe_filename",
]

log = logging.getLogger(__name__)


class TranscriptionManager(NoWorkers, JobManager):
    """The embedded JobManager: this process runs its jobs, one at a time, from its own queue."""

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
        self.store = JobStore(self.root)
        self.queue = JobQueue(run=self._run, idle=self._sweep)
        self.runner = JobRunner(self)

    @property
    def stopping(self) -> bool:
        return self.queue.stopping

    # --- lifecycle ---
    def start(self) -> None:
        """Load the jobs on disk (re-queueing interrupted ones) and start the worker. Idempotent."""
        self.queue.start(prepare=self._load_from_disk)

    def shutdown(self, timeout_s: float = 5.0) -> None:
        """Stop taking jobs; a running job is interrupted and left queued for the next start."""
        self.queue.stop(timeout_s)

    # --- requests ---
    def validate(self, options: JobOptions) -> JobOptions:
        """Check every option up front: a bad request changes nothing. Returns them normalised.

        A diarizing job whose gated models cannot be had (no token, conditions not accepted) is
        refused here, with the words that say what to do, not after its transcription. (In
        cluster mode the workers hold the token, so the web process leaves this to them.)
        """
        options = validate_options(self.catalog, options)
        if options.diarize_model is not None:
            self.downloads.check_access(options.diarize_model)
        return options

    @staticmethod
    def check_format(fmt: str) -> str:
        return check_format(fmt)

    def submit(self, upload: Path, filename: str, options: JobOptions) -> Job:
        """Queue a transcription of ``upload`` (moved into the job folder). Call off the event loop.

        Raises InvalidInput (options), InvalidAudio (not audio, empty, no samples) before
        anything is stored.
        """
        options = self.validate(options)
        probe_audio(upload, filename)
        stored = self.store.adopt(upload, filename)
        job = Job(stored.id, options, stored.filename, stored.path, stored.size_bytes)
        self._save(job)
        if not self.queue.add(job):
            self.store.remove(job.folder)
            raise InvalidInput("the server is shutting down; submit again when it is back")
        self._publish(job)
        self.start()
        self._sweep()
        return job

    def get(self, job_id: str) -> Job:
        job = self.queue.get(check_job_id(job_id))
        if job is None:
            raise not_found(job_id)
        return job

    def jobs(self, limit: int = 100) -> list[Job]:
        """Newest first."""
        return self.queue.jobs(limit)

    def snapshot(self, limit: int = 50) -> list[dict[str, Any]]:
        return snapshot_of(self, limit)

    def queue_positions(self) -> dict[str, int]:
        return self.queue.positions()

    def cancel(self, job_id: str) -> Job:
        """Cancel a queued or running job (a finished job is left as it is)."""
        job = self.get(job_id)
        if self.queue.withdraw(job):  # it was waiting: nothing runs it, so it ends now
            self._finish(job, "cancelled")
        return job

    def delete(self, job_id: str) -> str:
        """Cancel a job in flight ("cancelling") or remove a finished one and its files ("deleted")."""
        return delete_job(self, job_id, self._remove)

    def _remove(self, job: Job) -> None:
        self.queue.forget(job.id)
        self.store.remove(job.folder)
        self.bus.publish("transcription", {**job.describe(), "deleted": True})

    def result(self, job_id: str, fmt: str) -> Path:
        """The result file of a finished job in ``fmt``; rendered from the JSON if not written yet."""
        check_format(fmt)
        return result_file(self.get(job_id), fmt)

    def transcript(self, job_id: str) -> Transcript:
        return read_transcript(self.get(job_id))

    def rename_speakers(self, job_id: str, names: dict[str, str]) -> Job:
        return rename_job_speakers(self, job_id, names, self._save_and_publish)

    def _save_and_publish(self, job: Job) -> None:
        self._save(job)
        self._publish(job)

    # --- running ---
    def run_job(self, job: Job) -> None:
        """Run one job to its end in this thread (download, lease, pipeline, results, events).

        The in-process worker calls it for each queued job; a distributed worker calls it for
        the job a Celery task names. It never raises: the outcome is the job's status.
        """
        self._run(job)

    def _run(self, job: Job) -> None:
        self.runner.run(job)

    # --- state (the runner's hooks; a distributed worker also writes Redis) ---
    def _set(self, job: Job, status: str, progress: float | None = None) -> None:
        if job.status == status and progress is None:
            return
        job.status = status
        if progress is not None:
            job.progress = progress
        self._save(job)
        self._publish(job)

    def _finish(self, job: Job, status: str, error: dict[str, str] | None = None) -> None:
        finish_job(job, status, error, self._save, self._publish)

    def _publish(self, job: Job, throttle: bool = False) -> None:
        now = time.monotonic()
        if throttle and now - job.last_publish < self.settings.progress_interval_s:
            return
        job.last_publish = now
        data = job.describe()
        if job.status == "queued":
            data["queue_position"] = self.queue_positions().get(job.id)
        self.bus.publish("transcription", data)

    def _save(self, job: Job) -> None:
        """Persist the job's record at every stage change (a distributed worker also writes it to Redis)."""
        self.store.save(job)

    # --- disk ---
    def _load_from_disk(self) -> None:
        found = self.store.load()
        for job in found:
            if job.status in IN_FLIGHT:
                if not job.input_path.exists():
                    job.status, job.error = "error", {"code": "interrupted", "message": "the upload was lost"}
                else:
                    job.status, job.progress = "queued", 0.0
            if job.status in FINISHED:
                job.done.set()
        for job in self.queue.adopt(found):
            log.info("re-queued interrupted transcription %s (%s)", job.id, job.filename)
        self._sweep()

    def _sweep(self) -> None:
        """Remove finished jobs (and their results) older than the retention period."""
        cutoff = retention_cutoff(self.settings)
        for job in self.queue.expire(lambda j: expired(j.status, j.finished_at, cutoff)):
            self.store.remove(job.folder)
            log.info("removed expired transcription %s", job.id)
