"""RemoteTranscriptionManager: the JobManager interface, with the jobs run by Celery workers.

The web process (UI, jobs API, /v1) talks to this exactly as it talks to the embedded manager:
``submit`` stores the upload in the shared data folder, writes the job's record to Redis and sends
a Celery task; ``get``/``jobs``/``snapshot`` read the records from Redis, so every web replica sees
every job; ``cancel`` sets the job's cancel flag, which the worker running it watches. Checking a
request, the job folders and rendering results are the embedded manager's code (``modelmgr.asr``).

Jobs this process hands out and someone waits on (``/v1``, the CLI) are kept "live" (LiveJobs):
the relay (relay.py) updates them from the workers' events before publishing those on the local
EventBus, and fires their done-callbacks. A reconcile loop re-reads them from Redis, so a lost
pub/sub message (Redis restarted) does not leave a waiter hanging, and re-queues jobs a dead
worker stranded (Rescue). What the web process asks of the workers themselves is WorkerControl.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelmgr.asr.job_options import check_format, probe_audio, validate_options
from modelmgr.asr.job_record import (
    FINISHED,
    Job,
    JobOptions,
    check_job_id,
    finish_job,
    job_from_record,
    not_found,
    stored_record,
)
from modelmgr.asr.job_store import JobStore, expired, retention_cutoff
from modelmgr.asr.manager import JobManager, delete_job, rename_job_speakers, snapshot_of
from modelmgr.asr.preload import PreloadManager
from modelmgr.asr.results import read_transcript, result_file
from modelmgr.asr.subtitles import Transcript
from modelmgr.core.catalog import Catalog
from modelmgr.core.errors import QueueUnavailable, WorkerNotFound
from modelmgr.core.events import EventBus
from modelmgr.core.settings import Settings
from modelmgr.distributed.celery_app import (
    DEFAULT_QUEUE,
    DOWNLOAD_TASK,
    PRELOAD_TASK,
    TASK,
    make_celery,
    model_queue,
    worker_queue,
)
from modelmgr.distributed.state import SharedState
from modelmgr.models.downloads import DownloadManager

log = logging.getLogger(__name__)
ORIGIN_WEB = "web"


@dataclass(eq=False)
class RemoteJob(Job):
    """A job with where and how often it ran: the record workers and web processes share."""

    attempt: int = 0  # workers that started it (2 or more: it was retried after a worker was lost)
    worker: str | None = None  # the worker running it now / that ran it
    retries: list[dict[str, Any]] = field(default_factory=list)  # {"worker", "attempt", "at"} per retry
    queue: str | None = None

    def describe(self) -> dict[str, Any]:
        return super().describe() | {
            "attempt": self.attempt,
            "worker": self.worker,
            "retries": list(self.retries),
            "queue": self.queue,
        }

    def update(self, data: dict[str, Any]) -> None:
        """Take the fields of a record or an event about this job."""
        for key in ("status", "progress", "device", "batch_size", "error", "started_at", "finished_at"):
            if key in data:
                setattr(self, key, data[key])
        for key in ("language", "duration_s", "segments", "speakers", "download", "worker", "queue"):
            if key in data:
                setattr(self, key, data[key])
        if data.get("text") is not None:
            self.text = data["text"]
        self.attempt = max(self.attempt, int(data.get("attempt") or 0))
        if "retries" in data:
            self.retries = list(data["retries"])


def remote_job(record: dict[str, Any], root: Path) -> RemoteJob | None:
    job = job_from_record(record, root / record.get("id", "?"), cls=RemoteJob)
    if isinstance(job, RemoteJob):
        job.update(record)
        if job.status in FINISHED:
            job.done.set()
    return job  # type: ignore[return-value]


class LiveJobs:
    """The jobs of this process that someone may be waiting on, until they finish."""

    def __init__(self) -> None:
        # _lock guards _jobs (request threads add and read them, the relay thread updates them).
        self._lock = threading.Lock()
        self._jobs: dict[str, RemoteJob] = {}

    def add(self, job: RemoteJob) -> None:
        with self._lock:
            self._jobs[job.id] = job

    def discard(self, job_id: str) -> None:
        with self._lock:
            self._jobs.pop(job_id, None)

    def get(self, job_id: str) -> RemoteJob | None:
        with self._lock:
            return self._jobs.get(job_id)

    def on_event(self, name: str, data: dict[str, Any]) -> None:
        """A job event from Redis, before it goes on the local bus: update the live job it names."""
        if name != "transcription":
            return
        job = self.get(str(data.get("id")))
        if job is not None:
            self.apply(job, data)

    def apply(self, job: RemoteJob, data: dict[str, Any]) -> None:
        """Take a record or event into ``job``; once it has finished, forget it and call its waiters."""
        if job.done.is_set():  # finished here already (a cancel of a queued job): only forget it
            self.discard(job.id)
            return
        job.update(data)
        if job.status in FINISHED:
            self.discard(job.id)
            job.done.set()
            job.run_done_callbacks()

    def reconcile(self, state: SharedState) -> None:
        """Re-read the live jobs from Redis (a pub/sub message lost while Redis was away)."""
        with self._lock:
            live = list(self._jobs.values())
        if not live:
            return
        records = {r["id"]: r for r in state.load_many([j.id for j in live])}
        for job in live:
            record = records.get(job.id)
            if record is None:  # deleted (on another replica): nobody will finish it here
                self.discard(job.id)
            elif record["status"] in FINISHED:
                self.apply(job, record)


class WorkerControl:
    """What the web process knows about the workers, and asks of them through their own queues."""

    def __init__(self, catalog: Catalog, state: SharedState, celery: Any) -> None:
        self.catalog, self.state, self.celery = catalog, state, celery

    def workers(self) -> list[dict[str, Any]]:
        return self.state.workers()

    def models_on_workers(self) -> set[str]:
        """Models some connected worker has on disk (what ``/v1/models`` lists in distributed mode)."""
        return {m for w in self.state.workers() for m in w.get("models_on_disk") or []}

    def download_on_workers(self, model: str, languages: list[str] | None) -> list[str]:
        """Ask every live worker to download ``model`` (and its aligners) into its own cache."""
        spec = self.catalog.get(model)
        for language in languages or []:
            self.catalog.check_model_language(spec, language)
        names = [w["name"] for w in self.state.workers()]
        for name in names:
            self.send(DOWNLOAD_TASK, [spec.id, languages], worker_queue(name))
        return names

    def preload_on_worker(self, name: str, model: str, language: str | None, device: str) -> None:
        spec = self.catalog.get(model)
        if language:
            self.catalog.check_model_language(spec, language)
        if name not in {w["name"] for w in self.state.workers()}:
            raise WorkerNotFound(f"no worker named {name!r} is connected")
        self.send(PRELOAD_TASK, [spec.id, language, device], worker_queue(name))

    def send(self, task: str, args: list[Any], queue: str) -> None:
        try:
            self.celery.send_task(task, args=args, queue=queue)
        except Exception as exc:  # kombu/redis errors while publishing
            raise QueueUnavailable(f"the request could not be queued: {exc}") from exc

    def route(self, model_id: str) -> str:
        """``model.<id>`` when an idle worker has the model loaded; else ``default`` (any worker)."""
        try:
            workers = self.state.workers()
        except QueueUnavailable:
            return DEFAULT_QUEUE
        queue = model_queue(model_id)
        for info in workers:
            idle = info.get("current_job") is None
            if idle and model_id in (info.get("loaded") or []) and queue in (info.get("queues") or []):
                return queue
        return DEFAULT_QUEUE


class Rescue:
    """Re-queues jobs stranded by a dead worker, without waiting for the broker's visibility timeout.

    Two ways a job strands: its worker died mid-job (the claim expired, the heartbeat is gone;
    the unacknowledged message would come back only after ``visibility_timeout_s``, hours), or it
    was routed to ``model.<id>`` and no live worker consumes that queue any more. Either way it
    is sent again to ``default`` once it has looked stranded for ``grace_s``. One web replica
    does it (``take_rescue``), and the claim still keeps a second run from starting.
    """

    def __init__(self, state: SharedState, grace_s: float, requeue: Callable[[dict[str, Any], str], None]):
        self.state, self.grace_s, self.requeue = state, grace_s, requeue
        # Jobs that look stranded, with when this process first saw them so (relay thread only).
        self._stranded: dict[str, float] = {}

    def run(self) -> None:
        now = time.monotonic()
        live = {w["name"]: w for w in self.state.workers()}
        stranded: dict[str, tuple[dict[str, Any], str]] = {}
        for record in self.state.load_many(self.state.unclaimed()):
            if record["status"] in FINISHED:
                self.state.forget_claimed(record["id"])
            elif record.get("worker") not in live:  # a live worker re-claims on its next beat
                stranded[record["id"]] = (record, f"attempt-{record['attempt']}")
        consumed = {q for w in live.values() for q in w.get("queues") or []}
        if live:  # with no worker at all, jobs simply wait (and health says so)
            for record in self.state.load_many(self.state.routed()):
                queue = record.get("queue") or DEFAULT_QUEUE
                if record["status"] != "queued":
                    self.state.forget_claimed(record["id"])  # claimed (or cancelled) meanwhile
                elif queue not in consumed:
                    stranded.setdefault(record["id"], (record, f"queue-{queue}"))
        self._stranded = {i: self._stranded.get(i, now) for i in stranded}
        for job_id, (record, tag) in stranded.items():
            if now - self._stranded[job_id] >= self.grace_s and self.state.take_rescue(job_id, tag):
                self.requeue(record, tag)


class RemoteTranscriptionManager(JobManager):
    """The JobManager of a web process in cluster mode: the queue is Celery's, the state is Redis's."""

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
        self.root = root or settings.jobs_dir
        self.store = JobStore(self.root)
        self.state = SharedState(settings)
        self.state.ping()  # refuse to start half-working: a clear error now, not 503s later
        self.celery = make_celery(settings)
        self.control = WorkerControl(catalog, self.state, self.celery)
        self.live = LiveJobs()
        self._positions: tuple[float, dict[str, int]] = (0.0, {})
        self._indexed = False  # the queued index checked (rebuilt where missing) by this process
        self._relay: Any = None
        # How long a job must look stranded before it is re-queued: several missed heartbeats, so a
        # worker that is only slow (or Redis that restarted and lost a claim) is not taken for dead.
        self.rescue = Rescue(self.state, max(3.0, 5 * settings.worker_heartbeat_s), self._requeue)

    # --- lifecycle ---
    def start(self) -> None:
        self._ensure_queue_index()
        if self._relay is None:
            from modelmgr.distributed.relay import Relay

            self._relay = Relay(self.state, self.bus, self.live.on_event, self._reconcile, self._sweep)
            self._relay.start()

    def shutdown(self, timeout_s: float = 5.0) -> None:
        if self._relay is not None:
            self._relay.stop(timeout_s)

    # --- requests ---
    def validate(self, options: JobOptions) -> JobOptions:
        return validate_options(self.catalog, options)

    @staticmethod
    def check_format(fmt: str) -> str:
        return check_format(fmt)

    def submit(self, upload: Path, filename: str, options: JobOptions) -> Job:
        options = self.validate(options)
        probe_audio(upload, filename)
        self.state.ping()  # 503 before anything is stored
        stored = self.store.adopt(upload, filename)
        queue = self._route(options.model)
        job = RemoteJob(stored.id, options, stored.filename, stored.path, stored.size_bytes, queue=queue)
        try:
            self._save(job)
            if job.queue != DEFAULT_QUEUE:  # watched until claimed, in case its worker goes (Rescue)
                self.state.note_routed(job.id)
            self.live.add(job)
            self.celery.send_task(TASK, args=[job.id], queue=job.queue)
        except Exception as exc:
            self.live.discard(job.id)
            self.store.remove(job.folder)
            with contextlib.suppress(QueueUnavailable):
                self.state.remove(job.id)
            if isinstance(exc, QueueUnavailable):
                raise
            raise QueueUnavailable(f"the job could not be queued: {exc}") from exc
        self._positions = (0.0, {})  # this process's listings show it at once
        self._publish(job)
        return job

    def get(self, job_id: str) -> Job:
        record = self.state.load(check_job_id(job_id))
        if record is None:
            raise not_found(job_id)
        live = self.live.get(job_id)
        if live is not None:
            self.live.apply(live, record)
            return live
        job = remote_job(record, self.root)
        if job is None:
            raise not_found(job_id)
        return job

    def jobs(self, limit: int = 100) -> list[Job]:
        records = self.state.load_many(self.state.recent(limit))
        jobs = [remote_job(r, self.root) for r in records]
        return [j for j in jobs if j is not None]

    def snapshot(self, limit: int = 50) -> list[dict[str, Any]]:
        try:
            return snapshot_of(self, limit)
        except QueueUnavailable:
            return []  # the UI and SSE snapshots still draw; health says why

    def queue_positions(self) -> dict[str, int]:
        """Queued jobs in submission order (all queues together), from Redis's index of them (no
        record is read); cached briefly: listings ask per job."""
        at, positions = self._positions
        if time.monotonic() - at < 0.5:
            return positions
        positions = {job_id: i + 1 for i, job_id in enumerate(self.state.queued())}
        self._positions = (time.monotonic(), positions)
        return positions

    def cancel(self, job_id: str) -> Job:
        job = self.get(job_id)
        if job.status in FINISHED:
            return job
        self.state.request_cancel(job_id)
        # Set the flag first, then look for a claim: a worker claims first, then reads the flag, so
        # either it sees the flag or we see its claim (Redis runs commands one at a time). No claim:
        # no worker runs it (queued, or its worker died and it waits to be re-queued): cancel now.
        if self.state.claim_owner(job_id) is None:
            job.cancel_requested = True
            self._finish(job, "cancelled")
            self._positions = (0.0, {})
        return job

    def delete(self, job_id: str) -> str:
        return delete_job(self, job_id, self._remove, reread=True)

    def _remove(self, job: Job) -> None:
        self.state.remove(job.id)
        self._positions = (0.0, {})
        self.live.discard(job.id)
        self.store.remove(job.folder)
        self.state.publish("transcription", {**job.describe(), "deleted": True}, ORIGIN_WEB)

    def result(self, job_id: str, fmt: str) -> Path:
        check_format(fmt)
        return result_file(self.get(job_id), fmt)

    def transcript(self, job_id: str) -> Transcript:
        return read_transcript(self.get(job_id))

    def rename_speakers(self, job_id: str, names: dict[str, str]) -> Job:
        return rename_job_speakers(self, job_id, names, self._save_and_publish)

    def _save_and_publish(self, job: Job) -> None:
        self._save(job)
        self._publish(job)

    # --- the workers ---
    def health(self) -> dict[str, Any]:
        try:
            self.state.ping()
            workers = self.state.workers()
        except QueueUnavailable as exc:
            return {"redis": "unreachable", "error": exc.message, "workers": 0}
        return {
            "redis": "ok",
            "workers": len(workers),
            "relay": self._relay.connected if self._relay else False,
        }

    def workers(self) -> list[dict[str, Any]]:
        return self.control.workers()

    def models_on_workers(self) -> set[str]:
        return self.control.models_on_workers()

    def download_on_workers(self, model: str, languages: list[str] | None) -> list[str]:
        return self.control.download_on_workers(model, languages)

    def preload_on_worker(self, name: str, model: str, language: str | None, device: str) -> None:
        self.control.preload_on_worker(name, model, language, device)

    def _route(self, model_id: str) -> str:
        return self.control.route(model_id)

    # --- state: records to Redis (and job.json), events to the Redis channel ---
    def _save(self, job: Job) -> None:
        self.store.save(job)  # job.json in the shared folder too: the record survives a Redis wipe
        self.state.save(stored_record(job))

    def _publish(self, job: Job, throttle: bool = False) -> None:
        try:
            self.state.publish("transcription", job.describe(), ORIGIN_WEB)
        except QueueUnavailable as exc:
            log.warning("could not publish job %s: %s", job.id, exc.message)

    def _finish(self, job: Job, status: str, error: dict[str, str] | None = None) -> None:
        finish_job(job, status, error, self._save, self._publish)

    def _ensure_queue_index(self) -> None:
        """Rebuild the queued-jobs index from the records where it is missing (once per process)."""
        if self._indexed:
            return
        try:
            rebuilt = self.state.ensure_queue_index()
        except QueueUnavailable as exc:  # the sweep tries again
            log.warning("could not check the queued-jobs index: %s", exc.message)
            return
        self._indexed = True
        if rebuilt:
            log.info("rebuilt the queued-jobs index from the job records: %d queued", rebuilt)

    # --- the relay thread's upkeep ---
    def _reconcile(self) -> None:
        """Re-queue stranded jobs, then re-read the live ones from Redis."""
        self.rescue.run()
        self.live.reconcile(self.state)

    def _requeue(self, record: dict[str, Any], why: str) -> None:
        job = remote_job(record, self.root)
        if job is None:
            return
        job.status, job.progress, job.started_at, job.queue = "queued", 0.0, None, DEFAULT_QUEUE
        self._save(job)
        self.control.send(TASK, [job.id], DEFAULT_QUEUE)
        self.state.forget_claimed(job.id)
        self._publish(job)
        log.warning("job %s re-queued (%s; last worker %s)", job.id, why, job.worker)

    def _sweep(self) -> None:
        """Remove finished jobs (records and files) older than the retention period.

        Every web replica sweeps (from its relay thread); removing twice is harmless. It also
        drops queued-index members whose record is gone or no longer queued.
        """
        cutoff = retention_cutoff(self.settings)
        self._ensure_queue_index()
        try:
            self.state.prune_queue_index()  # members whose record went by another way
            for record in self.state.load_many(self.state.created_before(cutoff)):
                if expired(record["status"], record.get("finished_at"), cutoff):
                    self.state.remove(record["id"])
                    self.store.remove(self.store.folder(record["id"]))
                    log.info("removed expired transcription %s", record["id"])
        except QueueUnavailable:
            pass  # the next sweep will do it
