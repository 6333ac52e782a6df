"""The table of jobs by repository, and the one lock of the download package.

Jobs are keyed by ``repo_id`` because that is what is fetched and deleted: an alias such as
``large`` for ``large-v3`` finds its twin's job here, so there is never a second transfer of
the same files. Whoever asks for a job does check -> lock -> check again -> register, and the
second check and the registration happen under ``lock`` so two callers can never both
register. The scheduler's queues live under the same lock (a job is registered and queued in
one step, and finishing frees its slot in the same step), which is why the lock lives here and
the scheduler has none of its own.
"""

from __future__ import annotations

import threading

from modelmgr.core.catalog import ModelSpec
from modelmgr.core.errors import ModelBusy
from modelmgr.models.downloads.jobs import Job


class JobRegistry:
    """In-flight jobs, the last outcome per repository, deletes under way, worker threads."""

    def __init__(self) -> None:
        # lock guards jobs, outcomes, deleting and threads, and the Scheduler's waiting queues,
        # running counts and stopping flag. It is held only for dictionary work: no I/O, no
        # publishing, no thread joins inside it.
        self.lock = threading.Lock()
        self.jobs: dict[str, Job] = {}  # every job in flight (queued or running), by repo id
        self.outcomes: dict[str, Job] = {}  # the last finished job per repo id (to show errors)
        self.deleting: set[str] = set()  # repo ids
        self.threads: set[threading.Thread] = set()

    def current(self, repo_id: str) -> Job | None:
        """The job in flight for a repository, else its last finished one (read without the lock)."""
        return self.jobs.get(repo_id) or self.outcomes.get(repo_id)

    def register(self, job: Job) -> None:
        """A new job in flight replaces the last outcome. Caller holds lock."""
        self.jobs[job.spec.repo_id] = job
        self.outcomes.pop(job.spec.repo_id, None)

    def retire(self, job: Job) -> None:
        """The job is no longer in flight; it stays visible as the outcome. Caller holds lock."""
        self.jobs.pop(job.spec.repo_id, None)
        self.outcomes[job.spec.repo_id] = job

    def finish(self, job: Job) -> None:
        """Called by a job's own worker thread as it ends. Caller holds lock."""
        self.retire(job)
        self.threads.discard(threading.current_thread())

    def record_failure(self, job: Job) -> bool:
        """Keep a job that never ran as the outcome, unless a real job started meanwhile."""
        with self.lock:
            if job.spec.repo_id in self.jobs:
                return False  # a job started meanwhile: its own state is the truth
            self.outcomes[job.spec.repo_id] = job
        return True

    def refuse_while_deleting(self, spec: ModelSpec) -> None:
        """``ModelBusy`` while ``spec``'s repository is being deleted (a new job would fetch its
        files back behind the delete). Caller holds ``lock``."""
        if spec.repo_id in self.deleting:
            raise ModelBusy(f"{spec.id} is being deleted")

    def begin_delete(self, spec: ModelSpec) -> None:
        """Mark the repository as being deleted; refused while it has a job or another delete."""
        with self.lock:
            job = self.jobs.get(spec.repo_id)
            if job is not None:
                what = "verified" if job.mode == "verify" else "downloaded"
                raise ModelBusy(f"{spec.repo_id} is being {what} (as {job.spec.id}); cancel it first")
            self.refuse_while_deleting(spec)
            self.deleting.add(spec.repo_id)

    def end_delete(self, repo_id: str) -> None:
        with self.lock:
            self.deleting.discard(repo_id)
            self.outcomes.pop(repo_id, None)
