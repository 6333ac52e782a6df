"""Serve the app under a public path prefix (``--root-path /studio``) behind a proxy.

A proxy may pass the prefix on (``proxy_pass http://upstream;``) or strip it
(``proxy_pass http://upstream/;``); both work, and so does a direct request
to ``http://127.0.0.1:7860/`` without the prefix. Every request leaves here with
``scope["root_path"]`` set to the prefix and ``scope["path"]`` starting with it,
which is how Starlette (>= 0.35) routes and how Gradio builds its URLs. uvicorn's
own ``--root-path`` is not used: it always prepends, so a proxy that keeps the
prefix would produce ``/studio/studio/...``.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send


class RootPath:
    def __init__(self, app: ASGIApp, root_path: str) -> None:
        self.app = app
        self.root_path = root_path.rstrip("/")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.root_path and scope["type"] in ("http", "websocket"):
            scope = dict(scope)
            path: str = scope["path"]
            prefix = self.root_path
            if not (path == prefix or path.startswith(prefix + "/")):
                scope["path"] = prefix + path
                raw = scope.get("raw_path")
                if raw is not None:
                    scope["raw_path"] = prefix.encode() + raw
            scope["root_path"] = prefix
        await self.app(scope, receive, send)


def route_path(scope: Scope) -> str:
    """The path the app routes on: without the public prefix (``/studio/api/x`` -> ``/api/x``)."""
    path: str = scope["path"]
    root = scope.get("root_path", "")
    if root and (path == root or path.startswith(root + "/")):
        return path[len(root) :]
    return path
