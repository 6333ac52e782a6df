"""The error answers each route can give, for /openapi.json (clients and schemathesis read them).

Kept apart from routes.py so every router module can share them without importing each other.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    """Every error answer: ``{"error": {"code", "message"}}``."""

    error: ErrorDetail


def documented(*codes: int) -> dict[int | str, dict[str, Any]]:
    text = {
        400: "bad input (invalid id, language, device or JSON)",
        401: "the studio's auth token is missing or wrong (unauthorized), or a gated model needs a Hugging "
        "Face token (auth_required)",
        403: "forbidden: Host not allowed, cross-origin request, or the hub denied access (access_denied; "
        "gated_repo: the token's owner has not accepted the model's conditions)",
        404: "unknown model or route",
        405: "method not allowed",
        409: "busy: downloading, verifying, loaded or in use",
        413: "request body too large",
        422: "the body does not match the schema",
        502: "the hub is unreachable or failed (hub_unreachable, download_failed)",
        503: "offline mode and the files are missing, or the Hugging Face token file is unreadable "
        "(token_unreadable)",
        504: "the hub accepted the connection but did not answer in time (hub_timeout)",
        507: "not enough free disk space (insufficient_storage)",
    }
    return {code: {"model": ErrorBody, "description": text[code]} for code in codes}


# Shared by every guarded route; handlers add what only they can answer.
ERROR_RESPONSES = documented(400, 401, 403, 404, 405, 413, 422)
BUSY_RESPONSES = documented(409)
HUB_RESPONSES = documented(401, 403, 409, 502, 503, 504, 507)
ALL_RESPONSES = documented(400, 401, 403, 404, 405, 409, 413, 422, 502, 503, 504, 507)
