"""Multipart uploads shared by the jobs API and ``/v1``: reading the form, storing the file as a job,
waiting for the job without holding a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from pathlib import Path
from typing import Any

from fastapi import Request
from starlette.datastructures import FormData, UploadFile

from modelmgr.asr.jobs import Job, JobOptions
from modelmgr.asr.manager import JobManager
from modelmgr.core import errors

UPLOAD_PATHS = ("/api/transcriptions", "/v1/audio/")  # bodies streamed and counted against max_upload_bytes


MEDIA_TYPES = {
    "json": "application/json",
    "srt": "application/x-subrip; charset=utf-8",
    "vtt": "text/vtt; charset=utf-8",
    "txt": "text/plain; charset=utf-8",
}


def multipart(fields: dict[str, Any]) -> dict[str, Any]:
    """``openapi_extra`` for a route that reads its own multipart form: ``file`` and ``fields``
    (JSON Schema properties), so /docs and generated clients show every field it takes."""
    properties = {"file": {"type": "string", "format": "binary"}, **fields}
    schema = {"type": "object", "required": ["file"], "properties": properties}
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}}


async def read_form(request: Request) -> tuple[FormData, UploadFile]:
    """The multipart form and its ``file`` part (spooled to disk by Starlette while it streams)."""
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        raise errors.InvalidInput("send the audio as multipart/form-data with a 'file' field")
    try:
        form = await request.form(max_files=1, max_fields=64)
    except errors.ModelMgrError:
        raise
    except Exception as exc:  # python-multipart / starlette parse errors
        raise errors.InvalidInput(f"the multipart body could not be read: {exc}") from exc
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        await form.close()
        raise errors.InvalidInput("the form has no 'file' part with the audio")
    return form, upload


def form_fields(form: FormData, multi: set[str]) -> dict[str, Any]:
    """Form fields except ``file``; ``name[]`` and repeated names become lists for ``multi``."""
    out: dict[str, Any] = {}
    for key in {k for k in form if k != "file"}:
        name = key[:-2] if key.endswith("[]") else key
        values = [v for v in form.getlist(key) if isinstance(v, str)]
        if name in multi:
            out.setdefault(name, []).extend(values)
        elif values:
            out[name] = values[-1]
    return out


def split_values(values: Any) -> list[str]:
    if values is None:
        return []
    items = values if isinstance(values, list) else [values]
    return [part.strip().lower() for item in items for part in str(item).split(",") if part.strip()]


def form_language(value: Any) -> str | None:
    text = str(value or "").strip().lower()
    return None if text in ("", "auto") else text


def form_bool(value: Any) -> Any:
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("true", "1", "yes", "on"):
            return True
        if lowered in ("false", "0", "no", "off", ""):
            return False
    return value


async def submit_upload(manager: JobManager, upload: UploadFile, options: JobOptions) -> Job:
    """Copy the spooled upload next to the jobs folder and queue it (all off the event loop)."""

    def store() -> Job:
        manager.root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=manager.root, prefix=".upload-")
        path = Path(tmp)
        try:
            with open(fd, "wb") as out:
                upload.file.seek(0)
                shutil.copyfileobj(upload.file, out, 1 << 20)
            return manager.submit(path, upload.filename or "audio", options)
        finally:
            path.unlink(missing_ok=True)

    try:
        return await asyncio.to_thread(store)
    finally:
        await upload.close()


async def wait_for(request: Request, job: Job, manager: JobManager) -> None:
    """Wait for the job without a thread; a client that hangs up cancels its job."""
    loop = asyncio.get_running_loop()
    finished: asyncio.Future[None] = loop.create_future()

    def wake(_job: Job) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed (server stopping)
            loop.call_soon_threadsafe(lambda: finished.done() or finished.set_result(None))

    job.add_done_callback(wake)
    while not finished.done():
        await asyncio.wait({finished}, timeout=1.0)
        if not finished.done() and await request.is_disconnected():
            manager.cancel(job.id)
            raise asyncio.CancelledError
