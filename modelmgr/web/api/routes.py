"""REST + SSE API under /api: a thin layer over the managers.

Errors are mapped to HTTP statuses in ``modelmgr.web.http_errors`` and nowhere else. Every
error body is ``{"error": {"code", "message"}}``. Handlers that touch the disk
are plain ``def`` (FastAPI runs them in its thread pool) so the event loop only
ever awaits.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import secrets
from collections.abc import AsyncIterator
from typing import Any

import anyio
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, StrictBool, StrictStr
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelmgr.asr.system import system_report
from modelmgr.core import errors
from modelmgr.core.events import CLOSED, sse_frame
from modelmgr.services import Services
from modelmgr.web.api.docs import BUSY_RESPONSES, ERROR_RESPONSES, HUB_RESPONSES
from modelmgr.web.api.transcriptions import install_transcription_api
from modelmgr.web.api.uploads import UPLOAD_PATHS
from modelmgr.web.http_errors import error_response, status_for
from modelmgr.web.rootpath import route_path
from modelmgr.web.security import AUTHENTICATED

SHUTDOWN_GRACE_S = 2.0  # below uvicorn's timeout_graceful_shutdown (3-5 s here)
# Last-Event-ID is a decimal event id; anything else (superscripts, 5,000 digits) means "absent".
_EVENT_ID = re.compile(r"[0-9]{1,18}")


# --- request bodies: strict, no extra fields ---
class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DownloadBody(_Body):
    languages: list[StrictStr] | None = None
    with_align: StrictBool = True


class WorkersDownloadBody(_Body):
    model: StrictStr
    languages: list[StrictStr] | None = None


class PreloadBody(_Body):
    model: StrictStr
    language: StrictStr | None = None
    device: StrictStr = "auto"


def install_api(app: FastAPI, services: Services) -> None:
    """Add the routes, error handlers and body limit to ``app`` (before any Gradio mount)."""
    settings = services.settings
    token = settings.auth_token.get_secret_value() if settings.auth_token else None

    def require_auth(request: Request) -> None:
        if token is None or request.scope.get(AUTHENTICATED):
            return  # the security middleware already checked the token (header, query or cookie)
        given = request.headers.get("x-auth-token") or request.query_params.get("token") or ""
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            given = auth[7:]
        if not secrets.compare_digest(given.encode(), token.encode()):
            raise errors.Unauthorized("this server needs an auth token (Authorization: Bearer ...)")

    snapshots = _SnapshotCache(services)
    router = APIRouter(prefix="/api")
    guarded = APIRouter(prefix="/api", dependencies=[Depends(require_auth)], responses=ERROR_RESPONSES)

    @router.get("/health")
    async def health() -> Any:
        if not services.distributed:
            return {"status": "ok"}
        # Distributed mode: say whether Redis and any worker can be reached (503 without Redis).
        report = await asyncio.to_thread(services.transcriptions.health)
        ok = report["redis"] == "ok"
        body = {"status": "ok" if ok else "degraded", "mode": "distributed", **report}
        if ok and not report["workers"]:
            body["warning"] = "no worker is connected: jobs wait as queued"
        return JSONResponse(body, status_code=200 if ok else 503)

    @guarded.get("/workers")
    def workers() -> dict[str, Any]:
        if not services.distributed:
            return {"mode": "embedded", "workers": []}
        return {"mode": "distributed", "workers": services.transcriptions.workers()}

    @guarded.post("/workers/download", status_code=202)
    def download_on_workers(body: WorkersDownloadBody) -> dict[str, Any]:
        _need_distributed(services)
        names = services.transcriptions.download_on_workers(body.model, body.languages)
        return {"status": "sent", "model": body.model, "workers": names}

    @guarded.post("/workers/{name}/preload", status_code=202)
    def preload_on_worker(name: str, body: PreloadBody) -> dict[str, Any]:
        _need_distributed(services)
        services.transcriptions.preload_on_worker(name, body.model, body.language, body.device)
        return {"status": "sent", "worker": name, "model": body.model}

    @guarded.get("/models")
    def list_models() -> dict[str, Any]:
        return {"models": services.downloads.snapshot()}

    @guarded.post("/models/{model_id:path}/download", status_code=202, responses=HUB_RESPONSES)
    def download(model_id: str, body: DownloadBody | None = None) -> dict[str, Any]:
        body = body or DownloadBody()
        result = services.downloads.start(model_id, languages=body.languages, with_align=body.with_align)
        return {
            "status": result.status,
            "model": services.downloads.describe(services.catalog.get(model_id)),
        }

    @guarded.post("/models/{model_id:path}/cancel", status_code=202, responses=BUSY_RESPONSES)
    def cancel(model_id: str) -> dict[str, Any]:
        services.downloads.cancel(model_id)
        return {
            "status": "cancelling",
            "model": services.downloads.describe(services.catalog.get(model_id)),
        }

    @guarded.post("/models/{model_id:path}/verify", status_code=202, responses=BUSY_RESPONSES)
    def verify(model_id: str) -> dict[str, Any]:
        """Re-hash the files in a worker thread; watch /api/events or GET the model for the result."""
        services.downloads.verify(model_id)
        return {
            "status": "verifying",
            "model": services.downloads.describe(services.catalog.get(model_id)),
        }

    @guarded.post("/models/{model_id:path}/check-update", responses=HUB_RESPONSES)
    def check_update(model_id: str) -> dict[str, Any]:
        """Ask the hub now whether the model's revision moved."""
        available = services.downloads.check_update(model_id)
        return {
            "update_available": available,
            "model": services.downloads.describe(services.catalog.get(model_id)),
        }

    @guarded.post("/models/{model_id:path}/update", status_code=202, responses=HUB_RESPONSES)
    def update(model_id: str) -> dict[str, Any]:
        """Fetch the hub's current revision (changed files only) and move refs/main to it."""
        result = services.downloads.update(model_id)
        return {
            "status": result.status,
            "model": services.downloads.describe(services.catalog.get(model_id)),
        }

    @guarded.delete("/models/{model_id:path}", responses=BUSY_RESPONSES)
    def delete(model_id: str) -> dict[str, Any]:
        spec = services.catalog.get(model_id)
        freed = services.downloads.delete(spec.id)  # refuses (409) when loaded, in use or busy
        return {
            "status": "deleted",
            "freed_bytes": freed,
            "model": services.downloads.describe(spec),
        }

    @guarded.get("/models/{model_id:path}", responses=HUB_RESPONSES)
    def get_model(model_id: str, check_update: bool = False) -> dict[str, Any]:
        if check_update:
            services.downloads.check_update(model_id)
        return services.downloads.describe(services.catalog.get(model_id))

    @guarded.post("/preload/start", status_code=202, responses=HUB_RESPONSES)
    def preload_start(body: PreloadBody) -> dict[str, Any]:
        return services.preload.start(body.model, body.language, body.device)

    @guarded.get("/preload/status")
    def preload_status() -> dict[str, Any]:
        return services.preload.status()

    @guarded.post("/preload/clear-cache", responses=BUSY_RESPONSES)
    def preload_clear() -> dict[str, Any]:
        return services.preload.clear_cache()

    @guarded.get("/system")
    def system() -> dict[str, Any]:
        report = system_report(services.store)
        report["loaded"] = services.preload.status()
        report["events"] = {"subscribers": services.bus.subscriber_count}
        return report

    @guarded.get("/events")
    async def events(request: Request) -> EventSourceResponse:
        raw = request.headers.get("last-event-id") or request.query_params.get("last_event_id")
        last_id = int(raw) if raw and _EVENT_ID.fullmatch(raw) else None
        # Shutdown: sse-starlette's watcher notices uvicorn's should_exit on its own and would
        # cancel the stream mid-body. Given a shutdown_event and a grace period, it instead
        # sets the event and waits; _end_on_shutdown then ends our generator cleanly (as
        # bus.close does), so the response always completes.
        shutdown = anyio.Event()
        holder: dict[str, Any] = {}
        return EventSourceResponse(
            _stream(services, last_id, snapshots, holder),
            shutdown_event=shutdown,
            shutdown_grace_period=SHUTDOWN_GRACE_S,
            data_sender_callable=lambda: _end_on_shutdown(shutdown, holder),
            ping=settings.heartbeat_s,
            ping_message_factory=lambda: ServerSentEvent(event="ping", data="heartbeat"),
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    fallback = APIRouter(prefix="/api")

    @fallback.api_route(
        "/{rest:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"], include_in_schema=False
    )
    def unknown_route(rest: str) -> None:
        # Declared last: unknown /api paths answer JSON here instead of reaching the Gradio mount at /.
        raise StarletteHTTPException(404, f"/api/{rest} is not an API route")

    result_key = hashlib.sha256(b"results:" + token.encode()).digest() if token else None
    app.include_router(router)
    app.include_router(guarded)
    install_transcription_api(app, services, require_auth, result_key)
    app.include_router(fallback)
    _install_error_handlers(app)
    app.add_middleware(
        BodyLimit, max_bytes=settings.max_body_bytes, max_upload_bytes=settings.max_upload_bytes
    )


def _need_distributed(services: Services) -> None:
    if not services.distributed:
        raise errors.InvalidInput("worker actions exist in distributed mode only (MODELMGR_REDIS_URL)")


class _SnapshotCache:
    """The snapshot SSE frame (about 19 KB for the full catalog), built once and shared by the
    clients that connect while no event happened and it is younger than ``max_age_s``.

    Why: 1,000 clients connecting at once each read the disk for every model and kept a
    private 19 KB string: most of the loop time and resident memory of a reconnect storm
    (RSS per idle SSE connection 104 KiB -> 52 KiB). A new event id or age makes the next
    client build a fresh one. Used on the loop thread only, so it needs no lock.
    """

    def __init__(self, services: Services, max_age_s: float = 0.5) -> None:
        self.services = services
        self.max_age_s = max_age_s
        self._frame: tuple[int, bytes, float] | None = None  # (event id, frame, built at)
        self._pending: tuple[int, asyncio.Future[bytes]] | None = None

    async def frame(self) -> tuple[int, bytes]:
        snap_id = self.services.bus.last_id
        now = asyncio.get_running_loop().time()
        if self._frame and self._frame[0] == snap_id and now - self._frame[2] < self.max_age_s:
            return snap_id, self._frame[1]
        if self._pending is None or self._pending[0] != snap_id:  # one build per id at a time
            build = asyncio.ensure_future(asyncio.to_thread(self._build, snap_id))  # disk + JSON off the loop
            self._pending = (snap_id, build)
            build.add_done_callback(lambda f, pending=self._pending: self._done(pending, f))
        return snap_id, await asyncio.shield(self._pending[1])

    def _build(self, snap_id: int) -> bytes:
        return sse_frame(snap_id, "snapshot", json.dumps(self.services.snapshot()))

    def _done(self, pending: tuple[int, asyncio.Future[bytes]], future: asyncio.Future[bytes]) -> None:
        if self._pending is pending:
            self._pending = None
        if not future.cancelled() and future.exception() is None:
            self._frame = (pending[0], future.result(), asyncio.get_running_loop().time())


async def _end_on_shutdown(shutdown: anyio.Event, holder: dict[str, Any]) -> None:
    """When the server shuts down, end this client's stream through its own queue."""
    await shutdown.wait()
    holder["closing"] = True
    queue = holder.get("queue")
    if queue is not None:
        queue.put_nowait(CLOSED)


async def _stream(
    services: Services,
    last_id: int | None,
    snapshots: _SnapshotCache,
    holder: dict[str, Any] | None = None,
) -> AsyncIterator[bytes]:
    """One client's events. The queue is registered here and removed in ``finally``.

    Events are sent as the frame the bus encoded once at publish (``Event.sse``); snapshots
    come from ``_SnapshotCache``, so a storm of connecting clients builds one, not one each.
    """
    bus = services.bus
    queue, missed = bus.subscribe(last_id)
    if holder is not None:
        holder["queue"] = queue  # so a shutdown can end the stream cleanly
        if holder.get("closing"):
            queue.put_nowait(CLOSED)
    sent = last_id or 0
    try:
        if missed is None:
            snap_id, frame = await snapshots.frame()
            sent = max(sent, snap_id)
            yield frame
        else:
            for event in missed:
                sent = event.id
                yield event.sse
        while True:
            event = await queue.get()
            if event is CLOSED:
                return
            if queue.lagging:  # it fell too far behind: a fresh snapshot replaces the backlog
                queue.lagging = False
                snap_id, frame = await snapshots.frame()
                sent = snap_id
                yield frame
                continue
            if event.id <= sent:  # already covered by the snapshot or the replay
                continue
            sent = event.id
            yield event.sse
    finally:
        bus.unsubscribe(queue)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(errors.ModelMgrError)
    async def _mgr(request: Request, exc: errors.ModelMgrError) -> JSONResponse:
        return error_response(status_for(exc), exc.code, exc.message, route_path(request.scope))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = exc.errors()
        path = route_path(request.scope)
        if any(p.get("type") == "json_invalid" for p in problems):
            return error_response(400, "malformed_json", "the request body is not valid JSON", path)
        detail = "; ".join(
            f"{'.'.join(str(x) for x in p.get('loc', ()) if x != 'body') or 'body'}: {p.get('msg')}"
            for p in problems
        )
        return error_response(422, "validation_error", detail or "invalid request", path)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        path = route_path(request.scope)  # without the --root-path prefix
        if not path.startswith(("/api", "/v1")):
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail), path)


class BodyLimit:
    """Refuse API bodies over their limit with 413, counting streamed bodies too.

    JSON bodies under /api are small (``max_bytes``) and buffered here. Audio uploads
    (``UPLOAD_PATHS``) may be large: they stream through untouched while being counted,
    and the moment they pass ``max_upload_bytes`` the client gets 413 and the handler
    sees a disconnect, so nothing is stored. Gradio's routes have their own limit.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, max_upload_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_upload_bytes = max_upload_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = route_path(scope) if scope["type"] == "http" else ""  # without the --root-path prefix
        if not path.startswith(("/api", "/v1")):
            await self.app(scope, receive, send)
            return
        upload = scope["method"] == "POST" and path.startswith(UPLOAD_PATHS)
        limit = self.max_upload_bytes if upload else self.max_bytes
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await self._refuse(scope, receive, send, limit)
            return
        if upload:
            await self._counted(scope, receive, send, limit)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > limit:
                await self._refuse(scope, receive, send, limit)
                return
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _counted(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        size = 0
        refused = False

        async def counting_receive() -> Message:
            nonlocal size, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                size += len(message.get("body", b""))
                if size > limit:
                    refused = True
                    await self._refuse(scope, receive, send, limit)
                    return {"type": "http.disconnect"}  # the handler stops reading; nothing is stored
            return message

        async def guarded_send(message: Message) -> None:
            if not refused:  # once 413 went out, the handler's own answer is dropped
                await send(message)

        await self.app(scope, counting_receive, guarded_send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        exc = errors.PayloadTooLarge(f"request bodies here are limited to {_size_words(limit)}")
        await error_response(status_for(exc), exc.code, exc.message, route_path(scope))(scope, receive, send)


def _size_words(n: int) -> str:
    return f"{n // (1024 * 1024)} MiB" if n >= 1024 * 1024 else f"{n // 1024} KiB"
