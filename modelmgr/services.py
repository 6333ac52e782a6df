"""The managers of one app, built once from Settings and shared by API, UI and CLI."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from modelmgr.asr.jobs import TranscriptionManager
from modelmgr.asr.manager import JobManager
from modelmgr.asr.preload import PreloadManager
from modelmgr.core.catalog import Catalog
from modelmgr.core.events import EventBus
from modelmgr.core.settings import Settings
from modelmgr.models.downloads import DownloadManager
from modelmgr.models.remote import Remote
from modelmgr.models.sizes import SizeCatalog
from modelmgr.models.store import Store


@dataclass
class Services:
    settings: Settings
    catalog: Catalog
    store: Store
    bus: EventBus
    downloads: DownloadManager
    preload: PreloadManager
    transcriptions: JobManager  # TranscriptionManager, or in distributed mode RemoteTranscriptionManager
    sizes: SizeCatalog

    @classmethod
    def build(
        cls,
        settings: Settings,
        *,
        bus: EventBus | None = None,
        transcriptions: Callable[..., JobManager] | None = None,
    ) -> Services:
        """The managers of one process. With ``settings.redis_url`` (distributed mode) jobs go to
        Celery workers (imported only then); a worker passes its own bus and manager."""
        catalog = Catalog(settings)
        store = Store(settings)
        bus = bus or EventBus(replay=settings.event_replay, queue_size=settings.subscriber_queue)
        remote = Remote(settings)
        sizes = SizeCatalog(settings, catalog, remote)
        downloads = DownloadManager(settings, catalog, store, remote, bus, sizes)
        preload = PreloadManager(settings, catalog, store, downloads, bus)
        if transcriptions is None and settings.redis_url:
            from modelmgr.distributed.jobs import RemoteTranscriptionManager

            transcriptions = RemoteTranscriptionManager
        factory: Callable[..., JobManager] = transcriptions or TranscriptionManager
        manager = factory(settings, catalog, downloads, preload, bus)
        # Delete asks the preload manager whether a model is loaded or leased (API, UI and CLI alike).
        downloads.in_use = lambda spec: preload.is_loaded(spec.id) or preload.in_use(spec.id)
        # An update's old revision waits for the jobs using it; the last lease's end collects it.
        downloads.leased = lambda spec: preload.in_use(spec.id)
        preload.on_leases_ended = downloads.revisions.collect
        return cls(settings, catalog, store, bus, downloads, preload, manager, sizes)

    @property
    def distributed(self) -> bool:
        return bool(self.settings.redis_url)

    def snapshot(self) -> dict:
        """Everything a client needs to draw the model manager from scratch."""
        return {
            "models": self.downloads.snapshot(),
            "preload": self.preload.status(),
            "transcriptions": self.transcriptions.snapshot(),
        }

    def shutdown(self) -> None:
        self.sizes.stop()
        self.bus.close()
        self.transcriptions.shutdown()  # its running job is left queued for the next start
        self.downloads.shutdown()  # from here on no queued download starts
