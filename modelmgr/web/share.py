"""``--share``: a Gradio share link for the whole local port (UI and API alike).

``gr.mount_gradio_app`` has no share option, so we open Gradio's tunnel to our
own uvicorn port once it listens. Without internet the tunnel fails: the app
keeps serving locally and says so in plain words.
"""

from __future__ import annotations

import logging
import secrets
import socket
import threading
import time

log = logging.getLogger(__name__)


def _wait_for_port(host: str, port: int, timeout_s: float = 120.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=1):
                return True
        except OSError:
            time.sleep(0.2)
    return False


def open_share_link(host: str, port: int) -> str | None:
    """Open the tunnel (blocking); returns the public URL or None with the reason logged."""
    from gradio import networking

    local = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    if not _wait_for_port(local, port):
        log.error("share link not opened: the server never listened on %s:%s", local, port)
        return None
    try:
        url = networking.setup_tunnel(local, port, secrets.token_urlsafe(32), None, None)
    except Exception as exc:  # the tunnel fails in many ways offline; none of them stops the app
        log.warning(
            "Could not create a share link (%s). The studio keeps running locally at http://%s:%s/ ; "
            "check the internet connection to use --share.",
            exc,
            local,
            port,
        )
        return None
    log.warning("Public share link (UI and API): %s  -- anyone with it can use this studio", url)
    return url


def share_in_background(host: str, port: int) -> threading.Thread:
    thread = threading.Thread(target=open_share_link, args=(host, port), name="share-link", daemon=True)
    thread.start()
    return thread
