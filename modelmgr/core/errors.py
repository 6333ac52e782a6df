"""Every error the managers raise, in one place.

Hierarchy (HTTP status is mapped in ``web/http_errors.py``, nowhere else)::

    ModelMgrError
    ├── InvalidInput            bad id, language, device, body           -> 400
    │   ├── UnknownLanguage
    │   ├── UnknownDevice
    │   ├── InvalidAudio        not audio, empty, no samples
    │   └── UnsupportedFormat   a result format we do not write
    ├── ModelNotFound           not in the catalog                       -> 404
    ├── JobNotFound             no transcription job with that id        -> 404
    ├── WorkerNotFound          distributed mode: no live worker by that name -> 404
    ├── ResultNotReady          the job has not finished (or failed)     -> 409
    ├── NotDownloading          cancel of something not in flight        -> 409
    ├── ModelBusy               delete while loaded/downloading, ...     -> 409
    ├── Unauthorized            missing/wrong studio auth token          -> 401 (code unauthorized)
    ├── PayloadTooLarge         request body over the limit              -> 413
    ├── DiskFull                not enough free space for a download     -> 507
    ├── ModelInUse              a job holds a lease on the model         -> 409
    ├── DownloadFailed          the remote side failed us                -> 502
    │   ├── HubUnreachable      refused, DNS, TLS, proxy: no answer      -> 502
    │   ├── HubTimeout          connected, then no answer in time        -> 504
    │   ├── Offline             offline mode and the files are missing   -> 503
    │   ├── RemoteNotFound      the hub says the repo/file is gone
    │   ├── AccessDenied        the hub refused us (private repo, ...)   -> 403
    │   │   ├── AuthRequired    gated repo and no token (or one the hub rejects) -> 401
    │   │   └── GatedRepo       the token's owner has not accepted the repo's conditions -> 403
    │   ├── TokenUnreadable     the Hugging Face token file cannot be read -> 503
    │   │                       (a server-side fault the operator fixes; public models still download)
    │   └── IntegrityError      size or hash mismatch after transfer
    ├── PreloadFailed           loading weights failed                   -> 500
    ├── AlignUnavailable        no aligner for the language could be had -> 503
    │                           (jobs fall back to Whisper's word times: a warning, not a failure)
    ├── QueueUnavailable        distributed mode: Redis cannot be reached -> 503
    └── Cancelled               internal: a transfer was cancelled

Each class has a stable ``code`` for clients and a message a person understands.
"""

from __future__ import annotations


class ModelMgrError(Exception):
    code = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(ModelMgrError):
    code = "invalid_input"


class UnknownLanguage(InvalidInput):
    code = "unknown_language"


class UnknownDevice(InvalidInput):
    code = "unknown_device"


class InvalidAudio(InvalidInput):
    code = "invalid_audio"


class UnsupportedFormat(InvalidInput):
    code = "unsupported_format"


class ModelNotFound(ModelMgrError):
    code = "model_not_found"


class JobNotFound(ModelMgrError):
    code = "job_not_found"


class WorkerNotFound(ModelMgrError):
    code = "worker_not_found"


class ResultNotReady(ModelMgrError):
    code = "result_not_ready"


class NotDownloading(ModelMgrError):
    code = "not_downloading"


class ModelBusy(ModelMgrError):
    code = "model_busy"


class Unauthorized(ModelMgrError):
    code = "unauthorized"


class PayloadTooLarge(ModelMgrError):
    code = "payload_too_large"


class DiskFull(ModelMgrError):
    code = "insufficient_storage"


class ModelInUse(ModelBusy):
    code = "model_in_use"


class DownloadFailed(ModelMgrError):
    code = "download_failed"


class HubUnreachable(DownloadFailed):
    code = "hub_unreachable"


class HubTimeout(DownloadFailed):
    code = "hub_timeout"


class Offline(DownloadFailed):
    code = "offline"


class RemoteNotFound(DownloadFailed):
    code = "remote_not_found"


class AccessDenied(DownloadFailed):
    code = "access_denied"


class AuthRequired(AccessDenied):
    """401 from the hub: a gated repo and no token, or a token the hub does not accept.

    Not ``Unauthorized`` (the studio's own token): clients tell the two apart by ``code``.
    """

    code = "auth_required"


class GatedRepo(AccessDenied):
    """403 from the hub: the token is valid, but its owner has not accepted the repo's conditions."""

    code = "gated_repo"


class TokenUnreadable(DownloadFailed):
    code = "token_unreadable"


class IntegrityError(DownloadFailed):
    code = "integrity_error"


class PreloadFailed(ModelMgrError):
    code = "preload_failed"


class AlignUnavailable(ModelMgrError):
    code = "align_unavailable"


class QueueUnavailable(ModelMgrError):
    code = "queue_unavailable"


class Cancelled(ModelMgrError):
    code = "cancelled"


def from_code(code: str, message: str) -> ModelMgrError:
    """Rebuild a typed error from its code (a job's stored error), so it maps to the same HTTP status."""
    stack: list[type[ModelMgrError]] = [ModelMgrError]
    while stack:
        cls = stack.pop()
        if cls.code == code:
            return cls(message)
        stack.extend(cls.__subclasses__())
    return ModelMgrError(message)
