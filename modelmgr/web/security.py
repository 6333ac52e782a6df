"""Web security by default: Host and Origin checks, the auth token, and logs that never show it.

One ASGI middleware in front of everything (``/api``, ``/v1`` and Gradio's routes), because
the threats do not care which route they hit:

* **DNS rebinding.** A page on ``evil.example`` whose name resolves to 127.0.0.1 talks to
  the studio with ``Host: evil.example``. Only loopback names, ``--host`` and
  ``MODELMGR_ALLOWED_HOSTS`` are accepted; any other Host gets 403 ``forbidden_host``.
* **Cross-site requests (CSRF).** A page elsewhere can POST a bodiless request or an empty
  ``<form>`` without any CORS preflight. Every state-changing request (anything but
  GET/HEAD) and every preflight must be same-origin or from ``MODELMGR_ALLOWED_ORIGINS``;
  without ``Origin``, ``Sec-Fetch-Site: cross-site`` is refused too. 403 ``cross_origin``.
* **No wildcard CORS.** Gradio echoes ``Access-Control-Allow-Origin`` for origins it thinks
  are local; the header is removed from every answer unless the origin is allowed here.
* **A token beyond loopback.** With a token set, every request but ``/api/health`` and the
  sign-in page must carry it: ``Authorization: Bearer``, ``X-Auth-Token``, ``?token=`` (a
  browser then gets an HttpOnly cookie and is redirected to the clean URL, as Jupyter
  does) or that cookie. The cookie holds a digest of the token, never the token itself.
* **No token in a log line.** ``token=`` is redacted from uvicorn's access log.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import sys
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

from pydantic import SecretStr
from starlette.datastructures import Headers
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelmgr.core.settings import Settings
from modelmgr.web.http_errors import error_response
from modelmgr.web.rootpath import route_path

log = logging.getLogger(__name__)

LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
SAFE_METHODS = frozenset({"GET", "HEAD"})
COOKIE = "modelmgr_session"
PUBLIC_PATHS = frozenset({"/api/health"})
_SIGNED = re.compile(r"^/api/transcriptions/[^/]+/result$")  # links the UI signs (web/api/transcriptions.py)
AUTHENTICATED = "modelmgr.authenticated"  # scope key set for requests that carried the token
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


# --- configuration -------------------------------------------------------------------------
def is_loopback(host: str) -> bool:
    return host.strip("[]").lower() in LOOPBACK_HOSTS


def resolve_token(settings: Settings, *, exposed: bool) -> tuple[Settings, bool]:
    """The token to require: ``MODELMGR_AUTH_TOKEN`` / ``--auth-token``, else the first line of
    ``MODELMGR_AUTH_TOKEN_FILE``, else (only when ``exposed``) a new random one.

    Returns the settings carrying it and whether it was generated here.
    """
    if settings.auth_token is not None:
        return settings, False
    if settings.auth_token_file is not None:
        token = Path(settings.auth_token_file).read_text().strip()
        if not token:
            raise SystemExit(f"MODELMGR_AUTH_TOKEN_FILE {settings.auth_token_file} is empty")
        return settings.model_copy(update={"auth_token": SecretStr(token)}), False
    if not exposed:
        return settings, False
    return settings.model_copy(update={"auth_token": SecretStr(secrets.token_urlsafe(32))}), True


def open_url(settings: Settings, port: int | None = None) -> str:
    """The URL to open, with the token in it (printed once at start-up, never logged)."""
    host = settings.host
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"
    url = f"http://{shown}:{port or settings.port}/"
    if settings.auth_token is not None:
        url += "?" + urlencode({"token": settings.auth_token.get_secret_value()})
    return url


def print_open_url(settings: Settings, *, generated: bool) -> None:
    """Print where to open the studio, once, on stdout (the logging pipeline never sees it)."""
    lines = []
    if generated:
        lines.append("The studio listens beyond this machine, so it requires a token; one was generated.")
    lines.append(f"Open the studio at:  {open_url(settings)}")
    print("\n    " + "\n    ".join(lines) + "\n", file=sys.stdout, flush=True)


def allowed_hosts(settings: Settings) -> frozenset[str]:
    hosts = set(LOOPBACK_HOSTS)
    hosts.update(h.strip().strip("[]").lower() for h in settings.allowed_hosts if h.strip())
    if settings.host not in ("0.0.0.0", "::", ""):
        hosts.add(settings.host.strip("[]").lower())
    return frozenset(hosts)


def _split_host(value: str) -> tuple[str, int | None]:
    """``example:8080`` / ``[::1]:80`` / ``example`` -> (lower-case name, port or None)."""
    value = value.strip().lower()
    if value.startswith("["):
        name, _, rest = value[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif value.count(":") == 1:
        name, _, port = value.partition(":")
    else:
        name, port = value, ""
    return name, int(port) if port.isascii() and port.isdigit() and len(port) <= 5 else None


def _origin_key(origin: str) -> tuple[str, str, int | None] | None:
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    if not parts.scheme or not parts.hostname:
        return None
    return parts.scheme.lower(), parts.hostname.lower(), port or _DEFAULT_PORTS.get(parts.scheme.lower())


def session_value(token: str) -> str:
    """What the browser cookie holds: a digest of the token, so a leaked cookie is not the token."""
    return hashlib.sha256(b"modelmgr-session\0" + token.encode()).hexdigest()


# --- the middleware --------------------------------------------------------------------------
class SecurityMiddleware:
    """Host, Origin and token checks for every HTTP and WebSocket request."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        hosts: Iterable[str],
        origins: Iterable[str] = (),
        token: str | None = None,
    ) -> None:
        self.app = app
        self.hosts = frozenset(hosts)
        self.any_host = "*" in self.hosts
        self.origins = {key for key in map(_origin_key, origins) if key is not None}
        self.token = token
        self.session = session_value(token) if token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        host_name, host_port = _split_host(headers.get("host", ""))
        if not self.any_host and host_name not in self.hosts:
            await self._refuse(scope, receive, send, 403, "forbidden_host",
                               f"Host {headers.get('host', '')!r} is not served here; add it to "
                               "MODELMGR_ALLOWED_HOSTS if it is yours")  # fmt: skip
            return
        origin = headers.get("origin")
        allowed_origin = self._origin_allowed(origin, scope, host_name, host_port) if origin else None
        method = scope.get("method", "GET") if scope["type"] == "http" else "WEBSOCKET"
        if method not in SAFE_METHODS and (
            allowed_origin is False
            or (origin is None and headers.get("sec-fetch-site", "").lower() == "cross-site")
        ):
            await self._refuse(scope, receive, send, 403, "cross_origin",
                               "cross-origin requests may not change anything here; add the origin to "
                               "MODELMGR_ALLOWED_ORIGINS if it is yours")  # fmt: skip
            return
        if self.token is not None and not await self._authenticate(scope, receive, send, headers):
            return
        await self.app(scope, receive, self._strip_cors(send, origin if allowed_origin else None))

    def _origin_allowed(self, origin: str, scope: Scope, host_name: str, host_port: int | None) -> bool:
        key = _origin_key(origin)
        if key is None:
            return False  # "null" (sandboxed frames, file://) and junk are never same-origin
        if key in self.origins:
            return True
        scheme, name, port = key
        if name != host_name:
            return False
        expected = host_port or _DEFAULT_PORTS.get(scheme)
        return port == expected

    # --- token -----------------------------------------------------------------------------
    async def _authenticate(self, scope: Scope, receive: Receive, send: Send, headers: Headers) -> bool:
        assert self.token is not None and self.session is not None
        path = route_path(scope)  # without the --root-path prefix
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        given = headers.get("x-auth-token") or ""
        auth = headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            given = auth[7:].strip()
        from_query = query.get("token")
        given = given or from_query or ""
        if given and secrets.compare_digest(given.encode(), self.token.encode()):
            scope[AUTHENTICATED] = True
            if from_query and scope["type"] == "http" and scope.get("method") == "GET" and not _is_api(path):
                await self._remember_browser(scope, receive, send, query)
                return False  # answered with the redirect
            return True
        cookie = _cookie(headers, COOKIE)
        if cookie and secrets.compare_digest(cookie.encode(), self.session.encode()):
            scope[AUTHENTICATED] = True
            return True
        if path in PUBLIC_PATHS:
            return True
        if "sig" in query and _SIGNED.match(path):
            return True  # a signed result link: the route checks the signature itself
        if path.rstrip("/") == "/login" and scope.get("method") == "POST":
            await self._login(scope, receive, send)
            return False
        if (
            scope["type"] == "http"
            and scope.get("method") == "GET"
            and not _is_api(path)
            and _wants_html(headers)
        ):
            await HTMLResponse(_LOGIN_PAGE, status_code=401)(scope, receive, send)
            return False
        await self._refuse(scope, receive, send, 401, "unauthorized",
                           "this server needs its auth token (Authorization: Bearer ..., or open the "
                           "URL printed at start-up)")  # fmt: skip
        return False

    async def _remember_browser(self, scope: Scope, receive: Receive, send: Send, query: dict) -> None:
        """``/?token=T`` from a browser: set the session cookie and redirect to the clean URL."""
        rest = {k: v for k, v in query.items() if k != "token"}
        path = scope.get("root_path", "") + (route_path(scope) or "/")  # the public path, prefix included
        target = path + (f"?{urlencode(rest)}" if rest else "")
        response = RedirectResponse(target, status_code=303)
        self._set_cookie(response)
        await response(scope, receive, send)

    async def _login(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The sign-in form (and Gradio's login form): any user name, the token as password."""
        body = b""
        more = True
        while more and len(body) < 64 * 1024:
            message = await receive()
            if message["type"] != "http.request":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
        form = dict(parse_qsl(body.decode("utf-8", "replace")))
        password = form.get("password") or form.get("token") or ""
        if not secrets.compare_digest(password.encode(), (self.token or "").encode()):
            await self._refuse(scope, receive, send, 401, "unauthorized", "wrong token")
            return
        response: Response = JSONResponse({"success": True})
        if "text/html" in Headers(scope=scope).get("accept", "") and "password" not in form:
            response = RedirectResponse(scope.get("root_path", "") + "/", status_code=303)
        self._set_cookie(response)
        await response(scope, receive, send)

    def _set_cookie(self, response: Response) -> None:
        assert self.session is not None
        response.set_cookie(COOKIE, self.session, httponly=True, samesite="lax", path="/")

    # --- answers ------------------------------------------------------------------------------
    async def _refuse(
        self, scope: Scope, receive: Receive, send: Send, status: int, code: str, message: str
    ) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        await error_response(status, code, message, route_path(scope))(scope, receive, send)

    def _strip_cors(self, send: Send, allowed_origin: str | None) -> Send:
        """Drop any Access-Control-Allow-* header unless the request's origin is allowed here."""

        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                kept = []
                for name, value in message.get("headers", []):
                    lowered = name.lower()
                    if lowered == b"access-control-allow-origin" and (
                        allowed_origin is None or value.decode("latin-1") not in (allowed_origin,)
                    ):
                        continue
                    if lowered.startswith(b"access-control-allow-") and allowed_origin is None:
                        continue
                    kept.append((name, value))
                message = {**message, "headers": kept}
            await send(message)

        return wrapped


def _is_api(path: str) -> bool:
    return path.startswith(("/api/", "/v1/")) or path in ("/api", "/v1")


def _wants_html(headers: Headers) -> bool:
    return "text/html" in headers.get("accept", "")


def _cookie(headers: Headers, name: str) -> str | None:
    for part in headers.get("cookie", "").split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


_LOGIN_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>WhisperX Studio: sign in</title>
<style>body{font-family:system-ui;max-width:28rem;margin:4rem auto}input{width:100%;padding:.4rem}</style>
</head><body><h1>WhisperX Studio</h1>
<p>This studio needs its token. Open the URL printed when the server started
(<code>http://host:port/?token=...</code>), or paste the token here.</p>
<form method="post" action="login"><input type="password" name="token" autocomplete="current-password"
 aria-label="token" autofocus><p><button type="submit">Sign in</button></p></form>
<p><small>Tokens come from MODELMGR_AUTH_TOKEN, MODELMGR_AUTH_TOKEN_FILE or --auth-token.</small></p>
</body></html>"""


# --- logs ------------------------------------------------------------------------------------
_TOKEN_IN_TEXT = re.compile(r"(token=)[^&\s\"']+", re.IGNORECASE)


class RedactTokens(logging.Filter):
    """Replace ``token=<secret>`` with ``token=***`` in a record's message and arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = _TOKEN_IN_TEXT.sub(r"\1***", record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(
                _TOKEN_IN_TEXT.sub(r"\1***", a) if isinstance(a, str) else a for a in record.args
            )
        elif isinstance(record.args, dict):
            record.args = {
                k: _TOKEN_IN_TEXT.sub(r"\1***", v) if isinstance(v, str) else v
                for k, v in record.args.items()
            }
        return True


def install_log_redaction() -> None:
    """Attach the filter to uvicorn's loggers once (they log request lines and errors)."""
    for name in ("uvicorn.access", "uvicorn.error"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactTokens) for f in logger.filters):
            logger.addFilter(RedactTokens())


def install_security(app, settings: Settings) -> None:
    """Add the middleware to ``app`` (outermost, so it sees Gradio's routes too)."""
    install_log_redaction()
    token = settings.auth_token.get_secret_value() if settings.auth_token else None
    app.add_middleware(
        SecurityMiddleware,
        hosts=allowed_hosts(settings),
        origins=settings.allowed_origins,
        token=token,
    )
