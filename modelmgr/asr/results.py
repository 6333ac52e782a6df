"""A finished job's results: the JSON transcript, and the other formats rendered from it on demand.

A job writes every format when it ends, but a client may ask for one that is missing (an older
job, a file removed by hand): it is rendered again from ``result.json``, the one source of
truth. The same for a job run here or on a distributed worker (the folder is shared).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modelmgr.asr.job_record import Job
from modelmgr.asr.subtitles import Transcript, from_json, rename_speakers, write_all
from modelmgr.core.errors import InvalidInput, ResultNotReady

MAX_SPEAKER_NAME = 80


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


def check_speaker_names(transcript: Transcript, names: Any) -> dict[str, str]:
    """``{"SPEAKER_00": "Alice"}`` checked against the transcript's speakers (InvalidInput if not).

    An empty name gives the speaker its own label back. Names are one line of printable text.
    """
    known = transcript.speakers
    if not known:
        raise InvalidInput("this transcription was not diarized: it has no speakers to rename")
    if not isinstance(names, dict) or not names:
        raise InvalidInput('send a JSON object of speaker ids to names, e.g. {"SPEAKER_00": "Alice"}')
    checked: dict[str, str] = {}
    for speaker, name in names.items():
        if speaker not in known:
            raise InvalidInput(f"{speaker!r} is not a speaker of this transcription ({', '.join(known)})")
        if not isinstance(name, str):
            raise InvalidInput(f"the name for {speaker} must be a string")
        name = " ".join(name.split())
        if len(name) > MAX_SPEAKER_NAME or any(not c.isprintable() for c in name):
            raise InvalidInput(
                f"the name for {speaker} must be printable text of at most {MAX_SPEAKER_NAME} characters"
            )
        checked[speaker] = name
    return checked


def rename_result_speakers(job: Job, names: Any) -> Transcript:
    """Give speakers names and render every format again (the JSON keeps the ids beside them).

    Renames of one job are serialised by a lock file in its folder (the folder is shared with
    the workers in cluster mode), so two renames never interleave their writes.
    """
    from filelock import FileLock

    with FileLock(str(job.folder / ".speakers.lock"), timeout=30):
        transcript = read_transcript(job)
        renamed = rename_speakers(transcript, check_speaker_names(transcript, names))
        write_all(renamed, job.folder, "result")
    return renamed


def speakers_of(transcript: Transcript) -> list[dict[str, str]]:
    """The job record's ``speakers``: each id with the name shown for it."""
    return [{"id": s, "name": transcript.name(s) or s} for s in transcript.speakers]
