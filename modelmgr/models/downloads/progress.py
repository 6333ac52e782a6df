"""What a model looks like to the API, the UI and the CLI, and how its progress is published.

``describe`` overlays the disk state with the job in flight (or the last one, to show its
error, or a verify's verdict). ``integrity`` says what a verify can check (the manifest's
digests: ``digest``, ``mixed``, ``size-only``; None before there is a manifest). Progress is
counted by the worker and published at most every ``progress_interval_s`` per model; status
changes are always published. Aliases share their repository's job, so every catalog row of
that repository moves together. Publishing happens outside every lock: a slow subscriber
never holds up the registry.
"""

from __future__ import annotations

import time
from typing import Any

from modelmgr.core.catalog import Catalog, ModelSpec
from modelmgr.core.events import EventBus
from modelmgr.core.settings import Settings
from modelmgr.models.downloads.bundle import bundle_of, parts_of
from modelmgr.models.downloads.jobs import IN_FLIGHT, Job
from modelmgr.models.downloads.registry import JobRegistry
from modelmgr.models.downloads.updates import UpdateChecker
from modelmgr.models.sizes import SizeCatalog
from modelmgr.models.store import LocalState, Store


class ProgressView:
    """The ``Model`` objects of the API, and the ``model_progress`` events on the bus."""

    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        store: Store,
        bus: EventBus,
        registry: JobRegistry,
        updates: UpdateChecker,
        sizes: SizeCatalog | None,
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.store = store
        self.bus = bus
        self.registry = registry
        self.updates = updates
        self.sizes = sizes

    def job(self, model_id: str) -> Job | None:
        """The job in flight for a model's repository, else its last finished one."""
        return self.registry.current(self.catalog.get(model_id).repo_id)

    def describe(self, spec: ModelSpec) -> dict[str, Any]:
        """The API's ``Model`` object: disk state overlaid with the job in flight."""
        job = self.job(spec.id)  # before the disk: a job seen finished has already linked its files
        state = self.store.local_state(spec)
        if job is not None and job.status in IN_FLIGHT:
            status, progress, error, error_code = job.status, job.progress(), None, None
            if job.mode == "verify" and state.bytes_total:
                progress["bytes_total"] = progress["bytes_total"] or state.bytes_total
        elif state.status == "downloaded":
            total = state.bytes_total or state.bytes_present
            status, error, error_code = "downloaded", None, None
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
            error_code = job.error_code if failed and job.error else None
            total = state.bytes_total
            percent = round(100.0 * state.bytes_present / total, 1) if total else 0.0
            progress = {
                "bytes_done": state.bytes_present,
                "bytes_total": total,
                "percent": percent,
                "speed_bps": None,
                "eta_s": None,
            }
        aligns = bundle_of(self.catalog, self.settings, spec, job)
        parts = [p.id for p in parts_of(self.catalog, self.store, spec)]
        on_disk = state.status != "not_downloaded" or (job is not None and job.status in IN_FLIGHT)
        manifest = self.store.load_manifest(spec) if on_disk else None
        verified = job is not None and job.mode == "verify" and job.status not in IN_FLIGHT
        verdict = job.verdict if job is not None and verified else None
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
            "error_code": error_code,  # the error's stable code (auth_required, gated_repo, ...) if known
            "align_models": aligns,
            "parts": parts,  # a diarization pipeline: the models it runs (downloaded with it)
            "gated": spec.gated,  # the Hub asks for accepted conditions and a token (HF_TOKEN)
            "integrity": manifest.integrity if manifest else None,  # digest | mixed | size-only
            "verify": verdict,  # the last verify's {"result", "message"}, until the next job
            "revision": self.store.local_commit(spec) if state.status == "downloaded" else None,
            "update_available": self.updates.available(spec) if state.status == "downloaded" else None,
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

    def advance(self, job: Job, nbytes: int) -> None:
        """Called by the transfer for every chunk; publishes at a bounded rate."""
        job.bytes_done += nbytes
        now = time.monotonic()
        job.speed_bps = job.meter.update(now, job.bytes_done)
        if now - job.last_publish >= self.settings.progress_interval_s:
            self.publish(job)

    def publish(self, job: Job) -> None:
        job.last_publish = time.monotonic()
        self._publish_rows(job.spec, job)

    def publish_disk(self, spec: ModelSpec) -> None:
        """Publish what the disk says now (after a delete: no job is left to speak for it)."""
        self._publish_rows(spec, None)

    def _publish_rows(self, spec: ModelSpec, job: Job | None) -> None:
        for twin in self.catalog.twins(spec):  # aliases share the job: every row moves together
            self.bus.publish("model_progress", self._event(twin, job))

    def _event(self, spec: ModelSpec, job: Job | None) -> dict[str, Any]:
        if job is None:
            return {
                "model": spec.id,
                "repo_id": spec.repo_id,
                **{
                    k: v
                    for k, v in self.describe(spec).items()
                    if k in ("status", "progress", "error", "error_code")
                },
            }
        return {
            "model": spec.id,
            "repo_id": spec.repo_id,
            "status": job.status,
            "progress": job.progress(),
            "error": job.error,
            "error_code": job.error_code if job.error else None,
        }
