"""JobManager: the one surface the API, the UI and the CLI use to transcribe, whoever runs the jobs.

Two managers implement it: ``TranscriptionManager`` (jobs.py: this process runs its jobs, one
at a time) and, in cluster mode, ``RemoteTranscriptionManager`` (``modelmgr.distributed.jobs``:
Celery workers run them, Redis holds their records). The web layer and the CLI are typed
against this protocol only, so they cannot come to depend on one mode's internals, and what a
manager must offer is written down in one place.

It also holds the requests whose logic is the same in terms of this surface whichever
manager answers (``snapshot_of``, ``delete_job``, ``rename_job_speakers``), and ``NoWorkers``:
the cluster part of the surface for a manager that has no workers.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from modelmgr.asr.job_record import FINISHED, Job, JobOptions
from modelmgr.asr.results import rename_result_speakers, speakers_of
from modelmgr.asr.subtitles import Transcript
from modelmgr.core.errors import InvalidInput
from modelmgr.core.settings import Settings


class JobManager(Protocol):
    """Transcription jobs: submit, follow, cancel, delete, fetch the results."""

    settings: Settings
    root: Path  # where uploads are spooled before ``submit`` (the jobs' folders)

    # --- lifecycle ---
    def start(self) -> None:
        """Begin taking jobs (re-queueing interrupted ones where there is a local queue). Idempotent."""
        ...

    def shutdown(self, timeout_s: float = 5.0) -> None: ...

    # --- requests ---
    def validate(self, options: JobOptions) -> JobOptions:
        """Every option checked up front (InvalidInput and friends); returns them normalised."""
        ...

    def check_format(self, fmt: str) -> str:
        """``fmt`` if it is a result format, else UnsupportedFormat."""
        ...

    def submit(self, upload: Path, filename: str, options: JobOptions) -> Job:
        """Queue a transcription of ``upload`` (moved into the job's folder). Call off the event loop."""
        ...

    def get(self, job_id: str) -> Job:
        """The job (JobNotFound if there is none)."""
        ...

    def jobs(self, limit: int = 100) -> list[Job]:
        """Newest first."""
        ...

    def snapshot(self, limit: int = 50) -> list[dict[str, Any]]:
        """The newest jobs as clients see them, with their queue positions (the UI, SSE snapshots)."""
        ...

    def queue_positions(self) -> dict[str, int]:
        """Queued jobs' ids -> their place in the queue (1 is next)."""
        ...

    def cancel(self, job_id: str) -> Job:
        """Cancel a queued or running job (a finished job is left as it is)."""
        ...

    def delete(self, job_id: str) -> str:
        """Cancel a job in flight ("cancelling") or remove a finished one and its files ("deleted")."""
        ...

    def result(self, job_id: str, fmt: str) -> Path:
        """The result file of a finished job in ``fmt`` (ResultNotReady before)."""
        ...

    def transcript(self, job_id: str) -> Transcript:
        """The transcript of a finished job (ResultNotReady before)."""
        ...

    def rename_speakers(self, job_id: str, names: dict[str, str]) -> Job:
        """Name a diarized job's speakers (``{"SPEAKER_00": "Alice"}``); every format is rendered again."""
        ...

    # --- the workers (cluster mode; the web layer asks only when ``services.distributed``) ---
    def health(self) -> dict[str, Any]:
        """Whether the queue (Redis) can be reached and how many workers are connected."""
        ...

    def workers(self) -> list[dict[str, Any]]:
        """The connected workers' heartbeats."""
        ...

    def models_on_workers(self) -> set[str]:
        """Models some connected worker has on disk."""
        ...

    def download_on_workers(self, model: str, languages: list[str] | None) -> list[str]:
        """Ask every connected worker to download ``model``; returns their names."""
        ...

    def preload_on_worker(self, name: str, model: str, language: str | None, device: str) -> None:
        """Ask worker ``name`` to preload ``model``."""
        ...


DISTRIBUTED_ONLY = "worker actions exist in distributed mode only (MODELMGR_REDIS_URL)"


class NoWorkers:
    """The cluster part of JobManager for a manager that runs its jobs itself: a cluster of none."""

    def health(self) -> dict[str, Any]:
        return {"redis": "unused", "workers": 0}

    def workers(self) -> list[dict[str, Any]]:
        return []

    def models_on_workers(self) -> set[str]:
        return set()

    def download_on_workers(self, model: str, languages: list[str] | None) -> list[str]:
        raise InvalidInput(DISTRIBUTED_ONLY)

    def preload_on_worker(self, name: str, model: str, language: str | None, device: str) -> None:
        raise InvalidInput(DISTRIBUTED_ONLY)


def snapshot_of(manager: JobManager, limit: int) -> list[dict[str, Any]]:
    """``manager.snapshot``: the newest jobs described, each with its queue position (None: not queued)."""
    positions = manager.queue_positions()
    return [job.describe() | {"queue_position": positions.get(job.id)} for job in manager.jobs(limit)]


def delete_job(
    manager: JobManager, job_id: str, remove: Callable[[Job], None], *, reread: bool = False
) -> str:
    """``manager.delete``: a job in flight is cancelled, and removed (``remove``) only once finished.

    ``reread``: the job's state lives elsewhere (Redis), so read it again after the cancel to see
    whether it ended at once (a job no worker runs yet) or its worker has yet to stop it.
    """
    job = manager.get(job_id)
    if job.status not in FINISHED:
        manager.cancel(job_id)
        if reread:
            job = manager.get(job_id)
        if job.status not in FINISHED:
            return "cancelling"
    remove(job)
    return "deleted"


def rename_job_speakers(
    manager: JobManager, job_id: str, names: dict[str, str], save: Callable[[Job], None]
) -> Job:
    """``manager.rename_speakers``: rename in the results, then record the names on the job (``save``
    stores and publishes it, wherever this manager keeps its records)."""
    job = manager.get(job_id)
    transcript = rename_result_speakers(job, names)
    job.speakers = speakers_of(transcript)
    save(job)
    return job
