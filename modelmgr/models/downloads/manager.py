"""DownloadManager: the one door to downloads, built from small parts of one concern each.

The API, the UI, the CLI, the preload and the transcription managers all call this class, so
its methods and attributes are the package's public surface. It decides nothing that a part
decides: it takes a request through the registry (one job per repository) and the scheduler
(per-kind limits), and hands the rest on: the worker runs a download, ``Maintenance`` verifies
and deletes, ``ProgressView`` describes and publishes, ``UpdateChecker`` knows the hub's
commits, ``bundle`` says which alignment models come along. The parts are owned (composition,
no mixins). Job state has one lock, ``JobRegistry.lock``, shared by the registry, the scheduler,
the worker and ``Maintenance``; ``UpdateChecker`` guards its commit cache with its own. Neither
is ever held for I/O, publishing, callbacks or thread joins.

``start`` is check -> lock -> check again -> register -> start a thread. A second caller (50
at once, a double click, a preload, or an alias such as ``large`` for ``large-v3``) gets the
existing job; there is never a second transfer of the same files.

A gated model (or a pipeline whose gated part is missing) is checked before it is registered
(``access``): without a token, or with one the hub refuses, the request itself answers
``auth_required`` / ``gated_repo``, and the refusal shows on the model like any failure.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from modelmgr.core.catalog import Catalog, ModelSpec
from modelmgr.core.errors import (
    DiskFull,
    ModelBusy,
    ModelMgrError,
    NotDownloading,
)
from modelmgr.core.events import EventBus
from modelmgr.core.settings import Settings
from modelmgr.models.downloads.access import refuse_gated
from modelmgr.models.downloads.bundle import missing_aligns, missing_parts, start_bundle
from modelmgr.models.downloads.jobs import Job, StartResult
from modelmgr.models.downloads.maintenance import Maintenance
from modelmgr.models.downloads.progress import ProgressView
from modelmgr.models.downloads.registry import JobRegistry
from modelmgr.models.downloads.revisions import RevisionCollector
from modelmgr.models.downloads.scheduler import Scheduler
from modelmgr.models.downloads.updates import UPDATE_CHECK_FIRST_DELAY_S, UpdateChecker
from modelmgr.models.downloads.worker import DownloadWorker
from modelmgr.models.remote import Remote
from modelmgr.models.sizes import SizeCatalog
from modelmgr.models.store import Store

log = logging.getLogger(__name__)


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
        self._settings = settings  # see the settings property: every part reads the same one
        self.sizes = sizes
        self.catalog = catalog
        self.store = store
        self.remote = remote
        self.bus = bus
        self.limits = {
            "whisper": settings.max_whisper_downloads,
            "align": settings.max_align_downloads,
        }
        # "Is this model loaded or leased?" Injected by Services (the preload manager knows).
        self.in_use: Callable[[ModelSpec], bool] = lambda spec: False
        # "Does a running job hold this model?" Injected by Services too (leases only, not loads).
        self.leased: Callable[[ModelSpec], bool] = lambda spec: False
        self.revisions = RevisionCollector(store, catalog, bus, lambda spec: self.leased(spec))
        self.registry = JobRegistry()  # its lock guards the jobs and the scheduler's queues
        self.scheduler = Scheduler(self.limits)
        self.updates = UpdateChecker(settings, catalog, store, remote)
        self.view = ProgressView(settings, catalog, store, bus, self.registry, self.updates, sizes)
        self.worker = DownloadWorker(
            settings,
            catalog,
            store,
            remote,
            self.registry,
            self.scheduler,
            self.view,
            self.updates,
            self._in_use,
            self._start_bundle,
            self.revisions,
        )
        self.maintenance = Maintenance(
            settings, catalog, store, remote, self.registry, self.view, self.updates, self._in_use
        )

    @property
    def settings(self) -> Settings:
        return self._settings

    @settings.setter
    def settings(self, settings: Settings) -> None:
        """Replacing the settings reaches every part at once (the limits stay those of the start)."""
        self._settings = settings
        for part in (self.updates, self.view, self.worker, self.maintenance):
            part.settings = settings

    @property
    def transfers_started(self) -> int:
        """Worker threads ever started; read by tests and benchmarks."""
        return self.worker.started

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
        if self.scheduler.stopping:
            raise ModelBusy("the server is shutting down; no new download starts")
        existing = self.registry.jobs.get(spec.repo_id)  # first check: no lock, the common double-click case
        if existing is not None and existing.mode != "verify":
            return StartResult("already_downloading", existing)
        # Disk checks happen outside the lock; the second check below makes the decision.
        state = self.store.local_state(spec)
        local = state.status
        aligns = missing_aligns(self.catalog, self.store, spec, languages)
        if spec.is_diarizer:  # a pipeline always brings its models (whatever with_align says)
            aligns = missing_parts(self.catalog, self.store, spec)
        if local != "downloaded":
            try:
                self.worker.check_space_up_front(spec, state)
            except DiskFull as exc:  # answered at once (507), and shown on the model like any failure
                self._record_failure(spec, exc)
                raise
        self._check_gated(spec, local, aligns)
        with self.registry.lock:
            self.registry.refuse_while_deleting(spec)
            existing = self.registry.jobs.get(spec.repo_id)  # second check, under the lock
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
            to_spawn = self.scheduler.ready()
        if self._launch(result.job, to_spawn):
            result = StartResult("started", result.job)
        if local == "downloaded":
            self._start_bundle(aligns)  # the Whisper model is here; bring its alignment models
        return result

    def check_access(self, model_id: str) -> None:
        """Refuse now what a download of ``model_id`` (with the models it brings) would be refused:
        ``AuthRequired``, ``GatedRepo`` or ``TokenUnreadable``. Starts nothing; a job that will
        need the model asks this before it is queued."""
        spec = self.catalog.get(model_id)
        local = self.store.local_state(spec).status
        brought = missing_parts(self.catalog, self.store, spec) if spec.is_diarizer else []
        self._check_gated(spec, local, brought)

    def _check_gated(self, spec: ModelSpec, local: str, brought: list[str]) -> None:
        refuse_gated(self.remote, self.catalog, spec, local, brought, self._record_failure)

    def update(self, model_id: str) -> StartResult:
        """Bring a downloaded model to the hub's current commit, fetching changed files only."""
        spec = self.catalog.get(model_id)
        if self.scheduler.stopping:
            raise ModelBusy("the server is shutting down; no new download starts")
        with self.registry.lock:
            self.registry.refuse_while_deleting(spec)
            existing = self.registry.jobs.get(spec.repo_id)
            if existing is not None:
                if existing.mode == "verify":
                    raise ModelBusy(f"{spec.id} is being verified; update it when that ends")
                return StartResult("already_downloading", existing)
            job = Job(spec, mode="update")
            self._register(job)
            to_spawn = self.scheduler.ready()
        return StartResult("started" if self._launch(job, to_spawn) else "queued", job)

    def verify(self, model_id: str) -> Job:
        """Re-hash a model's files in a worker thread; returns the job (status ``verifying``)."""
        return self.maintenance.verify(model_id)

    def delete(self, model_id: str) -> int:
        """Remove a model's files; refused while its repository is busy or any alias is in use."""
        return self.maintenance.delete(model_id)

    def cancel(self, model_id: str) -> Job:
        spec = self.catalog.get(model_id)
        with self.registry.lock:
            job = self.registry.jobs.get(spec.repo_id)
            if job is None:
                raise NotDownloading(f"{spec.id} is not downloading")
            job.cancel.set()
            was_waiting = self.scheduler.withdraw(job)
            if was_waiting:
                job.status = "cancelled"
                self.registry.retire(job)
        if was_waiting:
            job.done.set()
            self.view.publish(job)
        log.info("cancel requested for %s", spec.id)
        return job

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
                try:
                    self.start(spec.id, with_align=False)
                except ModelMgrError as exc:  # e.g. a gated model and no token any more: the rest go on
                    log.warning("the interrupted download of %s was not resumed: %s", spec.id, exc.message)
                    continue
                resumed.append(spec.id)
        return resumed

    def shutdown(self, timeout_s: float = 5.0) -> None:
        """Stop everything in flight, keeping partial files, and wait briefly for the workers."""
        self.updates.stop()
        with self.registry.lock:
            self.scheduler.stopping = True  # under the lock: the scheduler starts nothing from now on
            jobs = list(self.registry.jobs.values())
            threads = list(self.registry.threads)
        for job in jobs:
            job.cancel.set()
        deadline = time.monotonic() + timeout_s
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    # --- hub commits ---
    def check_update(self, model_id: str, *, max_age_s: float = 0.0) -> bool | None:
        """Ask the hub whether the model's revision moved (None: unknown, e.g. offline)."""
        return self.updates.check(model_id, max_age_s=max_age_s)

    def check_updates_due(self) -> list[str]:
        """The background check (at most once a day per repository, never offline)."""
        return self.updates.check_due()

    def start_update_checker(
        self, first_delay_s: float = UPDATE_CHECK_FIRST_DELAY_S
    ) -> threading.Thread | None:
        """Check for newer commits in the background, at most once per interval; never offline."""
        return self.updates.start(first_delay_s)

    # --- views ---
    def job(self, model_id: str) -> Job | None:
        """The job in flight for a model's repository, else its last finished one."""
        return self.view.job(model_id)

    def describe(self, spec: ModelSpec) -> dict[str, Any]:
        """The API's ``Model`` object: disk state overlaid with the job in flight."""
        return self.view.describe(spec)

    def snapshot(self) -> list[dict[str, Any]]:
        return self.view.snapshot()

    # --- internals ---
    def _register(self, job: Job) -> None:
        """A new download or update job: in the registry and in its queue. Caller holds the lock."""
        self.registry.register(job)
        self.scheduler.enqueue(job)

    def _launch(self, job: Job | None, to_spawn: list[Job]) -> bool:
        """After the lock: publish ``job`` if it waits, start the threads; True if ``job`` started."""
        started = job is not None and job in to_spawn
        if job is not None and not started:
            self.view.publish(job)
        self.worker.spawn(to_spawn)
        return started

    def _record_failure(self, spec: ModelSpec, exc: ModelMgrError) -> None:
        """Show a refusal on the model (UI row, snapshot, SSE) as the outcome of a job that never ran."""
        job = Job(spec, status="error", error=exc.message, error_code=exc.code)
        job.done.set()
        if self.registry.record_failure(job):
            self.view.publish(job)

    def _in_use(self, spec: ModelSpec) -> bool:
        return self.in_use(spec)  # read at call time: Services sets in_use after construction

    def _start_bundle(self, align_ids: Iterable[str]) -> None:
        start_bundle(self.start, align_ids)
