"""Has the hub moved on? The last commit seen per repository, and the background check.

A model's ``update_available`` compares the commit on disk with the last one the hub named,
either during a download (the resolve) or in an explicit check. Asking the hub is slow and
may fail, so answers are remembered and the background checker asks at most once per
``update_check_interval_s`` per repository, and never offline. Fetching the update itself is
an ordinary download job in mode ``update`` (see the manager).
"""

from __future__ import annotations

import logging
import threading
import time

from modelmgr.core.catalog import Catalog, ModelSpec
from modelmgr.core.errors import ModelMgrError
from modelmgr.core.settings import Settings
from modelmgr.models.remote import Remote
from modelmgr.models.store import Store

log = logging.getLogger(__name__)

UPDATE_CHECK_FIRST_DELAY_S = 60.0  # the first background check waits: start-up stays quiet


class UpdateChecker:
    """Hub commits by repository, and the thread that refreshes them."""

    def __init__(self, settings: Settings, catalog: Catalog, store: Store, remote: Remote) -> None:
        self.settings = settings
        self.catalog = catalog
        self.store = store
        self.remote = remote
        # _lock guards _commits only; it is never held for I/O. No job state depends on a
        # commit, so this lock is never taken together with JobRegistry.lock.
        self._lock = threading.Lock()
        self._commits: dict[str, tuple[str, float]] = {}  # repo id -> (hub commit, when checked)
        self._stop = threading.Event()  # ends the background update checker

    def remember(self, repo_id: str, commit: str) -> None:
        with self._lock:
            self._commits[repo_id] = (commit, time.time())

    def forget(self, repo_id: str) -> None:
        with self._lock:
            self._commits.pop(repo_id, None)

    def available(self, spec: ModelSpec) -> bool | None:
        with self._lock:
            known = self._commits.get(spec.repo_id)
        if known is None:
            return None
        local = self.store.local_commit(spec)
        return local is not None and local != known[0]

    def check(self, model_id: str, *, max_age_s: float = 0.0) -> bool | None:
        """Ask the hub whether the model's revision moved (None: unknown, e.g. offline)."""
        spec = self.catalog.get(model_id)
        if spec.source != "hf" or self.settings.offline:
            return None
        with self._lock:
            known = self._commits.get(spec.repo_id)
        if known is None or time.time() - known[1] > max_age_s:
            commit = self.remote.head_commit(spec)
            if commit is None:
                return None
            self.remember(spec.repo_id, commit)
        return self.available(spec)

    def check_due(self) -> list[str]:
        """The background check (at most once a day per repository, never offline)."""
        if self.settings.offline:
            return []
        moved = []
        for spec in self.catalog.all():
            if spec.source != "hf" or self.store.local_state(spec).status != "downloaded":
                continue
            try:
                if self.check(spec.id, max_age_s=self.settings.update_check_interval_s):
                    moved.append(spec.id)
            except ModelMgrError as exc:
                log.info("update check of %s skipped: %s", spec.id, exc.message)
                return moved  # the hub is not answering: try again next time
        return moved

    def start(self, first_delay_s: float = UPDATE_CHECK_FIRST_DELAY_S) -> threading.Thread | None:
        """Check for newer commits in the background, at most once per interval; never offline."""
        interval = self.settings.update_check_interval_s
        if self.settings.offline or interval <= 0:
            return None

        def loop() -> None:
            delay = first_delay_s
            while not self._stop.wait(delay):
                moved = self.check_due()
                if moved:
                    log.info("updates available on the hub: %s", ", ".join(moved))
                delay = interval

        thread = threading.Thread(target=loop, name="update-checker", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._stop.set()
