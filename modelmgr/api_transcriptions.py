"""Transcription over HTTP: the jobs API (/api/transcriptions) and the OpenAI-compatible /v1 audio API.

Both are thin layers over ``TranscriptionManager``: a request is parsed, validated
(every bad input gets a clear error and changes nothing), and submitted as a job.
The jobs API answers 202 at once; ``/v1/audio/*`` waits for the job on the event
loop without holding a thread (a future completed by the worker through
``call_soon_threadsafe``), the way OpenAI's own endpoint answers.
Uploads are streamed to disk; ``BodyLimit`` in api.py counts them while they arrive.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError, field_validator
from sse_starlette import EventSourceResponse
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import errors
from .api_docs import ALL_RESPONSES
from .catalog import ModelSpec
from .events import CLOSED
from .services import Services
from .subtitles import Transcript, to_srt, to_vtt
from .transcriptions import FINISHED, FORMATS, Job, JobOptions

MEDIA_TYPES = {
    "json": "application/json",
    "srt": "application/x-subrip; charset=utf-8",
    "vtt": "text/vtt; charset=utf-8",
    "txt": "text/plain; charset=utf-8",
}
OPENAI_FORMATS = ("json", "text", "srt", "verbose_json", "vtt")
UPLOAD_PATHS = ("/api/transcriptions", "/v1/audio/")  # bodies streamed and counted against max_upload_bytes

_MULTIPART = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "model": {"type": "string", "example": "tiny"},
                        "language": {"type": "string", "example": "zh"},
                    },
                }
            }
        },
    }
}


class JobForm(BaseModel):
    """The jobs API's form fields (besides ``file``): strict, no extra fields."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = None
    language: str | None = None
    device: str = "auto"
    task: str = "transcribe"
    word_timestamps: StrictBool | None = None
    vad: StrictBool | None = None
    batch_size: int | None = Field(None, ge=1, le=256)
    initial_prompt: str | None = None
    temperature: float | None = Field(None, ge=0.0, le=1.0)
    formats: list[str] | None = None

    @field_validator("word_timestamps", "vad", mode="before")
    @classmethod
    def _bool(cls, value: Any) -> Any:
        return _form_bool(value)


def install_transcription_api(
    app: FastAPI, services: Services, require_auth: Callable[[Request], None], result_key: bytes | None
) -> None:
    """Add /api/transcriptions and /v1 routes (before any Gradio mount)."""
    manager = services.transcriptions
    settings = services.settings
    base = settings.root_path + "/"  # links carry the public prefix (--root-path) behind a proxy
    guarded = APIRouter(dependencies=[Depends(require_auth)], responses=ALL_RESPONSES)

    # --- jobs API ---
    @guarded.post("/api/transcriptions", status_code=202, openapi_extra=_MULTIPART, tags=["transcriptions"])
    async def submit_job(request: Request) -> JSONResponse:
        form, upload = await _read_form(request)
        fields = _fields(form, {"formats"})
        body = _validate_form(fields)
        options = JobOptions(
            model=body.model or settings.default_model,
            language=_language(body.language),
            device=body.device,
            task=body.task,
            word_timestamps=True if body.word_timestamps is None else body.word_timestamps,
            vad=True if body.vad is None else body.vad,
            batch_size=body.batch_size,
            initial_prompt=body.initial_prompt or None,
            temperature=body.temperature,
            formats=tuple(_split(body.formats)) or FORMATS,
        )
        job = await _submit(manager, upload, options)
        return JSONResponse(
            _job_json(job, manager, result_key, base),
            status_code=202,
            headers={"Location": f"{base}api/transcriptions/{job.id}"},
        )

    @guarded.get("/api/transcriptions", tags=["transcriptions"])
    def list_jobs() -> dict[str, Any]:
        return {"jobs": [_job_json(j, manager, result_key, base) for j in manager.jobs()]}

    @guarded.get("/api/transcriptions/{job_id}", tags=["transcriptions"])
    def get_job(job_id: str) -> dict[str, Any]:
        return _job_json(manager.get(job_id), manager, result_key, base)

    @guarded.delete("/api/transcriptions/{job_id}", tags=["transcriptions"])
    def delete_job(job_id: str) -> dict[str, Any]:
        job = manager.get(job_id)
        status = manager.delete(job_id)
        return {"status": status, "job": _job_json(job, manager, result_key, base)}

    # The result route checks its own auth: a signed link (from the UI) or the token.
    results = APIRouter(responses=ALL_RESPONSES)

    @results.get("/api/transcriptions/{job_id}/result", tags=["transcriptions"])
    def job_result(
        request: Request, job_id: str, format: str = "srt", download: bool = False, sig: str | None = None
    ) -> FileResponse:
        if not (result_key and sig and hmac.compare_digest(sig, sign(result_key, job_id))):
            require_auth(request)
        manager.check_format(format)
        path = manager.result(job_id, format)
        job = manager.get(job_id)
        return FileResponse(
            path,
            media_type=MEDIA_TYPES[format],
            filename=f"{Path(job.filename).stem or 'transcript'}.{format}",
            content_disposition_type="attachment" if download else "inline",
        )

    # --- OpenAI-compatible ---
    @guarded.get("/v1/models", tags=["openai"])
    def openai_models() -> dict[str, Any]:
        # Distributed mode: the models the workers have, not this web process's own cache.
        on_workers = manager.models_on_workers() if services.distributed else None
        data = [
            {"id": m["id"], "object": "model", "created": 0, "owned_by": m["repo_id"].split("/")[0]}
            for m in services.downloads.snapshot()
            if m["kind"] == "whisper"
            and (m["status"] == "downloaded" if on_workers is None else m["id"] in on_workers)
        ]
        return {"object": "list", "data": data}

    async def openai_audio(request: Request, task: str) -> Response:
        form, upload = await _read_form(request)
        fields = _fields(form, {"timestamp_granularities", "include"})
        response_format = str(fields.get("response_format") or "json")
        if response_format not in OPENAI_FORMATS:
            raise errors.UnsupportedFormat(
                f"response_format must be one of {', '.join(OPENAI_FORMATS)}, not {response_format!r}"
            )
        granularities = set(_split(fields.get("timestamp_granularities"))) or {"segment"}
        if not granularities <= {"word", "segment"}:
            raise errors.InvalidInput("timestamp_granularities must be 'word' and/or 'segment'")
        stream = _form_bool(fields.get("stream")) is True
        spec = _openai_model(services, str(fields.get("model") or ""))
        temperature = _float(fields.get("temperature"), "temperature")
        options = JobOptions(
            model=spec.id,
            language=_language(fields.get("language")) if task == "transcribe" else None,
            task=task,
            word_timestamps="word" in granularities or response_format in ("srt", "vtt"),
            initial_prompt=str(fields.get("prompt") or "") or None,
            temperature=temperature,
            formats=("json",),
        )
        if stream:
            return await _stream_job(manager, services, upload, options)
        job = await _submit(manager, upload, options)
        await _wait(request, job, manager)
        if job.status != "done":
            raise _job_error(job)
        transcript = await asyncio.to_thread(manager.transcript, job.id)
        return _openai_body(transcript, response_format, task, "word" in granularities)

    @guarded.post("/v1/audio/transcriptions", openapi_extra=_MULTIPART, tags=["openai"])
    async def openai_transcriptions(request: Request) -> Response:
        return await openai_audio(request, "transcribe")

    @guarded.post("/v1/audio/translations", openapi_extra=_MULTIPART, tags=["openai"])
    async def openai_translations(request: Request) -> Response:
        return await openai_audio(request, "translate")

    fallback = APIRouter(prefix="/v1")

    @fallback.api_route(
        "/{rest:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"], include_in_schema=False
    )
    def unknown_v1_route(rest: str) -> None:
        # Unknown /v1 paths answer OpenAI-shaped JSON instead of reaching the Gradio mount at /.
        raise StarletteHTTPException(404, f"/v1/{rest} is not an API route")

    app.include_router(guarded)
    app.include_router(results)
    app.include_router(fallback)


def sign(key: bytes, job_id: str) -> str:
    """A capability for one job's results, so the UI's links work without the token in the URL."""
    return hmac.new(key, f"result:{job_id}".encode(), hashlib.sha256).hexdigest()[:32]


def result_links(job: dict[str, Any], key: bytes | None, base: str = "") -> dict[str, str]:
    """Format -> URL of a finished job's results (signed when the server has a token)."""
    query = f"&sig={sign(key, job['id'])}" if key else ""
    return {
        fmt: f"{base}api/transcriptions/{job['id']}/result?format={fmt}&download=1{query}"
        for fmt in job.get("formats") or ()
    }


def _job_json(job: Job, manager: Any, key: bytes | None, base: str = "/") -> dict[str, Any]:
    data = job.describe()
    data["queue_position"] = manager.queue_positions().get(job.id)
    data["results"] = result_links(data, key, base)
    return data


# --- request parsing ---
async def _read_form(request: Request) -> tuple[FormData, UploadFile]:
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


def _fields(form: FormData, multi: set[str]) -> dict[str, Any]:
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


def _validate_form(fields: dict[str, Any]) -> JobForm:
    try:
        return JobForm.model_validate({k: (v if v != "" else None) for k, v in fields.items()})
    except ValidationError as exc:
        detail = "; ".join(f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise errors.InvalidInput(detail) from None


def _split(values: Any) -> list[str]:
    if values is None:
        return []
    items = values if isinstance(values, list) else [values]
    return [part.strip().lower() for item in items for part in str(item).split(",") if part.strip()]


def _language(value: Any) -> str | None:
    text = str(value or "").strip().lower()
    return None if text in ("", "auto") else text


def _form_bool(value: Any) -> Any:
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("true", "1", "yes", "on"):
            return True
        if lowered in ("false", "0", "no", "off", ""):
            return False
    return value


def _float(value: Any, name: str) -> float | None:
    if value in (None, ""):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise errors.InvalidInput(f"{name} must be a number") from None
    if not 0.0 <= number <= 1.0:
        raise errors.InvalidInput(f"{name} must be between 0 and 1")
    return number


def _openai_model(services: Services, name: str) -> ModelSpec:
    """``whisper-1`` -> the default model; a catalog id; or a Whisper repo id."""
    if not name:
        raise errors.InvalidInput("model is required (e.g. 'tiny', 'large-v3' or 'whisper-1')")
    if name == "whisper-1":
        name = services.settings.default_model
    try:
        return services.catalog.get(name)
    except errors.ModelNotFound:
        for spec in services.catalog.all():
            if spec.kind == "whisper" and spec.repo_id == name:
                return spec
        raise


async def _submit(manager: Any, upload: UploadFile, options: JobOptions) -> Job:
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


async def _wait(request: Request, job: Job, manager: Any) -> None:
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


def _job_error(job: Job) -> errors.ModelMgrError:
    error = job.error or {"code": job.status, "message": f"the transcription was {job.status}"}
    return errors.from_code(error["code"], error["message"])


async def _stream_job(manager: Any, services: Services, upload: UploadFile, options: JobOptions) -> Response:
    """``stream=true``: OpenAI's transcript.text.delta events per segment, then transcript.text.done."""
    bus = services.bus
    queue, _ = bus.subscribe(None)  # before the submit, so no segment is missed
    try:
        job = await _submit(manager, upload, options)
    except BaseException:
        bus.unsubscribe(queue)
        raise

    async def events() -> AsyncIterator[dict[str, Any]]:
        try:
            while True:
                event = await queue.get()
                if event is CLOSED:
                    return
                data = event.data
                if event.name != "transcription" or data.get("id") != job.id:
                    continue
                if data.get("segment"):
                    delta = {"type": "transcript.text.delta", "delta": data["segment"]["text"]}
                    yield {"data": json.dumps(delta, ensure_ascii=False)}
                if data.get("status") in FINISHED:
                    break
            if job.status == "done":
                transcript = await asyncio.to_thread(manager.transcript, job.id)
                done = {"type": "transcript.text.done", "text": _text(transcript)}
                yield {"data": json.dumps(done, ensure_ascii=False)}
            else:
                error = _job_error(job)
                body = {"error": {"message": error.message, "type": "server_error", "code": error.code}}
                yield {"event": "error", "data": json.dumps(body)}
        finally:
            bus.unsubscribe(queue)
            if job.status not in FINISHED:
                manager.cancel(job.id)  # the client went away

    return EventSourceResponse(events(), headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


# --- OpenAI response bodies ---
def _text(transcript: Transcript) -> str:
    return " ".join(seg.text.strip() for seg in transcript.segments if seg.text.strip())


def _openai_body(transcript: Transcript, response_format: str, task: str, words: bool) -> Response:
    if response_format == "text":
        return PlainTextResponse(_text(transcript))
    if response_format == "srt":
        return PlainTextResponse(to_srt(transcript), media_type=MEDIA_TYPES["srt"])
    if response_format == "vtt":
        return PlainTextResponse(to_vtt(transcript), media_type=MEDIA_TYPES["vtt"])
    if response_format == "json":
        return JSONResponse({"text": _text(transcript)})
    segments = [
        {
            "id": i,
            "seek": 0,
            "start": seg.start,
            "end": seg.end,
            "text": seg.text,
            "tokens": [],
            "temperature": seg.temperature if seg.temperature is not None else 0.0,
            "avg_logprob": seg.avg_logprob,
            "compression_ratio": seg.compression_ratio,
            "no_speech_prob": seg.no_speech_prob,
        }
        for i, seg in enumerate(transcript.segments)
    ]
    body: dict[str, Any] = {
        "task": task,
        "language": transcript.language,
        "duration": transcript.duration,
        "text": _text(transcript),
        "segments": segments,
        "usage": {"type": "duration", "seconds": transcript.duration},
    }
    if words:
        body["words"] = [
            {"word": w.text, "start": w.start, "end": w.end}
            for seg in transcript.segments
            for w in seg.words
            if w.start is not None and w.end is not None
        ]
    return JSONResponse(body)
