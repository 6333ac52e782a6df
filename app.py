"""Start the studio: `uv run app.py [--host H] [--port P] [--auth-token T] [--no-ui] [--share]`."""

from __future__ import annotations

import argparse
import logging

import uvicorn

from modelmgr.errors import QueueUnavailable
from modelmgr.server import StudioServer, create_app
from modelmgr.settings import Settings
from modelmgr.share import share_in_background


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="WhisperX transcription studio")
    parser.add_argument("--host", help="interface to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default 7860)")
    parser.add_argument("--auth-token", help="require this token on the API (Authorization: Bearer ...)")
    parser.add_argument("--no-ui", action="store_true", help="serve the API only (fast start-up)")
    parser.add_argument("--share", action="store_true", help="also open a Gradio share link")
    parser.add_argument(
        "--redis-url", help="distributed mode: send jobs to Celery workers through this Redis"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    overrides = {
        k: v
        for k, v in {
            "host": args.host,
            "port": args.port,
            "auth_token": args.auth_token,
            "redis_url": args.redis_url,
        }.items()
        if v
    }
    settings = Settings(**overrides)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        app = create_app(settings, ui=not args.no_ui)
    except QueueUnavailable as exc:  # distributed mode without Redis: refuse rather than half-work
        raise SystemExit(f"error: {exc.message}") from None
    config = uvicorn.Config(app, host=settings.host, port=settings.port, timeout_graceful_shutdown=5)
    if args.share:
        if settings.auth_token is None:
            logging.warning(
                "--share without --auth-token: anyone with the link can download and delete models"
            )
        share_in_background(settings.host, settings.port)
    StudioServer(config).run()


if __name__ == "__main__":
    main()
