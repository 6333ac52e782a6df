"""``python -m modelmgr worker``: a Celery worker that runs transcription jobs.

Each worker builds the same managers as the web app (``Services.build``) on its own model
cache: downloads are deduplicated and verified as always, the model is preloaded under a
lease, and the job runs through ``TranscriptionManager.run_job`` (the code path of the
embedded default). What differs is where state goes:

* **Records**: every stage change is written to the job's Redis hash (and ``job.json`` in the
  shared data folder), so every web process sees it.
* **Events**: everything this worker's EventBus publishes (job stages, segments, download and
  preload progress) is forwarded, in order, to the Redis channel by one publisher thread.
* **Claims**: a job is run only by the worker holding its claim (state.py). A second delivery
  (Redis re-queues unacknowledged messages after the visibility timeout, e.g. after kill -9)
  waits with ``retry`` while the owner's heartbeat renews the claim, and takes over once the
  owner is gone: the job runs again from its upload, its ``attempt`` grows and ``retries``
  names the lost worker. Exactly one run writes the result.
* **Heartbeat** (``worker:<name>`` with a TTL): device, loaded models, models on disk, current
  job, queues. The same thread renews the claim and watches the job's cancel flag.

Test-only hook: ``MODELMGR_TEST_HOLD_FILE``. While that file exists, a transcription waits
just before Whisper runs (watching cancel), so tests can hold a job "mid-job"
deterministically (kill the worker, cancel it). Never set it in production.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import queue
import socket
import sys
import threading
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

from modelmgr.asr import loaders
from modelmgr.asr.job_record import stored_record
from modelmgr.asr.jobs import FINISHED, Job, TranscriptionManager
from modelmgr.core.errors import Cancelled, QueueUnavailable
from modelmgr.core.events import Event, EventBus
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
from modelmgr.distributed.jobs import RemoteJob, remote_job
from modelmgr.distributed.state import SharedState, _safe_url
from modelmgr.services import Services

log = logging.getLogger(__name__)
HOLD_ENV = "MODELMGR_TEST_HOLD_FILE"
PROGRESS_SAVE_S = 1.0


class ForwardingBus(EventBus):
    """The worker's EventBus: publishes locally (nobody listens) and forwards to Redis, in order."""

    def __init__(self, state: SharedState, origin: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.state, self.origin = state, origin
        self._out: queue.Queue[Event | None] = queue.Queue(maxsize=10_000)
        self._thread = threading.Thread(target=self._forward, name="event-forwarder", daemon=True)
        self._thread.start()

    def publish(self, name: str, data: dict[str, Any]) -> Event:
        event = super().publish(name, data)
        # When Redis has been away a long time the buffer fills: progress is lost, records are not.
        with contextlib.suppress(queue.Full):
            self._out.put_nowait(event)
        return event

    def _forward(self) -> None:
        warned = False
        while True:
            event = self._out.get()
            if event is None:
                return
            for _ in range(3):
                try:
                    self.state.publish(event.name, event.data, self.origin)
                    warned = False
                    break
                except QueueUnavailable as exc:
                    if not warned:
                        log.warning("events are not reaching Redis: %s", exc.message)
                        warned = True
                    time.sleep(0.5)

    def flush(self, timeout_s: float = 5.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not self._out.empty() and time.monotonic() < deadline:
            time.sleep(0.02)


class WorkerTranscriptions(TranscriptionManager):
    """Runs the jobs Celery hands this worker; writes every stage change to Redis too.

    Its queue stays empty (Celery is the queue): ``run_job`` runs each job, and the stage hooks
    below (which the job runner reports to) add Redis to where the embedded manager writes.
    """

    def __init__(self, *args: Any, state: SharedState, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.state = state
        # Jobs this worker lost to another (it missed its claim's renewals and the job was re-queued):
        # they stop, and write nothing more (no record, no event, no removal of the shared upload).
        self.lost: set[str] = set()  # added by the heartbeat thread, read by the job's thread
        self._progress_saved: dict[str, float] = {}  # job id -> when its progress was last recorded

    def _save(self, job: Job) -> None:
        if job.id in self.lost:
            return
        super()._save(job)
        record = stored_record(job)
        # A final state must not be lost to a short Redis outage: keep trying for a while.
        deadline = time.monotonic() + (120.0 if job.status in FINISHED else 0.0)
        while True:
            try:
                self.state.save(record)
                return
            except QueueUnavailable as exc:
                if time.monotonic() >= deadline:
                    log.warning("could not record job %s (%s): %s", job.id, job.status, exc.message)
                    return
                time.sleep(1.0)

    def _publish(self, job: Job, throttle: bool = False) -> None:
        if job.id in self.lost:
            return
        super()._publish(job, throttle)
        # Progress within a stage reaches the web processes' listeners as events; the record (what
        # GET and the other replicas read) gets it too, once a second at most.
        now = time.monotonic()
        if throttle and now - self._progress_saved.get(job.id, 0.0) >= PROGRESS_SAVE_S:
            self._progress_saved[job.id] = now
            self._save(job)

    def _finish(self, job: Job, status: str, error: dict[str, str] | None = None) -> None:
        self._progress_saved.pop(job.id, None)
        if job.id in self.lost:
            job.done.set()
            log.warning("job %s: stopped here, another worker runs it now", job.id)
            return
        super()._finish(job, status, error)


class WorkerRuntime:
    """Everything one worker process holds: its managers, its claim on the current job, its heartbeat."""

    def __init__(self, settings: Settings, name: str, device: str, queues: list[str]) -> None:
        self.settings, self.name, self.device = settings, name, device
        self.state = SharedState(settings)
        self.bus = ForwardingBus(
            self.state, name, replay=settings.event_replay, queue_size=settings.subscriber_queue
        )
        self.services = Services.build(
            settings,
            bus=self.bus,
            transcriptions=lambda *a: WorkerTranscriptions(*a, state=self.state),
        )
        self.manager: WorkerTranscriptions = self.services.transcriptions  # type: ignore[assignment]
        # _lock guards current and queues (read by the heartbeat thread, written by the task).
        self._lock = threading.Lock()
        self.current: RemoteJob | None = None
        self.queues = list(dict.fromkeys(queues))
        self.ready = False
        self.jobs_run = 0
        self.started_at = time.time()
        self.celery: Any = None  # the Celery app, set by main()
        self.celery_hostname: str | None = None
        self._stop = threading.Event()
        self._redis_lost = False  # heartbeat thread only
        self.claim_ttl = max(2, int(round(3 * settings.worker_heartbeat_s)))

    # --- background ---
    def start(self) -> None:
        threading.Thread(target=self._warm_up, name="warm-up", daemon=True).start()
        threading.Thread(target=self._beat, name="heartbeat", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(QueueUnavailable):
            self.state.forget_worker(self.name)

    def _warm_up(self) -> None:
        """Import torch/whisperx now, not inside the first job (tens of seconds)."""
        try:
            loaders.heavy()
        except Exception:  # the first job will report the same failure as its own error
            log.exception("importing the model libraries failed")
        self.ready = True
        self._beat_once()

    def _beat(self) -> None:
        while not self._stop.wait(self.settings.worker_heartbeat_s):
            self._beat_once()

    def _beat_once(self) -> None:
        with self._lock:
            job = self.current
        try:
            if job is not None:
                renewed = self.state.renew_claim(job.id, self.name, self.claim_ttl)
                # Not renewed: the claim expired (this process stalled) or Redis lost it (restart).
                if not renewed and not self.state.claim(job.id, self.name, self.claim_ttl):
                    self._lose(job, self.state.claim_owner(job.id))
                if self.state.cancel_requested(job.id) and not job.cancel.is_set():
                    job.cancel_requested = True
                    job.cancel.set()
            self.state.heartbeat(self.name, self.info(), max(3, int(3 * self.settings.worker_heartbeat_s)))
            if self._redis_lost:
                log.info("heartbeat: Redis is back")
                self._redis_lost = False
        except QueueUnavailable as exc:
            if not self._redis_lost:  # once per outage, not every beat
                log.warning("heartbeat: %s", exc.message)
                self._redis_lost = True
        except Exception:  # the heartbeat must outlive odd failures (a disk read in info())
            log.exception("heartbeat failed")

    def _lose(self, job: RemoteJob, owner: str | None) -> None:
        """Another worker claimed this job (it was re-queued while this one was silent): stop it."""
        if job.id not in self.manager.lost:
            log.warning("job %s was re-queued and claimed by %s; stopping it here", job.id, owner)
            self.manager.lost.add(job.id)
            job.cancel.set()

    def info(self) -> dict[str, Any]:
        preload = self.services.preload.status()
        loaded = [w["id"] for w in [preload.get("whisper")] if w] + [a["id"] for a in preload["aligners"]]
        on_disk = [m["id"] for m in self.services.downloads.snapshot() if m["status"] == "downloaded"]
        with self._lock:
            job, queues = self.current, list(self.queues)
        return {
            "name": self.name,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "device": self.device,
            "resolved_device": preload.get("device"),
            "ready": self.ready,
            "queues": queues,
            "loaded": loaded,
            "preload": preload.get("state"),
            "preload_model": (preload.get("request") or {}).get("model"),
            "preload_error": preload.get("error"),
            "models_on_disk": on_disk,
            "current_job": job.id if job is not None else None,
            "current_status": job.status if job is not None else None,
            "jobs_run": self.jobs_run,
            "started_at": self.started_at,
            "heartbeat_at": time.time(),
        }

    # --- the task ---
    def run(self, task: Any, job_id: str) -> str:
        try:
            record = self.state.load(job_id)
            if record is None:
                return "deleted"
            if record["status"] in FINISHED:
                return "finished already"  # a re-delivery after the job ended: nothing to do
            if not self.state.claim(job_id, self.name, self.claim_ttl):
                owner = self.state.claim_owner(job_id)
                log.info("job %s is running on %s; checking again later", job_id, owner)
                raise task.retry(countdown=max(2.0, self.claim_ttl), max_retries=None)
        except QueueUnavailable:
            raise task.retry(countdown=2.0, max_retries=None) from None
        try:
            return self._run_claimed(job_id)
        except QueueUnavailable:
            # Redis went away before the job started: hand it back (run_job itself never raises).
            raise task.retry(countdown=2.0, max_retries=None) from None
        finally:
            with self._lock:
                self.current = None
            with contextlib.suppress(QueueUnavailable):  # else it expires on its own
                self.state.release_claim(job_id, self.name)
            self._beat_once()

    def _run_claimed(self, job_id: str) -> str:
        before = self.state.load(job_id)  # names the previous (lost) worker until this one saves
        attempt = self.state.next_attempt(job_id)
        record = self.state.load(job_id)  # again, now that it is ours: it may have been cancelled
        if record is None or record["status"] in FINISHED:
            return "finished already"
        job = remote_job(record, self.manager.root)
        if job is None:
            log.error("job %s has a malformed record", job_id)
            return "malformed"
        previous = (before or {}).get("worker")
        job.attempt, job.worker = attempt, self.name
        if attempt > 1:
            job.retries.append({"attempt": attempt, "lost_worker": previous, "at": time.time()})
            log.info("job %s: attempt %d (its previous worker %s was lost)", job_id, attempt, previous)
        if job.options.device == "auto" and self.device != "auto":
            job.options = replace(job.options, device=self.device)
        job.status, job.progress, job.started_at = "queued", 0.0, None
        with self._lock:
            self.current = job
        if self.state.cancel_requested(job_id):
            job.cancel_requested = True
            self.manager._finish(job, "cancelled")
            return "cancelled"
        self.manager._save(job)
        self.manager._publish(job)  # a retry shows at once: attempt 2, retries [...]
        self.manager.run_job(job)
        self.jobs_run += 1
        self._consume_model_queue(job.options.model)
        self.bus.flush()
        return job.status

    def _consume_model_queue(self, model_id: str) -> None:
        """Now that the model is loaded here, also take jobs routed to it (``model.<id>``)."""
        name = model_queue(model_id)
        with self._lock:
            if name in self.queues or self.celery_hostname is None:
                return
            self.queues.append(name)
        try:
            self.celery.control.add_consumer(name, destination=[self.celery_hostname], reply=False)
        except Exception as exc:  # routing falls back to the default queue
            log.warning("could not consume %s: %s", name, exc)


def check_data_dir(settings: Settings) -> Path:
    """The shared data folder must be readable and writable here, or the worker refuses to start."""
    if settings.data_dir is None:
        raise SystemExit(
            "error: set MODELMGR_DATA_DIR to the data folder the web process and every worker share "
            "(uploads and results live there)"
        )
    root = settings.jobs_dir
    probe = root / f".probe-{uuid.uuid4().hex}"
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe.write_text("ok", encoding="utf-8")
        if probe.read_text(encoding="utf-8") != "ok":
            raise OSError("read back something else")
        list(root.iterdir())
    except OSError as exc:
        raise SystemExit(
            f"error: the shared data folder {root} is not readable and writable here: {exc}"
        ) from None
    finally:
        probe.unlink(missing_ok=True)
    return root


def _install_test_hold(path: Path, runtime: WorkerRuntime) -> None:
    """Test-only (see the module docstring): Whisper waits while ``path`` exists.

    It holds the pipeline's decoding step (``transcribe``), which every path takes:
    sequential or batched, with or without VAD.
    """
    from modelmgr.asr import pipeline

    real = pipeline.transcribe

    def held(audio: Any, whisper_model: Any, **kwargs: Any) -> Any:
        while path.exists():
            job = runtime.current
            if job is not None and job.cancel.is_set():
                raise Cancelled("cancelled")
            time.sleep(0.05)
        return real(audio, whisper_model, **kwargs)

    pipeline.transcribe = held  # type: ignore[assignment]
    log.warning("TEST HOOK: transcriptions wait while %s exists", path)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m modelmgr worker", description="a transcription worker")
    parser.add_argument("--redis-url", help="the broker (default: MODELMGR_REDIS_URL)")
    parser.add_argument("--queues", default="", help="extra queues besides 'default', comma-separated")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (one worker per GPU)")
    parser.add_argument("--name", help="worker name (default: host-pid)")
    parser.add_argument("--loglevel", default="INFO")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.loglevel, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings(**({"redis_url": args.redis_url} if args.redis_url else {}))
    if not settings.redis_url:
        print("error: a worker needs Redis: --redis-url or MODELMGR_REDIS_URL", file=sys.stderr)
        return 2
    device = args.device
    if device.startswith("cuda:"):  # one worker per GPU: this process sees only its own
        os.environ["CUDA_VISIBLE_DEVICES"] = device.split(":", 1)[1]
        device = "cuda"
    loaders.check_device(device)
    check_data_dir(settings)
    name = args.name or f"{socket.gethostname()}-{os.getpid()}"
    try:
        SharedState(settings).ping()
    except QueueUnavailable as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    extra = [q.strip() for q in args.queues.split(",") if q.strip()]
    queues = [DEFAULT_QUEUE, worker_queue(name), *extra]
    runtime = WorkerRuntime(settings, name, device, queues)
    if os.environ.get(HOLD_ENV):
        _install_test_hold(Path(os.environ[HOLD_ENV]), runtime)
    app = make_celery(settings)
    runtime.celery = app
    runtime.celery_hostname = f"{name}@{socket.gethostname()}"

    @app.task(name=TASK, bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=None)
    def transcribe(task: Any, job_id: str) -> str:
        return runtime.run(task, job_id)

    @app.task(name=DOWNLOAD_TASK)
    def download(model: str, languages: list[str] | None = None) -> str:
        # Starts in the download manager's threads (deduplicated as always); progress is forwarded.
        return runtime.services.downloads.start(model, languages=languages, with_align=True).status

    @app.task(name=PRELOAD_TASK)
    def preload(model: str, language: str | None = None, device: str = "auto") -> str:
        if device == "auto" and runtime.device != "auto":
            device = runtime.device
        return str(runtime.services.preload.start(model, language, device).get("state"))

    runtime.start()
    log.info(
        "worker %s: Redis %s, data %s, queues %s",
        name,
        _safe_url(settings.redis_url),
        settings.jobs_dir,
        queues,
    )
    try:
        app.worker_main(
            [
                "worker",
                "--pool=solo",
                "--concurrency=1",
                "--prefetch-multiplier=1",
                f"--hostname={runtime.celery_hostname}",
                f"--queues={','.join(queues)}",
                f"--loglevel={args.loglevel}",
                "--without-gossip",
                "--without-mingle",
            ]
        )
    finally:
        runtime.stop()
        runtime.services.shutdown()
    return 0
