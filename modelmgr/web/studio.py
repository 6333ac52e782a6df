"""Start the studio: ``whisperx-studio`` or ``uv run app.py [--host H] [--port P] [--root-path P]``."""

from __future__ import annotations

import argparse
import logging
import sys

import uvicorn

from modelmgr.core.errors import QueueUnavailable
from modelmgr.core.settings import Settings
from modelmgr.web.security import is_loopback, print_open_url, resolve_token
from modelmgr.web.server import StudioServer, create_app
from modelmgr.web.share import share_in_background
from modelmgr.web.state_lock import StateFolderBusy, claim_state_folder


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="whisperx-studio", description="WhisperX transcription studio")
    parser.add_argument("--host", help="interface to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default 7860)")
    parser.add_argument(
        "--auth-token",
        help="require this token (visible in `ps`: prefer MODELMGR_AUTH_TOKEN or MODELMGR_AUTH_TOKEN_FILE)",
    )
    parser.add_argument(
        "--root-path", help="public path prefix behind a proxy, e.g. /studio (MODELMGR_ROOT_PATH)"
    )
    parser.add_argument("--no-ui", action="store_true", help="serve the API only (fast start-up)")
    parser.add_argument("--share", action="store_true", help="also open a Gradio share link")
    parser.add_argument(
        "--redis-url", help="distributed mode: send jobs to Celery workers through this Redis"
    )
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
            "redis_url": args.redis_url,
        }.items()
        if v
    }
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for chatty in ("httpx", "httpx2", "huggingface_hub"):  # one INFO line per HTTP request drowns the log
        logging.getLogger(chatty).setLevel(logging.WARNING)
    if args.auth_token:
        logging.warning(
            "--auth-token shows the token to every user of this machine (ps); "
            "prefer MODELMGR_AUTH_TOKEN or MODELMGR_AUTH_TOKEN_FILE"
        )
    # Beyond loopback, or with --share, a token is required: one is generated when none is set.
    settings = Settings(**overrides)
    settings, generated = resolve_token(settings, exposed=args.share or not is_loopback(settings.host))
    # Embedded mode: this process owns its job folder (replicas of a cluster share theirs on purpose).
    try:
        folder_lock = None if settings.redis_url else claim_state_folder(settings)
    except StateFolderBusy as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        raise SystemExit(2) from None
    try:
        app = create_app(settings, ui=not args.no_ui)
    except QueueUnavailable as exc:  # distributed mode without Redis: refuse rather than half-work
        raise SystemExit(f"error: {exc.message}") from None
    config = uvicorn_config(app, settings)
    print_open_url(settings, generated=generated)
    if args.share:
        share_in_background(settings.host, settings.port)
    StudioServer(config).run()
    if folder_lock is not None:
        folder_lock.release()
