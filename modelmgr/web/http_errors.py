"""Typed errors -> HTTP statuses, in one table, and the one error body (ours, or OpenAI's under /v1).

The API routes, the jobs and ``/v1`` routes and the security middleware all answer errors
through ``error_response``; nothing else picks a status for a ``ModelMgrError``.
"""

from __future__ import annotations

from fastapi.responses import JSONResponse

from modelmgr.core import errors

STATUS: dict[type[errors.ModelMgrError], int] = {
    errors.InvalidInput: 400,
    errors.Unauthorized: 401,
    errors.AccessDenied: 403,
    # The hub's answers, passed on: 401 auth_required is not the studio's own 401 unauthorized
    # (clients tell them apart by the code; only ``unauthorized`` means "sign in to the studio").
    errors.AuthRequired: 401,
    errors.GatedRepo: 403,
    errors.TokenUnreadable: 503,  # the server's token file is broken: the operator's fix, not the client's
    errors.ModelNotFound: 404,
    errors.JobNotFound: 404,
    errors.WorkerNotFound: 404,
    errors.ResultNotReady: 409,
    errors.NotDownloading: 409,
    errors.ModelBusy: 409,
    errors.PayloadTooLarge: 413,
    errors.PreloadFailed: 500,
    errors.AlignUnavailable: 503,
    errors.DownloadFailed: 502,
    errors.HubTimeout: 504,
    errors.Offline: 503,
    errors.QueueUnavailable: 503,
    errors.DiskFull: 507,
}


def status_for(exc: errors.ModelMgrError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def error_response(status: int, code: str, message: str, path: str = "/api") -> JSONResponse:
    """Our error shape, or OpenAI's (``message, type, param, code``) under /v1 where its clients read it."""
    if path.startswith("/v1"):
        kind = {401: "authentication_error", 404: "invalid_request_error", 429: "rate_limit_error"}.get(
            status, "invalid_request_error" if status < 500 else "server_error"
        )
        body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
        return JSONResponse(body, status_code=status)
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)
