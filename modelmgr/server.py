"""The app factory and the uvicorn server that ends SSE streams before draining.

``create_app`` declares the API first and mounts Gradio at ``/`` last (the
mount is a catch-all). Gradio is imported only when the UI is wanted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI

from .api import install_api
from .rootpath import RootPath
from .security import install_security
from .services import Services
from .settings import Settings

log = logging.getLogger(__name__)


def create_api_app(services: Services) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services.bus.bind(asyncio.get_running_loop())
        services.sizes.start()  # model sizes from the hub, in the background
        if services.settings.resume_on_start:
            await asyncio.to_thread(services.downloads.resume_interrupted)
        services.downloads.start_update_checker()  # daily, in the background; never when offline
        await asyncio.to_thread(services.transcriptions.start)  # re-queues jobs a restart interrupted
        yield
        services.shutdown()

    app = FastAPI(title="WhisperX Studio", version="1", lifespan=lifespan)
    app.state.services = services
    install_api(app, services)
    install_security(app, services.settings)  # outermost: Host, Origin and token for every route
    return app


def create_app(settings: Settings, *, ui: bool = True) -> FastAPI:
    services = Services.build(settings)
    app = create_api_app(services)
    if ui:
        import gradio as gr

        from .ui import build_ui

        # No Gradio auth: the security middleware guards the UI with the same token (a sign-in
        # page, ?token= links and a session cookie), so API and UI share one login.
        app = gr.mount_gradio_app(
            app,
            build_ui(services),
            path="/",
            root_path=settings.root_path or None,  # Gradio's links then carry the prefix
            max_file_size=settings.max_upload_bytes,  # Gradio refuses larger audio while it streams
        )
        app.state.services = services
    if settings.root_path:
        app.add_middleware(RootPath, root_path=settings.root_path)
    return app


class StudioServer(uvicorn.Server):
    """uvicorn waits for open connections before it stops; SSE streams never end
    on their own, so they are told to end first and shutdown stays prompt."""

    async def shutdown(self, sockets=None) -> None:  # type: ignore[override]
        # config.app is the app create_app returned (loaded_app wraps it in middleware).
        services: Services | None = getattr(getattr(self.config.app, "state", None), "services", None)
        if services is not None:
            services.bus.close()
        await super().shutdown(sockets=sockets)
