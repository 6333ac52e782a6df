"""Old revisions an update had to leave behind, removed once no job holds the model.

An update moves ``refs/main`` to the hub's new commit and removes the superseded snapshot and
the blobs only it used, as ``hf cache prune`` would. While a job's lease holds the model the
old files are left alone (the job started on that revision) and the removal is remembered
here; when the last lease ends (``collect``, called by the preload manager) it happens, and a
``revision_removed`` event says so. A model that is only loaded, with no job using it, does
not hold its files back: every loader reads its files fully into memory.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from modelmgr.core.catalog import Catalog, ModelSpec
from modelmgr.core.events import EventBus
from modelmgr.models.store import Manifest, Store

log = logging.getLogger(__name__)


class RevisionCollector:
    def __init__(
        self, store: Store, catalog: Catalog, bus: EventBus, leased: Callable[[ModelSpec], bool]
    ) -> None:
        self._store = store
        self._catalog = catalog
        self._bus = bus
        self._leased = leased  # "does a running job hold this model?", read at call time
        self._lock = threading.Lock()  # guards _pending (download threads add, job threads collect)
        self._pending: dict[tuple[str, str], tuple[ModelSpec, Manifest]] = {}  # (id, old commit) -> keep

    def drop(self, spec: ModelSpec, old_commit: str, keep: Manifest) -> bool:
        """Remove ``old_commit`` now, or once the model's last lease ends; True when removed now."""
        if self._busy(spec):
            with self._lock:
                self._pending[(spec.id, old_commit)] = (spec, keep)
            log.info("%s: the old revision %s stays until the job using it ends", spec.id, old_commit)
            return False
        self._remove(spec, old_commit, keep)
        return True

    def collect(self) -> list[str]:
        """Remove every remembered revision whose model no job holds now; returns ``id@commit`` of each."""
        with self._lock:
            waiting = list(self._pending.items())
        removed = []
        for (model_id, commit), (spec, keep) in waiting:
            if self._busy(spec):
                continue
            with self._lock:
                if self._pending.pop((model_id, commit), None) is None:
                    continue  # another thread collected it first
            self._remove(spec, commit, keep)
            removed.append(f"{model_id}@{commit}")
        return removed

    def pending(self) -> list[dict[str, str]]:
        with self._lock:
            return [{"model": model_id, "revision": commit} for model_id, commit in self._pending]

    def _busy(self, spec: ModelSpec) -> bool:
        return any(self._leased(twin) for twin in self._catalog.twins(spec))

    def _remove(self, spec: ModelSpec, commit: str, keep: Manifest) -> None:
        freed = self._store.remove_revision(spec, commit, keep=keep)
        log.info("%s: removed revision %s (%d bytes freed)", spec.id, commit, freed)
        self._bus.publish(
            "revision_removed",
            {"model": spec.id, "repo_id": spec.repo_id, "revision": commit, "freed_bytes": freed},
        )
