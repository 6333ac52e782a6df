"""A finished job's results: the JSON transcript, and the other formats rendered from it on demand.

A job writes every format when it ends, but a client may ask for one that is missing (an older
job, a file removed by hand): it is rendered again from ``result.json``, the one source of
truth. The same for a job run here or on a distributed worker (the folder is shared).
"""

from __future__ import annotations

from pathlib import Path

from modelmgr.asr.job_record import Job
from modelmgr.asr.subtitles import Transcript, from_json, write_all
from modelmgr.core.errors import ResultNotReady


def result_file(job: Job, fmt: str) -> Path:
    """The result file of a finished job in ``fmt`` (a checked format); rendered if not written yet."""
    if job.status != "done":
        detail = f": {job.error['message']}" if job.error else ""
        raise ResultNotReady(f"job {job.id} is {job.status}, it has no result{detail}")
    path = job.result_path(fmt)
    if not path.exists():
        written = write_all(read_transcript(job), job.folder, "result")
        path = written[fmt]
    return path


def read_transcript(job: Job) -> Transcript:
    """The transcript of a finished job, read from its ``result.json``."""
    if job.status != "done":
        raise ResultNotReady(f"job {job.id} is {job.status}, it has no result")
    return from_json(job.result_path("json").read_text(encoding="utf-8"))
