"""The app factory and the uvicorn server that ends SSE streams before draining.

``create_app`` declares the API first and mounts Gradio at ``/`` last (the
mount is a catch-all). Gradio is imported only when the UI is wanted.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from modelmgr.core.settings import Settings
from modelmgr.services import Services
from modelmgr.web.api.routes import install_api
from modelmgr.web.rootpath import RootPath
from modelmgr.web.security import install_security

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
        private_upload_folder(settings)
        import gradio as gr

        from modelmgr.web.ui.wiring import build_ui

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


def private_upload_folder(settings: Settings) -> Path | None:
    """Give this studio its own Gradio upload folder, before Gradio is imported.

    Gradio's default, ``/tmp/gradio``, is shared by every Gradio app on the host, and an app that
    stops deletes the files it cached there, including the same upload another studio (a second
    web replica, a second port) is still queueing. One folder per port keeps them apart; an
    explicit ``GRADIO_TEMP_DIR`` wins. Gradio reads the variable at import and on every upload, so
    it stays set for the process. None when it is too late (Gradio already imported).
    """
    if "GRADIO_TEMP_DIR" in os.environ:
        return Path(os.environ["GRADIO_TEMP_DIR"])
    if "gradio" in sys.modules:
        return None
    folder = Path(tempfile.gettempdir()) / f"whisperx-studio-uploads-{settings.port}"
    os.environ["GRADIO_TEMP_DIR"] = str(folder)
    return folder


class StudioServer(uvicorn.Server):
    """uvicorn waits for open connections before it stops; SSE streams never end
    on their own, so they are told to end first and shutdown stays prompt."""

    async def shutdown(self, sockets=None) -> None:  # type: ignore[override]
        # config.app is the app create_app returned (loaded_app wraps it in middleware).
        services: Services | None = getattr(getattr(self.config.app, "state", None), "services", None)
        if services is not None:
            services.bus.close()
        await super().shutdown(sockets=sockets)
