"""How big a model is before it is downloaded.

Three sources, best first, named in the API as ``size_source``:

* ``disk``: this cache's manifest or files (what was, or is being, fetched);
* ``hub``: the hub's metadata, the same file list a download would fetch,
  asked in a background thread once the server is up (never when offline),
  cached in ``state_dir/sizes.json`` and refreshed at most once a day;
* ``approximate``: ``approx_sizes.json``, so a user sees that ``large-v3`` is
  about 3 GB before anything has been asked.

The refresher stops at the first network fault and tries again later: a
server without internet only logs one line per attempt.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from functools import cache
from pathlib import Path
from typing import Any

from modelmgr.core.catalog import Catalog, ModelSpec
from modelmgr.core.errors import DownloadFailed, HubTimeout, HubUnreachable, ModelMgrError
from modelmgr.core.settings import Settings
from modelmgr.models.netfaults import is_transport_error, network_error
from modelmgr.models.remote import Remote

log = logging.getLogger(__name__)

APPROX_FILE = Path(__file__).with_name("approx_sizes.json")


@cache
def _approx_table() -> dict[str, Any]:
    return json.loads(APPROX_FILE.read_text(encoding="utf-8"))


def approximate_size(spec: ModelSpec) -> int | None:
    table = _approx_table()
    if spec.id in table["models"]:
        return int(table["models"][spec.id])
    if spec.kind == "align":
        name = spec.repo_id.lower()
        return next(int(size) for part, size in table["align_by_name"] if part in name)
    return None


class SizeCatalog:
    """Known download sizes per model id; ``refresh`` asks the hub, ``start`` does it in the background."""

    def __init__(self, settings: Settings, catalog: Catalog, remote: Remote) -> None:
        self.settings = settings
        self.catalog = catalog
        self.remote = remote
        self.path = settings.state_dir / "sizes.json"
        # _lock guards _hub and _fetched_at (read by API threads, written by the refresher).
        self._lock = threading.Lock()
        self._hub: dict[str, int] = {}
        self._fetched_at = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._load()

    # --- reading ---
    def size(self, spec: ModelSpec) -> tuple[int | None, str | None]:
        """(bytes, source) without looking at the disk: ``hub`` or ``approximate`` (or unknown)."""
        with self._lock:
            hub = self._hub.get(spec.id)
        if hub is not None:
            return hub, "hub"
        approx = approximate_size(spec)
        return (approx, "approximate") if approx is not None else (None, None)

    @property
    def fetched_at(self) -> float:
        with self._lock:
            return self._fetched_at

    def _load(self) -> None:
        try:
            raw = json.loads(self.path.read_text())
            if raw.get("endpoint") != self.settings.hf_endpoint:
                return  # another hub or mirror: its sizes may differ
            sizes = {str(k): int(v) for k, v in raw["sizes"].items()}
            fetched_at = float(raw["fetched_at"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return
        with self._lock:
            self._hub, self._fetched_at = sizes, fetched_at

    def _save(self) -> None:
        with self._lock:
            raw = {"endpoint": self.settings.hf_endpoint, "fetched_at": self._fetched_at, "sizes": self._hub}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(raw, indent=1, sort_keys=True))
        os.replace(tmp, self.path)  # atomic: readers never see half a file

    # --- refreshing ---
    def stale(self, now: float | None = None) -> bool:
        return (now or time.time()) - self.fetched_at >= self.settings.sizes_refresh_s

    def refresh(self) -> int:
        """Ask the hub for every model's size now; returns how many it answered.

        Raises ``HubUnreachable``/``HubTimeout`` when the hub cannot be reached, so the
        caller retries later; a repo the hub does not have keeps its approximate size.
        """
        found: dict[str, int] = {}
        for spec in self.catalog.all():
            if self._stop.is_set():
                break
            try:
                found[spec.id] = self.remote.resolve(spec, digests=False).total_bytes  # sizes: no HEADs
            except (HubUnreachable, HubTimeout):
                raise
            except Exception as exc:  # not found, gated, refused: keep what we had
                cause = exc.__cause__ if isinstance(exc, ModelMgrError) else exc
                if cause is not None and is_transport_error(cause):  # no network: stop, retry later
                    raise network_error(cause, self.settings.hf_endpoint) from exc
                log.debug("no hub size for %s: %s", spec.id, exc)
        with self._lock:
            self._hub.update(found)
            self._fetched_at = time.time()
        self._save()
        return len(found)

    def start(self) -> None:
        """Refresh in a daemon thread when the cache is stale; never when offline."""
        if self.settings.offline or not self.settings.fetch_sizes or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="model-sizes", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            wait = self.settings.sizes_refresh_s - (time.time() - self.fetched_at)
            if wait > 0:
                self._stop.wait(wait)
                continue
            try:
                count = self.refresh()
                log.info("model sizes from %s: %d models", self.settings.hf_endpoint, count)
            except DownloadFailed as exc:
                log.info("model sizes not fetched (%s); retrying later", exc.message)
                self._stop.wait(self.settings.sizes_retry_s)
            except Exception:  # a bug here must not end the thread silently nor take the server down
                log.exception("model sizes: refresh failed")
                self._stop.wait(self.settings.sizes_retry_s)

    def stop(self) -> None:
        self._stop.set()
