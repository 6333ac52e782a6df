"""The OpenAI-compatible audio API: ``/v1/audio/transcriptions``, ``/v1/audio/translations``, ``/v1/models``.

Same jobs as the jobs API (transcriptions.py), answered the way OpenAI's endpoint answers:
the request waits for its job on the event loop without holding a thread (a future the
worker completes through ``call_soon_threadsafe``); ``stream=true`` sends OpenAI's
``transcript.text.delta`` events, then ``transcript.text.done``; errors take OpenAI's shape.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from sse_starlette import EventSourceResponse
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from modelmgr.asr.jobs import FINISHED, Job, JobOptions
from modelmgr.asr.manager import JobManager
from modelmgr.asr.subtitles import Transcript, to_srt, to_vtt
from modelmgr.core import errors
from modelmgr.core.catalog import ModelSpec
from modelmgr.core.events import CLOSED
from modelmgr.services import Services
from modelmgr.web.api.uploads import (
    MEDIA_TYPES,
    form_bool,
    form_fields,
    form_language,
    multipart,
    read_form,
    split_values,
    submit_upload,
    wait_for,
)

OPENAI_FORMATS = ("json", "text", "srt", "verbose_json", "vtt", "diarized_json")
# Speaker counts for diarized_json come as extra form fields (the openai client's extra_body).
SPEAKER_FIELDS = ("num_speakers", "min_speakers", "max_speakers")
OPENAI_MULTIPART = multipart(
    {
        "model": {"type": "string", "example": "tiny"},
        "language": {"type": "string", "example": "en"},
        "prompt": {"type": "string"},
        "response_format": {"type": "string", "enum": list(OPENAI_FORMATS), "default": "json"},
        "temperature": {"type": "number", "minimum": 0, "maximum": 1},
        "timestamp_granularities[]": {
            "type": "array",
            "items": {"type": "string", "enum": ["word", "segment"]},
        },
        "stream": {"type": "boolean", "default": False},
        **{name: {"type": "integer", "minimum": 1} for name in SPEAKER_FIELDS},  # diarized_json only
    }
)


def add_openai_routes(guarded: APIRouter, services: Services) -> None:
    """Add the ``/v1`` routes to ``guarded`` (the router that checks the token, i.e. the API key)."""
    manager = services.transcriptions

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
        form, upload = await read_form(request)
        fields = form_fields(form, {"timestamp_granularities", "include"})
        response_format = str(fields.get("response_format") or "json")
        if response_format not in OPENAI_FORMATS:
            raise errors.UnsupportedFormat(
                f"response_format must be one of {', '.join(OPENAI_FORMATS)}, not {response_format!r}"
            )
        granularities = set(split_values(fields.get("timestamp_granularities"))) or {"segment"}
        if not granularities <= {"word", "segment"}:
            raise errors.InvalidInput("timestamp_granularities must be 'word' and/or 'segment'")
        stream = form_bool(fields.get("stream")) is True
        spec = _openai_model(services, str(fields.get("model") or ""))
        temperature = _float(fields.get("temperature"), "temperature")
        speakers = _speaker_options(fields, response_format, task)
        options = JobOptions(
            model=spec.id,
            language=form_language(fields.get("language")) if task == "transcribe" else None,
            task=task,
            word_timestamps="word" in granularities or response_format in ("srt", "vtt"),
            initial_prompt=str(fields.get("prompt") or "") or None,
            temperature=temperature,
            formats=("json",),
            **speakers,
        )
        if stream:
            return await _stream_job(manager, services, upload, options)
        job = await submit_upload(manager, upload, options)
        await wait_for(request, job, manager)
        if job.status != "done":
            raise _job_error(job)
        transcript = await asyncio.to_thread(manager.transcript, job.id)
        return _openai_body(transcript, response_format, task, "word" in granularities)

    @guarded.post("/v1/audio/transcriptions", openapi_extra=OPENAI_MULTIPART, tags=["openai"])
    async def openai_transcriptions(request: Request) -> Response:
        return await openai_audio(request, "transcribe")

    @guarded.post("/v1/audio/translations", openapi_extra=OPENAI_MULTIPART, tags=["openai"])
    async def openai_translations(request: Request) -> Response:
        return await openai_audio(request, "translate")


def unknown_v1_routes() -> APIRouter:
    fallback = APIRouter(prefix="/v1")

    @fallback.api_route(
        "/{rest:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"], include_in_schema=False
    )
    def unknown_v1_route(rest: str) -> None:
        # Unknown /v1 paths answer OpenAI-shaped JSON instead of reaching the Gradio mount at /.
        raise StarletteHTTPException(404, f"/v1/{rest} is not an API route")

    return fallback


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


def _speaker_options(fields: dict[str, Any], response_format: str, task: str) -> dict[str, Any]:
    """``diarize`` and the speaker counts (extra form fields) for ``response_format=diarized_json``."""
    diarized = response_format == "diarized_json"
    if diarized and task != "transcribe":
        raise errors.InvalidInput("diarized_json is a transcription format: translations are not diarized")
    if fields.get("known_speaker_references"):
        raise errors.InvalidInput(
            "known_speaker_references is not supported: speakers come back as SPEAKER_00, SPEAKER_01, "
            "...; name them afterwards with PATCH /api/transcriptions/{id}/speakers"
        )
    counts = {name: _count(fields.get(name), name) for name in SPEAKER_FIELDS}
    if not diarized and any(v is not None for v in counts.values()):
        raise errors.InvalidInput(f"{', '.join(SPEAKER_FIELDS)} need response_format=diarized_json")
    return {"diarize": diarized, **counts}


def _count(value: Any, name: str) -> int | None:
    """A speaker count form field: empty is None; anything but a whole number is a 400."""
    if value in (None, ""):
        return None
    try:
        return int(str(value))
    except ValueError:
        raise errors.InvalidInput(f"{name} must be a whole number, not {value!r}") from None


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


def _job_error(job: Job) -> errors.ModelMgrError:
    error = job.error or {"code": job.status, "message": f"the transcription was {job.status}"}
    return errors.from_code(error["code"], error["message"])


async def _stream_job(
    manager: JobManager, services: Services, upload: UploadFile, options: JobOptions
) -> Response:
    """``stream=true``: OpenAI's transcript.text.delta events per segment, then transcript.text.done."""
    bus = services.bus
    queue, _ = bus.subscribe(None)  # before the submit, so no segment is missed
    try:
        job = await submit_upload(manager, upload, options)
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
    if response_format == "diarized_json":
        return JSONResponse(_diarized(transcript))
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


def _diarized(transcript: Transcript) -> dict[str, Any]:
    """OpenAI's ``TranscriptionDiarized``: segments with ``speaker``, ``start``, ``end``, ``text``.

    The speaker is the name given with PATCH .../speakers, else pyannote's label (SPEAKER_00...).
    A segment no speaker turn overlaps is labelled "unknown" (the field is required).
    """
    segments = [
        {
            "type": "transcript.text.segment",
            "id": f"seg_{i}",
            "start": seg.start,
            "end": seg.end,
            "text": seg.text,
            "speaker": transcript.name(seg.speaker) or "unknown",
        }
        for i, seg in enumerate(transcript.segments)
    ]
    return {
        "task": "transcribe",
        "duration": transcript.duration,
        "text": _text(transcript),
        "segments": segments,
        "usage": {"type": "duration", "seconds": transcript.duration},
    }
