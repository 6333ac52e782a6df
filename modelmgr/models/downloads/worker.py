"""The thread of one download (or update) job: resolve, check space, fetch, link, hand on.

Bytes are moved by ``transfer.fetch``; what a model consists of comes from
``remote.Remote``; what is on disk from ``store.Store``. The worker turns every way a
download can end into a status a person can read (a full disk is named, not a traceback),
keeps partial files when the server is shutting down so the next start resumes them, and
as it ends frees its slot, starts whatever the scheduler lets in next and then the
alignment models bundled with it. An update fetches a newer commit's changed blobs only
(blobs are named by hash), moves ``refs/main`` and drops the old revision once unused.
"""

from __future__ import annotations

import errno
import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

from modelmgr.core.catalog import Catalog, ModelSpec
from modelmgr.core.errors import AuthRequired, Cancelled, DiskFull, GatedRepo, IntegrityError, ModelMgrError
from modelmgr.core.settings import Settings
from modelmgr.models.downloads.bundle import missing_parts
from modelmgr.models.downloads.jobs import Job
from modelmgr.models.downloads.progress import ProgressView
from modelmgr.models.downloads.registry import JobRegistry
from modelmgr.models.downloads.revisions import RevisionCollector
from modelmgr.models.downloads.scheduler import Scheduler
from modelmgr.models.downloads.updates import UpdateChecker
from modelmgr.models.nltk_data import ensure_punkt
from modelmgr.models.remote import Remote
from modelmgr.models.store import LocalState, Store
from modelmgr.models.transfer import bytes_present, fetch

log = logging.getLogger(__name__)


class DownloadWorker:
    """Starts download threads and runs each job to its end."""

    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        store: Store,
        remote: Remote,
        registry: JobRegistry,
        scheduler: Scheduler,
        view: ProgressView,
        updates: UpdateChecker,
        in_use: Callable[[ModelSpec], bool],
        start_bundle: Callable[[Iterable[str]], None],
        revisions: RevisionCollector,
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.store = store
        self.remote = remote
        self.registry = registry
        self.scheduler = scheduler
        self.view = view
        self.updates = updates
        self.in_use = in_use  # "is this model loaded or leased?"
        self.revisions = revisions  # superseded revisions: removed now, or when the last job ends
        self.start_bundle = start_bundle  # the manager's start, for the bundled alignment models
        # Both guarded by JobRegistry.lock (known_sizes is read without it by the up-front check).
        self.started = 0  # worker threads ever started
        self.known_sizes: dict[str, int] = {}  # repo id -> total bytes at the last resolve (507 up front)

    def spawn(self, jobs: list[Job]) -> None:
        """Start a thread for each job the scheduler let in. Caller does not hold the lock."""
        for job in jobs:
            thread = threading.Thread(
                target=self._run, args=(job,), name=f"download:{job.spec.id}", daemon=True
            )
            with self.registry.lock:
                self.registry.threads.add(thread)
                self.started += 1
            log.info("download thread started for %s", job.spec.id)
            thread.start()

    def check_space_up_front(self, spec: ModelSpec, state: LocalState) -> None:
        """Answer 507 at once when the last known size does not fit (nothing is registered)."""
        total = state.bytes_total or self.known_sizes.get(spec.repo_id)
        if not total:
            return
        self._check_space(spec, total - state.bytes_present)

    def _check_space(self, spec: ModelSpec, needed: int) -> None:
        free = self.store.free_bytes()
        if needed > 0 and free - needed < self.settings.min_free_bytes:
            raise DiskFull(
                f"{spec.id} needs {needed / 1e6:.0f} MB but only {free / 1e6:.0f} MB are free "
                f"(keeping {self.settings.min_free_bytes / 1e6:.0f} MB in reserve): free some disk space "
                "or point HF_HUB_CACHE at a larger disk"
            )

    def _run(self, job: Job) -> None:
        spec = job.spec
        try:
            self.view.publish(job)
            self._transfer(job)
            job.status = "downloaded"
        except Cancelled:
            if not self.scheduler.stopping:  # a person cancelled: leave nothing behind
                self.store.remove_partials(spec)
            job.status = "cancelled"
        except ModelMgrError as exc:
            job.status, job.error, job.error_code = "error", exc.message, exc.code
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                log.exception("download of %s failed", spec.id)
                job.status, job.error = "error", f"unexpected error: {exc}"
            else:  # an expected fault: a named error, no traceback
                disk = DiskFull(f"the disk is full ({exc.strerror}): free some space and download again")
                job.status, job.error, job.error_code = "error", disk.message, disk.code
        except Exception as exc:  # a bug: keep the worker pool alive
            log.exception("download of %s failed", spec.id)
            job.status, job.error = "error", f"unexpected error: {exc}"
        finally:
            with self.registry.lock:
                self.registry.finish(job)
                self.scheduler.release(job)
                to_spawn = self.scheduler.ready()
            job.done.set()
            self.view.publish(job)
            self.spawn(to_spawn)
            log.info(
                "download of %s ended: %s%s",
                spec.id,
                job.status,
                f" ({job.error})" if job.error else "",
            )
        if job.status == "downloaded":
            self.start_bundle(job.bundle)

    def _transfer(self, job: Job) -> None:
        spec = job.spec
        old_commit = self.store.local_commit(spec) if job.mode == "update" else None
        manifest = self.remote.resolve(spec, job.cancel)
        with self.registry.lock:
            self.known_sizes[spec.repo_id] = manifest.total_bytes
        if manifest.commit:
            self.updates.remember(spec.repo_id, manifest.commit)
        targets = self.store.targets(spec, manifest)
        job.bytes_total = manifest.total_bytes
        job.bytes_done = bytes_present(targets)
        # The space check comes before anything is written: a full disk leaves nothing behind.
        self._check_space(spec, manifest.total_bytes - job.bytes_done)
        self.store.save_manifest(spec, manifest)
        self.view.publish(job)
        headers = self.remote.headers_for(spec) if spec.source == "hf" else {}  # never the HF token elsewhere
        try:
            fetch(
                targets,
                headers=headers,
                on_progress=lambda n: self.view.advance(job, n),
                cancel=job.cancel,
                retries=self.settings.download_retries,
                timeout_s=self.settings.download_timeout_s,
                connections=self.settings.download_connections,
                part_bytes=self.settings.download_part_bytes,
                stall_s=self.settings.stall_s,
            )
        except (AuthRequired, GatedRepo) as exc:  # a gated file: name the repo and what to do
            had_token = any(k.lower() == "authorization" for k in headers)
            status = 401 if isinstance(exc, AuthRequired) else 403
            raise self.remote.refusal(spec, status, [spec.repo_id], had_token) from None
        job.bytes_done = manifest.total_bytes  # files another process completed count as done
        job.status = "verifying"
        self.view.publish(job)
        self.store.link_snapshot(spec, manifest, spec.revision)
        if self.store.local_state(spec).status != "downloaded":
            raise IntegrityError(f"{spec.id}: files are missing after the download")
        if old_commit and old_commit != manifest.commit:
            self._drop_old_revision(spec, old_commit, manifest)
        if spec.kind == "align":
            ensure_punkt(self.settings)  # whisperx.align needs it; never a surprise download later
        if spec.is_diarizer:  # the models its config.yaml (now on disk) names come next
            job.bundle = tuple(missing_parts(self.catalog, self.store, spec))

    def _drop_old_revision(self, spec: ModelSpec, old_commit: str, manifest: Any) -> None:
        """Remove the superseded snapshot and its unshared blobs (later, if a job holds the model)."""
        self.revisions.drop(spec, old_commit, manifest)
