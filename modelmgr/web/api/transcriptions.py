"""The jobs API (/api/transcriptions) and the upload handling it shares with ``/v1`` (openai.py).

A thin layer over the job manager: a request is parsed, validated (every bad input gets a
clear error and changes nothing), and submitted as a job; the jobs API answers 202 at once.
Uploads are streamed to disk; ``BodyLimit`` in routes.py counts them while they arrive.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError, field_validator

from modelmgr.asr.jobs import FORMATS, Job, JobOptions
from modelmgr.asr.manager import JobManager
from modelmgr.core import errors
from modelmgr.services import Services
from modelmgr.web.api.docs import ALL_RESPONSES
from modelmgr.web.api.openai import add_openai_routes, unknown_v1_routes
from modelmgr.web.api.uploads import (
    MEDIA_TYPES,
    form_bool,
    form_fields,
    form_language,
    multipart,
    read_form,
    split_values,
    submit_upload,
)


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
    # who spoke when; the counts are hints (empty: the pipeline decides), checked by validate_options
    diarize: StrictBool | None = None
    num_speakers: int | None = None
    min_speakers: int | None = None
    max_speakers: int | None = None
    diarize_model: str | None = None

    @field_validator("word_timestamps", "vad", "diarize", mode="before")
    @classmethod
    def _bool(cls, value: Any) -> Any:
        return form_bool(value)


JOB_MULTIPART = multipart(JobForm.model_json_schema()["properties"])


def install_transcription_api(
    app: FastAPI, services: Services, require_auth: Callable[[Request], None], result_key: bytes | None
) -> None:
    """Add /api/transcriptions and /v1 routes (before any Gradio mount)."""
    manager = services.transcriptions
    settings = services.settings
    base = settings.root_path + "/"  # links carry the public prefix (--root-path) behind a proxy
    guarded = APIRouter(dependencies=[Depends(require_auth)], responses=ALL_RESPONSES)

    # --- jobs API ---
    @guarded.post(
        "/api/transcriptions", status_code=202, openapi_extra=JOB_MULTIPART, tags=["transcriptions"]
    )
    async def submit_job(request: Request) -> JSONResponse:
        form, upload = await read_form(request)
        fields = form_fields(form, {"formats"})
        body = _validate_form(fields)
        options = JobOptions(
            model=body.model or settings.default_model,
            language=form_language(body.language),
            device=body.device,
            task=body.task,
            word_timestamps=True if body.word_timestamps is None else body.word_timestamps,
            vad=True if body.vad is None else body.vad,
            batch_size=body.batch_size,
            initial_prompt=body.initial_prompt or None,
            temperature=body.temperature,
            formats=tuple(split_values(body.formats)) or FORMATS,
            diarize=bool(body.diarize),
            num_speakers=body.num_speakers,
            min_speakers=body.min_speakers,
            max_speakers=body.max_speakers,
            diarize_model=body.diarize_model or None,
        )
        job = await submit_upload(manager, upload, options)
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

    @guarded.patch("/api/transcriptions/{job_id}/speakers", tags=["transcriptions"])
    def rename_speakers(
        job_id: str,
        names: Annotated[dict[str, Any], Body(examples=[{"SPEAKER_00": "Alice", "SPEAKER_01": "Bob"}])],
    ) -> dict[str, Any]:
        """Name a diarized job's speakers; every result format is rendered again with the names
        (an empty name gives a speaker its label back). Unknown ids are a 400 and change nothing."""
        return _job_json(manager.rename_speakers(job_id, names), manager, result_key, base)

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

    add_openai_routes(guarded, services)
    app.include_router(guarded)
    app.include_router(results)
    app.include_router(unknown_v1_routes())


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


def _job_json(job: Job, manager: JobManager, key: bytes | None, base: str = "/") -> dict[str, Any]:
    data = job.describe()
    data["queue_position"] = manager.queue_positions().get(job.id)
    data["results"] = result_links(data, key, base)
    return data


# --- request parsing ---


def _validate_form(fields: dict[str, Any]) -> JobForm:
    try:
        return JobForm.model_validate({k: (v if v != "" else None) for k, v in fields.items()})
    except ValidationError as exc:
        detail = "; ".join(f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise errors.InvalidInput(detail) from None
