"""The app factory and the uvicorn server that ends SSE streams before draining.

``create_app`` declares the API first and mounts Gradio at ``/`` last (the
mount is a catch-all). Gradio is imported only when the UI is wanted.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI

from .api import install_api
from .services import Services
from .settings import Settings

log = logging.getLogger(__name__)


def create_api_app(services: Services) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services.bus.bind(asyncio.get_running_loop())
        if services.settings.resume_on_start:
            await asyncio.to_thread(services.downloads.resume_interrupted)
        await asyncio.to_thread(services.transcriptions.start)  # re-queues jobs a restart interrupted
        yield
        services.shutdown()

    app = FastAPI(title="WhisperX Studio", version="1", lifespan=lifespan)
    app.state.services = services
    install_api(app, services)
    return app


def create_app(settings: Settings, *, ui: bool = True) -> FastAPI:
    services = Services.build(settings)
    app = create_api_app(services)
    if ui:
        import gradio as gr

        from .ui import build_ui

        app = gr.mount_gradio_app(
            app,
            build_ui(services),
            path="/",
            auth=_ui_auth(settings),
            auth_message="Sign in with any user name and the studio's auth token as the password.",
            max_file_size=settings.max_upload_bytes,  # Gradio refuses larger audio while it streams
        )
        app.state.services = services
    return app


def _ui_auth(settings: Settings) -> Callable[[str, str], bool] | None:
    """With an auth token, the UI asks for it too (Gradio's login page), not only the API."""
    if settings.auth_token is None:
        return None
    token = settings.auth_token.get_secret_value().encode()
    return lambda _user, password: secrets.compare_digest(password.encode(), token)


class StudioServer(uvicorn.Server):
    """uvicorn waits for open connections before it stops; SSE streams never end
    on their own, so they are told to end first and shutdown stays prompt."""

    async def shutdown(self, sockets=None) -> None:  # type: ignore[override]
        # config.app is the app create_app returned (loaded_app wraps it in middleware).
        services: Services | None = getattr(getattr(self.config.app, "state", None), "services", None)
        if services is not None:
            services.bus.close()
        await super().shutdown(sockets=sockets)
