"""Verify and delete: the work on a model that is already on disk.

**Verify** re-hashes a model in a worker thread (status ``verifying``); a bad file is removed
so the model shows ``corrupt`` and a download re-fetches only that file. Its verdict
(``manifests.verify_verdict``) says how much was checked: a file without a digest (a mirror that
sent none) is compared by size only, and the verdict never calls that verified. It is a job in the
registry like a download, so the two exclude each other, but it takes no download slot.
**Delete** is refused here, not in the API, while the repository has a job or any of its
aliases is in use (``in_use``), so the CLI is covered too.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from modelmgr.core.catalog import Catalog, ModelSpec
from modelmgr.core.errors import Cancelled, InvalidInput, ModelBusy, ModelInUse, ModelMgrError
from modelmgr.core.settings import Settings
from modelmgr.models.downloads.jobs import Job
from modelmgr.models.downloads.progress import ProgressView
from modelmgr.models.downloads.registry import JobRegistry
from modelmgr.models.downloads.updates import UpdateChecker
from modelmgr.models.manifests import verify_verdict
from modelmgr.models.remote import Remote
from modelmgr.models.store import Store

log = logging.getLogger(__name__)


class Maintenance:
    """Verify jobs (request and thread) and deletes."""

    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        store: Store,
        remote: Remote,
        registry: JobRegistry,
        view: ProgressView,
        updates: UpdateChecker,
        in_use: Callable[[ModelSpec], bool],
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.store = store
        self.remote = remote
        self.registry = registry
        self.view = view
        self.updates = updates
        self.in_use = in_use  # "is this model loaded or leased?": then it is not deleted

    def verify(self, model_id: str) -> Job:
        """Re-hash a model's files in a worker thread; returns the job (status ``verifying``)."""
        spec = self.catalog.get(model_id)
        if self.store.local_state(spec).status == "not_downloaded":
            raise InvalidInput(f"{spec.id} is not downloaded: there is nothing to verify")
        registry = self.registry
        with registry.lock:
            existing = registry.jobs.get(spec.repo_id)
            if existing is not None:
                if existing.mode == "verify":
                    return existing
                raise ModelBusy(f"{spec.id} is downloading; verify it when that ends")
            registry.refuse_while_deleting(spec)
            job = Job(spec, mode="verify", status="verifying")
            registry.register(job)
        thread = threading.Thread(target=self._run_verify, args=(job,), name=f"verify:{spec.id}", daemon=True)
        with registry.lock:
            registry.threads.add(thread)
        self.view.publish(job)
        thread.start()
        return job

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
                self.view.advance(job, nbytes)

            problems = self.store.verify(spec, on_progress=advance, remove_bad=True)
            result, message = verify_verdict(manifest, problems)
            job.verdict = {"result": result, "message": message}
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
            with self.registry.lock:
                self.registry.finish(job)
            job.done.set()
            self.view.publish(job)
            log.info("verify of %s ended: %s", spec.id, job.status)

    def delete(self, model_id: str) -> int:
        """Remove a model's files; refused while its repository is busy or any alias is in use."""
        spec = self.catalog.get(model_id)
        for twin in self.catalog.twins(spec):
            if self.in_use(twin):
                raise ModelInUse(f"{twin.id} is loaded or in use; clear the preload cache first")
        self.registry.begin_delete(spec)
        try:
            freed = self.store.delete(spec)
        finally:
            # The hub commit is forgotten before the delete ends: a download started after
            # it records the commit it fetched, and that record is kept.
            self.updates.forget(spec.repo_id)
            self.registry.end_delete(spec.repo_id)
        self.view.publish_disk(spec)
        return freed
