"""DownloadManager: what to fetch, in which order, exactly once.

* **One job per model.** ``start`` is check -> lock -> check again -> register
  -> start a thread. A second caller (50 at once, a double click, a preload)
  gets the existing job; there is never a second transfer of the same model.
* **Limited concurrency.** At most ``max_whisper_downloads`` Whisper and
  ``max_align_downloads`` alignment jobs run; the rest wait as ``queued``.
* **Bundling.** A Whisper job remembers the alignment models its languages need
  (those missing or incomplete when it was asked for); when it completes they
  are started through the same ``start`` path, so they run after it, one at a
  time with the default limit, and are deduplicated like any other request.
* **Progress** is counted by the worker and published at most every
  ``progress_interval_s`` per model; status changes are always published.

Bytes are moved by ``transfer.fetch``; what a model consists of comes from
``remote.Remote``; what is on disk from ``store.Store``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from .catalog import Catalog, ModelSpec
from .errors import Cancelled, DiskFull, IntegrityError, ModelBusy, ModelMgrError, NotDownloading
from .events import EventBus
from .nltk_data import ensure_punkt
from .remote import Remote
from .settings import Settings
from .store import Store
from .transfer import bytes_present, fetch

log = logging.getLogger(__name__)

IN_FLIGHT = ("queued", "downloading", "verifying")


class SpeedMeter:
    """Bytes per second over a sliding window, so a stall shows as a falling speed."""

    def __init__(self, window_s: float = 3.0) -> None:
        self.window_s = window_s
        self.samples: deque[tuple[float, int]] = deque()

    def update(self, now: float, done: int) -> float | None:
        self.samples.append((now, done))
        while len(self.samples) > 2 and now - self.samples[0][0] > self.window_s:
            self.samples.popleft()
        t0, b0 = self.samples[0]
        return (done - b0) / (now - t0) if now - t0 > 0.05 else None


@dataclass(eq=False)
class Job:
    spec: ModelSpec
    bundle: tuple[str, ...] = ()  # alignment model ids to start when this job completes
    status: str = "queued"
    bytes_done: int = 0
    bytes_total: int | None = None
    speed_bps: float | None = None
    error: str | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    meter: SpeedMeter = field(default_factory=SpeedMeter)
    last_publish: float = 0.0

    def progress(self) -> dict[str, Any]:
        total = self.bytes_total
        percent = (
            round(100.0 * self.bytes_done / total, 1)
            if total
            else (100.0 if self.status == "downloaded" else 0.0)
        )
        speed = self.speed_bps if self.status == "downloading" else None
        eta = (total - self.bytes_done) / speed if speed and total else None
        return {
            "bytes_done": self.bytes_done,
            "bytes_total": total,
            "percent": min(percent, 100.0),
            "speed_bps": round(speed) if speed else None,
            "eta_s": round(eta, 1) if eta is not None else None,
        }


@dataclass(frozen=True)
class StartResult:
    status: str  # started | queued | already_downloading | already_downloaded
    job: Job | None


class DownloadManager:
    def __init__(
        self, settings: Settings, catalog: Catalog, store: Store, remote: Remote, bus: EventBus
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.store = store
        self.remote = remote
        self.bus = bus
        self.limits = {
            "whisper": settings.max_whisper_downloads,
            "align": settings.max_align_downloads,
        }
        # _lock guards _jobs, _waiting, _running, _outcomes and _deleting. It is held
        # only for dictionary work: no I/O, no publishing, no thread joins inside it.
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}  # every job in flight (queued or running), by model id
        self._waiting: dict[str, deque[Job]] = {"whisper": deque(), "align": deque()}
        self._running: dict[str, int] = {"whisper": 0, "align": 0}
        self._outcomes: dict[str, Job] = {}  # the last finished job per model (to show errors)
        self._deleting: set[str] = set()
        self._threads: set[threading.Thread] = set()
        self._stopping = False  # shutdown: interrupted jobs keep their partial files to resume later
        self.transfers_started = 0  # worker threads ever started; read by tests and benchmarks

    # --- requests ---
    def start(
        self, model_id: str, *, languages: list[str] | None = None, with_align: bool = True
    ) -> StartResult:
        spec = self.catalog.get(model_id)
        languages = (
            self.catalog.bundle_languages(spec, languages, self.settings.default_languages)
            if with_align
            else []
        )
        existing = self._jobs.get(spec.id)  # first check: no lock, the common double-click case
        if existing is not None:
            return StartResult("already_downloading", existing)
        # Disk checks happen outside the lock; the second check below makes the decision.
        local = self.store.local_state(spec).status
        aligns = [
            a.id
            for a in self.catalog.align_models_for(spec, languages)
            if self.store.local_state(a).status != "downloaded"
        ]
        with self._lock:
            if spec.id in self._deleting:
                raise ModelBusy(f"{spec.id} is being deleted")
            existing = self._jobs.get(spec.id)  # second check, under the lock
            if existing is not None:
                return StartResult("already_downloading", existing)
            if local == "downloaded":
                result = StartResult("already_downloaded", None)
            else:
                job = Job(spec, bundle=tuple(aligns))
                self._register(job)
                result = StartResult("queued", job)
            to_spawn = self._schedule()
        if result.job is not None:
            if result.job in to_spawn:
                result = StartResult("started", result.job)
            else:
                self._publish(result.job)
        self._spawn(to_spawn)
        if local == "downloaded":
            for align_id in aligns:  # the Whisper model is here; bring its alignment models
                self.start(align_id, with_align=False)
        return result

    def resume_interrupted(self) -> list[str]:
        """Restart downloads that a crash or shutdown interrupted (partial files on disk).

        Disk reads only; called once at start-up from a worker thread.
        """
        if self.settings.offline:
            return []
        resumed = []
        for spec in self.catalog.all():
            if self.store.has_partials(spec) and self.store.local_state(spec).status == "incomplete":
                log.info("resuming the interrupted download of %s", spec.id)
                self.start(spec.id, with_align=False)
                resumed.append(spec.id)
        return resumed

    def cancel(self, model_id: str) -> Job:
        spec = self.catalog.get(model_id)
        with self._lock:
            job = self._jobs.get(spec.id)
            if job is None:
                raise NotDownloading(f"{spec.id} is not downloading")
            job.cancel.set()
            was_waiting = job in self._waiting[spec.kind]
            if was_waiting:
                self._waiting[spec.kind].remove(job)
                del self._jobs[spec.id]
                job.status = "cancelled"
                self._outcomes[spec.id] = job
        if was_waiting:
            job.done.set()
            self._publish(job)
        log.info("cancel requested for %s", spec.id)
        return job

    def delete(self, model_id: str, *, loaded: bool = False) -> int:
        spec = self.catalog.get(model_id)
        if loaded:
            raise ModelBusy(f"{spec.id} is loaded; clear the preload cache first")
        with self._lock:
            if spec.id in self._jobs:
                raise ModelBusy(f"{spec.id} is downloading; cancel it first")
            self._deleting.add(spec.id)
        try:
            freed = self.store.delete(spec)
        finally:
            with self._lock:
                self._deleting.discard(spec.id)
                self._outcomes.pop(spec.id, None)
        self.bus.publish("model_progress", self._progress_event(spec, None))
        return freed

    def job(self, model_id: str) -> Job | None:
        """The job in flight for a model, else its last finished one."""
        return self._jobs.get(model_id) or self._outcomes.get(model_id)

    def shutdown(self, timeout_s: float = 5.0) -> None:
        """Stop everything in flight, keeping partial files, and wait briefly for the workers."""
        self._stopping = True
        with self._lock:
            jobs = list(self._jobs.values())
            threads = list(self._threads)
        for job in jobs:
            job.cancel.set()
        deadline = time.monotonic() + timeout_s
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    # --- views ---
    def describe(self, spec: ModelSpec) -> dict[str, Any]:
        """The API's ``Model`` object: disk state overlaid with the job in flight."""
        job = self.job(spec.id)  # before the disk: a job seen finished has already linked its files
        state = self.store.local_state(spec)
        if job is not None and job.status in IN_FLIGHT:
            status, progress, error = job.status, job.progress(), None
        elif state.status == "downloaded":
            total = state.bytes_total or state.bytes_present
            status, error = "downloaded", None
            progress = {
                "bytes_done": total,
                "bytes_total": total,
                "percent": 100.0,
                "speed_bps": None,
                "eta_s": None,
            }
        else:
            failed = job is not None and job.status in ("error", "cancelled")
            status = job.status if failed else state.status
            error = job.error if failed else None
            total = state.bytes_total
            percent = round(100.0 * state.bytes_present / total, 1) if total else 0.0
            progress = {
                "bytes_done": state.bytes_present,
                "bytes_total": total,
                "percent": percent,
                "speed_bps": None,
                "eta_s": None,
            }
        if spec.kind == "whisper":
            langs = [spec.language] if spec.language else self.settings.default_languages
            aligns = (
                list(job.bundle)
                if job and job.bundle
                else [a.id for a in self.catalog.align_models_for(spec, langs)]
            )
        else:
            aligns = []
        return {
            "id": spec.id,
            "repo_id": spec.repo_id,
            "kind": spec.kind,
            "language": spec.language,
            "size_bytes": state.bytes_total or (job.bytes_total if job else None),
            "status": status,
            "progress": progress,
            "error": error,
            "align_models": aligns,
        }

    def snapshot(self) -> list[dict[str, Any]]:
        return [self.describe(spec) for spec in self.catalog.all()]

    # --- internals ---
    def _register(self, job: Job) -> None:
        """Caller holds _lock."""
        self._jobs[job.spec.id] = job
        self._outcomes.pop(job.spec.id, None)
        self._waiting[job.spec.kind].append(job)

    def _schedule(self) -> list[Job]:
        """Move waiting jobs into free slots. Caller holds _lock; caller spawns the result."""
        ready = []
        for kind, queue in self._waiting.items():
            while queue and self._running[kind] < self.limits[kind]:
                job = queue.popleft()
                job.status = "downloading"
                self._running[kind] += 1
                ready.append(job)
        return ready

    def _spawn(self, jobs: list[Job]) -> None:
        for job in jobs:
            thread = threading.Thread(
                target=self._run, args=(job,), name=f"download:{job.spec.id}", daemon=True
            )
            with self._lock:
                self._threads.add(thread)
                self.transfers_started += 1
            log.info("download thread started for %s", job.spec.id)
            thread.start()

    def _run(self, job: Job) -> None:
        spec = job.spec
        try:
            self._publish(job)
            self._transfer(job)
            job.status = "downloaded"
        except Cancelled:
            if not self._stopping:  # a person cancelled: leave nothing behind
                self.store.remove_partials(spec)
            job.status = "cancelled"
        except ModelMgrError as exc:
            job.status, job.error = "error", exc.message
        except Exception as exc:  # a bug or an unforeseen OS error: keep the worker pool alive
            log.exception("download of %s failed", spec.id)
            job.status, job.error = "error", f"unexpected error: {exc}"
        finally:
            with self._lock:
                del self._jobs[spec.id]
                self._running[spec.kind] -= 1
                self._outcomes[spec.id] = job
                self._threads.discard(threading.current_thread())
                to_spawn = self._schedule()
            job.done.set()
            self._publish(job)
            self._spawn(to_spawn)
            log.info(
                "download of %s ended: %s%s",
                spec.id,
                job.status,
                f" ({job.error})" if job.error else "",
            )
        if job.status == "downloaded":
            for align_id in job.bundle:
                self.start(align_id, with_align=False)

    def _transfer(self, job: Job) -> None:
        spec = job.spec
        manifest = self.remote.resolve(spec)
        self.store.save_manifest(spec, manifest)
        targets = self.store.targets(spec, manifest)
        job.bytes_total = manifest.total_bytes
        job.bytes_done = bytes_present(targets)
        needed = manifest.total_bytes - job.bytes_done
        free = self.store.free_bytes()
        if needed > 0 and free - needed < self.settings.min_free_bytes:
            raise DiskFull(
                f"{spec.id} needs {needed / 1e6:.0f} MB but only {free / 1e6:.0f} MB are free "
                f"(keeping {self.settings.min_free_bytes / 1e6:.0f} MB in reserve)"
            )
        self._publish(job)
        fetch(
            targets,
            headers=self.remote.headers if spec.source == "hf" else {},  # never send the HF token elsewhere
            on_progress=lambda n: self._advance(job, n),
            cancel=job.cancel,
            retries=self.settings.download_retries,
            timeout_s=self.settings.download_timeout_s,
            connections=self.settings.download_connections,
            part_bytes=self.settings.download_part_bytes,
            stall_s=self.settings.stall_s,
        )
        job.bytes_done = manifest.total_bytes  # files another process completed count as done
        job.status = "verifying"
        self._publish(job)
        self.store.link_snapshot(spec, manifest, spec.revision)
        if self.store.local_state(spec).status != "downloaded":
            raise IntegrityError(f"{spec.id}: files are missing after the download")
        if spec.kind == "align":
            ensure_punkt(self.settings)  # whisperx.align needs it; never a surprise download later

    def _advance(self, job: Job, nbytes: int) -> None:
        """Called by the transfer for every chunk; publishes at a bounded rate."""
        job.bytes_done += nbytes
        now = time.monotonic()
        job.speed_bps = job.meter.update(now, job.bytes_done)
        if now - job.last_publish >= self.settings.progress_interval_s:
            self._publish(job)

    def _progress_event(self, spec: ModelSpec, job: Job | None) -> dict[str, Any]:
        if job is None:
            return {
                "model": spec.id,
                "repo_id": spec.repo_id,
                **{k: v for k, v in self.describe(spec).items() if k in ("status", "progress", "error")},
            }
        return {
            "model": spec.id,
            "repo_id": spec.repo_id,
            "status": job.status,
            "progress": job.progress(),
            "error": job.error,
        }

    def _publish(self, job: Job) -> None:
        job.last_publish = time.monotonic()
        self.bus.publish("model_progress", self._progress_event(job.spec, job))
