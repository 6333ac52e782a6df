"""Start the studio: ``whisperx-studio`` or ``uv run app.py [--host H] [--port P] [--root-path P]``."""

from __future__ import annotations

import argparse
import logging

import uvicorn

from .server import StudioServer, create_app
from .settings import Settings
from .share import share_in_background


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="whisperx-studio", description="WhisperX transcription studio")
    parser.add_argument("--host", help="interface to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default 7860)")
    parser.add_argument("--auth-token", help="require this token on the API (Authorization: Bearer ...)")
    parser.add_argument(
        "--root-path", help="public path prefix behind a proxy, e.g. /studio (MODELMGR_ROOT_PATH)"
    )
    parser.add_argument("--no-ui", action="store_true", help="serve the API only (fast start-up)")
    parser.add_argument("--share", action="store_true", help="also open a Gradio share link")
    return parser.parse_args(argv)


def uvicorn_config(app: object, settings: Settings, **kwargs: object) -> uvicorn.Config:
    """uvicorn trusts X-Forwarded-Proto/-For only from ``settings.forwarded_allow_ips`` (loopback)."""
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
        timeout_graceful_shutdown=5,
        **kwargs,
    )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    overrides = {
        k: v
        for k, v in {
            "host": args.host,
            "port": args.port,
            "auth_token": args.auth_token,
            "root_path": args.root_path,
        }.items()
        if v
    }
    settings = Settings(**overrides)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(settings, ui=not args.no_ui)
    config = uvicorn_config(app, settings)
    if args.share:
        if settings.auth_token is None:
            logging.warning(
                "--share without --auth-token: anyone with the link can download and delete models"
            )
        share_in_background(settings.host, settings.port)
    StudioServer(config).run()
