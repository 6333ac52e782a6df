"""The job folders on disk: the upload moved in, ``job.json`` written at every stage, read back.

Each job owns ``<root>/<id>/`` (its input, its results, its ``job.json``). The embedded manager
reloads the folders on start (finished jobs survive a restart, interrupted ones run again); in
cluster mode the folder sits in the data directory the web process and the workers share, and
its ``job.json`` outlives a Redis wipe. Retention (what a sweep removes) is decided here once
for both: the embedded manager sweeps its jobs in memory, the web process the Redis records.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
import uuid
from pathlib import Path
from typing import NamedTuple

from modelmgr.asr.job_record import FINISHED, Job, job_from_record, stored_record
from modelmgr.core.settings import Settings

log = logging.getLogger(__name__)
_SAFE_NAME = re.compile(r"[^\w.\- ]+")


class StoredUpload(NamedTuple):
    """An upload taken into its new job's folder."""

    id: str  # the new job's id (its folder's name)
    filename: str  # the display/download name (safe_filename)
    path: Path  # the input file in the job's folder
    size_bytes: int


class JobStore:
    """The folders under ``root``, one per job."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def adopt(self, upload: Path, filename: str) -> StoredUpload:
        """Move ``upload`` into a new job folder (call once the request has been checked)."""
        size = upload.stat().st_size if upload.exists() else 0
        job_id = uuid.uuid4().hex
        folder = self.root / job_id
        folder.mkdir(parents=True, exist_ok=True)
        name = safe_filename(filename)
        target = folder / ("input" + (Path(name).suffix.lower()[:12] or ".audio"))
        shutil.move(str(upload), target)
        return StoredUpload(job_id, name, target, size)

    def save(self, job: Job) -> None:
        """Write the job's ``job.json`` atomically; a failure is logged (the job goes on in memory)."""
        try:
            job.folder.mkdir(parents=True, exist_ok=True)
            tmp = job.folder / "job.json.tmp"
            tmp.write_text(json.dumps(stored_record(job)), encoding="utf-8")
            os.replace(tmp, job.folder / "job.json")
        except OSError as exc:  # a full disk must not kill the worker; the job still finishes in memory
            log.warning("could not save job %s: %s", job.id, exc)

    def load(self) -> list[Job]:
        """Every readable job record under ``root``, in folder order (unreadable ones are skipped)."""
        if not self.root.is_dir():
            return []
        jobs = (_job_from_folder(folder) for folder in sorted(self.root.iterdir()))
        return [job for job in jobs if job is not None]

    def folder(self, job_id: str) -> Path:
        return self.root / job_id

    @staticmethod
    def remove(folder: Path) -> None:
        """Remove a job's folder (input, results, record); a folder already gone is fine."""
        shutil.rmtree(folder, ignore_errors=True)


def retention_cutoff(settings: Settings) -> float:
    """Jobs that finished before this time (``transcription_retention_s`` ago) have expired."""
    return time.time() - settings.transcription_retention_s


def expired(status: str, finished_at: float | None, cutoff: float) -> bool:
    return status in FINISHED and (finished_at or 0) < cutoff


def safe_filename(name: str) -> str:
    """A display/download name from an uploaded file name: no folders, no odd characters."""
    base = Path(name.replace("\\", "/")).name.strip() or "audio"
    cleaned = _SAFE_NAME.sub("_", base)[:120].strip(" .") or "audio"
    return cleaned


def _job_from_folder(folder: Path) -> Job | None:
    try:
        record = json.loads((folder / "job.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return job_from_record(record, folder)
