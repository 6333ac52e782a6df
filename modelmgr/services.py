"""The managers of one app, built once from Settings and shared by API, UI and CLI."""

from __future__ import annotations

from dataclasses import dataclass

from .catalog import Catalog
from .downloads import DownloadManager
from .events import EventBus
from .preload import PreloadManager
from .remote import Remote
from .settings import Settings
from .store import Store


@dataclass
class Services:
    settings: Settings
    catalog: Catalog
    store: Store
    bus: EventBus
    downloads: DownloadManager
    preload: PreloadManager

    @classmethod
    def build(cls, settings: Settings) -> Services:
        catalog = Catalog(settings)
        store = Store(settings)
        bus = EventBus(replay=settings.event_replay, queue_size=settings.subscriber_queue)
        downloads = DownloadManager(settings, catalog, store, Remote(settings), bus)
        preload = PreloadManager(settings, catalog, store, downloads, bus)
        # Delete asks the preload manager whether a model is loaded (API, UI and CLI alike).
        downloads.in_use = lambda spec: preload.is_loaded(spec.id)
        return cls(settings, catalog, store, bus, downloads, preload)

    def snapshot(self) -> dict:
        """Everything a client needs to draw the model manager from scratch."""
        return {"models": self.downloads.snapshot(), "preload": self.preload.status()}

    def shutdown(self) -> None:
        self.downloads.shutdown()  # first: no queued job starts once shutdown has begun
        self.bus.close()
