"""DownloadManager: what to fetch, in which order, exactly once.

* **One job per repository.** ``start`` is check -> lock -> check again ->
  register -> start a thread. A second caller (50 at once, a double click, a
  preload, or an alias such as ``large`` for ``large-v3``) gets the existing
  job; there is never a second transfer of the same files. Jobs are keyed by
  ``repo_id`` because that is what is fetched and deleted.
* **Limited concurrency.** At most ``max_whisper_downloads`` Whisper and
  ``max_align_downloads`` alignment jobs run; the rest wait as ``queued``.
* **Bundling.** A Whisper job remembers the alignment models its languages need
  (those missing or incomplete when it was asked for); when it completes they
  are started through the same ``start`` path, so they run after it, one at a
  time with the default limit, and are deduplicated like any other request.
* **Progress** is counted by the worker and published at most every
  ``progress_interval_s`` per model; status changes are always published.
* **Verify** re-hashes a model in a worker thread (status ``verifying``); a bad
  file is removed so the model shows ``corrupt`` and a download re-fetches only
  that file. **Update** fetches a newer commit's changed blobs only (blobs are
  named by hash), moves ``refs/main`` and drops the old revision once unused.
* **Delete** is refused here, not in the API, while the repository has a job or
  any of its aliases is in use (``in_use``), so the CLI is covered too.

Bytes are moved by ``transfer.fetch``; what a model consists of comes from
``remote.Remote``; what is on disk from ``store.Store``.
"""

from __future__ import annotations

import errno
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from modelmgr.core.catalog import Catalog, ModelSpec
from modelmgr.core.errors import (
    Cancelled,
    DiskFull,
    IntegrityError,
    InvalidInput,
    ModelBusy,
    ModelInUse,
    ModelMgrError,
    NotDownloading,
)
from modelmgr.core.events import EventBus
from modelmgr.core.settings import Settings
from modelmgr.models.nltk_data import ensure_punkt
from modelmgr.models.remote import Remote
from modelmgr.models.sizes import SizeCatalog
from modelmgr.models.store import LocalState, Store
from modelmgr.models.transfer import bytes_present, fetch

log = logging.getLogger(__name__)

IN_FLIGHT = ("queued", "downloading", "verifying")
UPDATE_CHECK_FIRST_DELAY_S = 60.0  # the first background check waits: start-up stays quiet


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
    mode: str = "download"  # download | update | verify
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
        self,
        settings: Settings,
        catalog: Catalog,
        store: Store,
        remote: Remote,
        bus: EventBus,
        sizes: SizeCatalog | None = None,
    ) -> None:
        self.settings = settings
        self.sizes = sizes
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
        # _lock guards _jobs, _waiting, _running, _outcomes, _deleting, _threads and _remote.
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}  # every job in flight (queued or running), by repo id
        self._waiting: dict[str, deque[Job]] = {"whisper": deque(), "align": deque()}
        self._running: dict[str, int] = {"whisper": 0, "align": 0}
        self._outcomes: dict[str, Job] = {}  # the last finished job per repo id (to show errors)
        self._deleting: set[str] = set()  # repo ids
        self._threads: set[threading.Thread] = set()
        self._remote: dict[str, tuple[str, float]] = {}  # repo id -> (hub commit, when checked)
        self._known_sizes: dict[str, int] = {}  # repo id -> total bytes at the last resolve (507 up front)
        self._stopping = False  # shutdown: interrupted jobs keep their partial files to resume later
        self._stop_checks = threading.Event()  # ends the background update checker
        self.transfers_started = 0  # worker threads ever started; read by tests and benchmarks
        # "Is this model loaded or leased?" Injected by Services (the preload manager knows).
        self.in_use: Callable[[ModelSpec], bool] = lambda spec: False

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
        if self._stopping:
            raise ModelBusy("the server is shutting down; no new download starts")
        existing = self._jobs.get(spec.repo_id)  # first check: no lock, the common double-click case
        if existing is not None and existing.mode != "verify":
            return StartResult("already_downloading", existing)
        # Disk checks happen outside the lock; the second check below makes the decision.
        state = self.store.local_state(spec)
        local = state.status
        aligns = [
            a.id
            for a in self.catalog.align_models_for(spec, languages)
            if self.store.local_state(a).status != "downloaded"
        ]
        if local != "downloaded":
            total = state.bytes_total or self._known_sizes.get(spec.repo_id)
            try:
                self._check_space_up_front(spec, total, state.bytes_present)
            except DiskFull as exc:  # answered at once (507), and shown on the model like any failure
                self._record_failure(spec, exc)
                raise
        with self._lock:
            if spec.repo_id in self._deleting:
                raise ModelBusy(f"{spec.id} is being deleted")
            existing = self._jobs.get(spec.repo_id)  # second check, under the lock
            if existing is not None and existing.mode == "verify":
                raise ModelBusy(f"{spec.id} is being verified; download it when that ends")
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
            self._start_bundle(aligns)  # the Whisper model is here; bring its alignment models
        return result

    def update(self, model_id: str) -> StartResult:
        """Bring a downloaded model to the hub's current commit, fetching changed files only."""
        spec = self.catalog.get(model_id)
        if self._stopping:
            raise ModelBusy("the server is shutting down; no new download starts")
        with self._lock:
            existing = self._jobs.get(spec.repo_id)
            if existing is not None:
                if existing.mode == "verify":
                    raise ModelBusy(f"{spec.id} is being verified; update it when that ends")
                return StartResult("already_downloading", existing)
            job = Job(spec, mode="update")
            self._register(job)
            to_spawn = self._schedule()
        if job not in to_spawn:
            self._publish(job)
        self._spawn(to_spawn)
        return StartResult("started" if job in to_spawn else "queued", job)

    def verify(self, model_id: str) -> Job:
        """Re-hash a model's files in a worker thread; returns the job (status ``verifying``)."""
        spec = self.catalog.get(model_id)
        if self.store.local_state(spec).status == "not_downloaded":
            raise InvalidInput(f"{spec.id} is not downloaded: there is nothing to verify")
        with self._lock:
            existing = self._jobs.get(spec.repo_id)
            if existing is not None:
                if existing.mode == "verify":
                    return existing
                raise ModelBusy(f"{spec.id} is downloading; verify it when that ends")
            if spec.repo_id in self._deleting:
                raise ModelBusy(f"{spec.id} is being deleted")
            job = Job(spec, mode="verify", status="verifying")
            self._jobs[spec.repo_id] = job
            self._outcomes.pop(spec.repo_id, None)
        thread = threading.Thread(target=self._run_verify, args=(job,), name=f"verify:{spec.id}", daemon=True)
        with self._lock:
            self._threads.add(thread)
        self._publish(job)
        thread.start()
        return job

    def check_update(self, model_id: str, *, max_age_s: float = 0.0) -> bool | None:
        """Ask the hub whether the model's revision moved (None: unknown, e.g. offline)."""
        spec = self.catalog.get(model_id)
        if spec.source != "hf" or self.settings.offline:
            return None
        with self._lock:
            known = self._remote.get(spec.repo_id)
        if known is None or time.time() - known[1] > max_age_s:
            commit = self.remote.head_commit(spec)
            if commit is None:
                return None
            with self._lock:
                self._remote[spec.repo_id] = (commit, time.time())
        return self._update_available(spec)

    def check_updates_due(self) -> list[str]:
        """The background check (at most once a day per repository, never offline)."""
        if self.settings.offline:
            return []
        moved = []
        for spec in self.catalog.all():
            if spec.source != "hf" or self.store.local_state(spec).status != "downloaded":
                continue
            try:
                if self.check_update(spec.id, max_age_s=self.settings.update_check_interval_s):
                    moved.append(spec.id)
            except ModelMgrError as exc:
                log.info("update check of %s skipped: %s", spec.id, exc.message)
                return moved  # the hub is not answering: try again next time
        return moved

    def start_update_checker(
        self, first_delay_s: float = UPDATE_CHECK_FIRST_DELAY_S
    ) -> threading.Thread | None:
        """Check for newer commits in the background, at most once per interval; never offline."""
        interval = self.settings.update_check_interval_s
        if self.settings.offline or interval <= 0:
            return None

        def loop() -> None:
            delay = first_delay_s
            while not self._stop_checks.wait(delay):
                moved = self.check_updates_due()
                if moved:
                    log.info("updates available on the hub: %s", ", ".join(moved))
                delay = interval

        thread = threading.Thread(target=loop, name="update-checker", daemon=True)
        thread.start()
        return thread

    def _update_available(self, spec: ModelSpec) -> bool | None:
        with self._lock:
            known = self._remote.get(spec.repo_id)
        if known is None:
            return None
        local = self.store.local_commit(spec)
        return local is not None and local != known[0]

    def _check_space_up_front(self, spec: ModelSpec, total: int | None, present: int) -> None:
        """Answer 507 at once when the last known size does not fit (nothing is registered)."""
        if not total:
            return
        self._check_space(spec, total - present)

    def _check_space(self, spec: ModelSpec, needed: int) -> None:
        free = self.store.free_bytes()
        if needed > 0 and free - needed < self.settings.min_free_bytes:
            raise DiskFull(
                f"{spec.id} needs {needed / 1e6:.0f} MB but only {free / 1e6:.0f} MB are free "
                f"(keeping {self.settings.min_free_bytes / 1e6:.0f} MB in reserve): free some disk space "
                "or point HF_HUB_CACHE at a larger disk"
            )

    def _record_failure(self, spec: ModelSpec, exc: ModelMgrError) -> None:
        """Show a refusal on the model (UI row, snapshot, SSE) as the outcome of a job that never ran."""
        job = Job(spec, status="error", error=exc.message)
        job.done.set()
        with self._lock:
            if spec.repo_id in self._jobs:
                return  # a job started meanwhile: its own state is the truth
            self._outcomes[spec.repo_id] = job
        self._publish(job)

    def _start_bundle(self, align_ids: Any) -> None:
        """Start each alignment model; one failing to start does not skip the others."""
        for align_id in align_ids:
            try:
                self.start(align_id, with_align=False)
            except ModelMgrError as exc:
                log.warning("alignment model %s was not started: %s", align_id, exc.message)

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
            job = self._jobs.get(spec.repo_id)
            if job is None:
                raise NotDownloading(f"{spec.id} is not downloading")
            job.cancel.set()
            was_waiting = job in self._waiting[job.spec.kind]
            if was_waiting:
                self._waiting[job.spec.kind].remove(job)
                del self._jobs[spec.repo_id]
                job.status = "cancelled"
                self._outcomes[spec.repo_id] = job
        if was_waiting:
            job.done.set()
            self._publish(job)
        log.info("cancel requested for %s", spec.id)
        return job

    def delete(self, model_id: str) -> int:
        """Remove a model's files; refused while its repository is busy or any alias is in use."""
        spec = self.catalog.get(model_id)
        for twin in self.catalog.twins(spec):
            if self.in_use(twin):
                raise ModelInUse(f"{twin.id} is loaded or in use; clear the preload cache first")
        with self._lock:
            job = self._jobs.get(spec.repo_id)
            if job is not None:
                what = "verified" if job.mode == "verify" else "downloaded"
                raise ModelBusy(f"{spec.repo_id} is being {what} (as {job.spec.id}); cancel it first")
            if spec.repo_id in self._deleting:
                raise ModelBusy(f"{spec.id} is being deleted")
            self._deleting.add(spec.repo_id)
        try:
            freed = self.store.delete(spec)
        finally:
            with self._lock:
                self._deleting.discard(spec.repo_id)
                self._outcomes.pop(spec.repo_id, None)
                self._remote.pop(spec.repo_id, None)
        for twin in self.catalog.twins(spec):
            self.bus.publish("model_progress", self._progress_event(twin, None))
        return freed

    def job(self, model_id: str) -> Job | None:
        """The job in flight for a model's repository, else its last finished one."""
        repo_id = self.catalog.get(model_id).repo_id
        return self._jobs.get(repo_id) or self._outcomes.get(repo_id)

    def shutdown(self, timeout_s: float = 5.0) -> None:
        """Stop everything in flight, keeping partial files, and wait briefly for the workers."""
        self._stop_checks.set()
        with self._lock:
            self._stopping = True  # under the lock: _schedule starts nothing from now on
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
            if job.mode == "verify" and state.bytes_total:
                progress["bytes_total"] = progress["bytes_total"] or state.bytes_total
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
            failed = job is not None and job.status in ("error", "cancelled", "corrupt")
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
        size, size_source = self._size(spec, state, job)
        return {
            "id": spec.id,
            "repo_id": spec.repo_id,
            "kind": spec.kind,
            "language": spec.language,
            "size_bytes": size,
            "size_source": size_source,
            "status": status,
            "progress": progress,
            "error": error,
            "align_models": aligns,
            "revision": self.store.local_commit(spec) if state.status == "downloaded" else None,
            "update_available": self._update_available(spec) if state.status == "downloaded" else None,
        }

    def _size(self, spec: ModelSpec, state: LocalState, job: Job | None) -> tuple[int | None, str | None]:
        """The best size known: this cache's manifest, the job's, the hub's metadata, or a guess."""
        if state.bytes_total:
            return state.bytes_total, "disk"
        if job is not None and job.bytes_total:
            return job.bytes_total, "hub"
        return self.sizes.size(spec) if self.sizes else (None, None)

    def snapshot(self) -> list[dict[str, Any]]:
        return [self.describe(spec) for spec in self.catalog.all()]

    # --- internals ---
    def _register(self, job: Job) -> None:
        """Caller holds _lock."""
        self._jobs[job.spec.repo_id] = job
        self._outcomes.pop(job.spec.repo_id, None)
        self._waiting[job.spec.kind].append(job)

    def _schedule(self) -> list[Job]:
        """Move waiting jobs into free slots. Caller holds _lock; caller spawns the result."""
        ready: list[Job] = []
        if self._stopping:
            return ready  # shutdown began: a queued job never starts
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
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                log.exception("download of %s failed", spec.id)
                job.status, job.error = "error", f"unexpected error: {exc}"
            else:  # an expected fault: a named error, no traceback
                disk = DiskFull(f"the disk is full ({exc.strerror}): free some space and download again")
                job.status, job.error = "error", disk.message
        except Exception as exc:  # a bug: keep the worker pool alive
            log.exception("download of %s failed", spec.id)
            job.status, job.error = "error", f"unexpected error: {exc}"
        finally:
            with self._lock:
                del self._jobs[spec.repo_id]
                self._running[spec.kind] -= 1
                self._outcomes[spec.repo_id] = job
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
            self._start_bundle(job.bundle)

    def _run_verify(self, job: Job) -> None:
        spec = job.spec
        try:
            manifest = self.store.load_manifest(spec)
            if manifest is None and not self.settings.offline:
                # A cache we did not write, without huggingface_hub's record: ask the hub what the
                # revision in use consists of (only if the hub still serves that revision).
                remote = self.remote.resolve(spec, job.cancel)
                if spec.source != "hf" or remote.commit == self.store.ref_commit(spec):
                    self.store.save_manifest(spec, remote)
                    manifest = remote
            job.bytes_total = manifest.total_bytes if manifest else None

            def advance(nbytes: int) -> None:
                if job.cancel.is_set():
                    raise Cancelled("verify cancelled")
                self._advance(job, nbytes)

            problems = self.store.verify(spec, on_progress=advance, remove_bad=True)
            if problems:
                job.status = "corrupt"
                job.error = (
                    f"verify found {len(problems)} problem(s): {'; '.join(problems)}. "
                    "Download the model again: only these files are fetched."
                )
            else:
                job.status = "downloaded"
        except Cancelled:
            job.status = "cancelled"
        except ModelMgrError as exc:  # the hub is down, the disk is full, ...: named, no traceback
            job.status, job.error = "error", f"verify failed: {exc.message}"
        except Exception as exc:  # a bug: report it on the model, keep the manager alive
            log.exception("verify of %s failed", spec.id)
            job.status, job.error = "error", f"verify failed: {exc}"
        finally:
            with self._lock:
                self._jobs.pop(spec.repo_id, None)
                self._outcomes[spec.repo_id] = job
                self._threads.discard(threading.current_thread())
            job.done.set()
            self._publish(job)
            log.info("verify of %s ended: %s", spec.id, job.status)

    def _transfer(self, job: Job) -> None:
        spec = job.spec
        old_commit = self.store.local_commit(spec) if job.mode == "update" else None
        manifest = self.remote.resolve(spec, job.cancel)
        with self._lock:
            self._known_sizes[spec.repo_id] = manifest.total_bytes
            if manifest.commit:
                self._remote[spec.repo_id] = (manifest.commit, time.time())
        targets = self.store.targets(spec, manifest)
        job.bytes_total = manifest.total_bytes
        job.bytes_done = bytes_present(targets)
        # The space check comes before anything is written: a full disk leaves nothing behind.
        self._check_space(spec, manifest.total_bytes - job.bytes_done)
        self.store.save_manifest(spec, manifest)
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
        if old_commit and old_commit != manifest.commit:
            self._drop_old_revision(spec, old_commit, manifest)
        if spec.kind == "align":
            ensure_punkt(self.settings)  # whisperx.align needs it; never a surprise download later

    def _drop_old_revision(self, spec: ModelSpec, old_commit: str, manifest: Any) -> None:
        """Remove the superseded snapshot and its unshared blobs, unless something has it loaded."""
        if any(self.in_use(twin) for twin in self.catalog.twins(spec)):
            log.info("%s: the old revision %s stays until the model is unloaded", spec.id, old_commit)
            return
        freed = self.store.remove_revision(spec, old_commit, keep=manifest)
        log.info("%s: removed revision %s (%d bytes freed)", spec.id, old_commit, freed)

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
        for twin in self.catalog.twins(job.spec):  # aliases share the job: every row moves together
            self.bus.publish("model_progress", self._progress_event(twin, job))
