"""The embedded manager's queue: its jobs by id, the waiting ones in order, one thread running them.

One job at a time, because the jobs share the one loaded model (a lease on it). The queue knows
nothing of what running a job means: it hands each job to ``run`` in order, and calls ``idle``
after a quiet minute (the retention sweep). Kept apart from the manager so the locking that
orders the jobs is in one small place.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable

from modelmgr.asr.job_record import FINISHED, Job

IDLE_S = 60.0  # a quiet queue calls ``idle`` this often


class JobQueue:
    """Jobs by id (all of them, finished too), the waiting ones in order, and the worker thread."""

    def __init__(self, run: Callable[[Job], None], idle: Callable[[], None]) -> None:
        self._run, self._idle = run, idle
        # _lock guards _jobs, _waiting, _running, _stopping and _worker; held for bookkeeping only
        # (no I/O, no publishing, no waiting except Condition.wait, which releases it).
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._jobs: dict[str, Job] = {}
        self._waiting: deque[Job] = deque()
        self._running: Job | None = None
        self._stopping = False
        self._worker: threading.Thread | None = None

    @property
    def stopping(self) -> bool:
        """Shutting down: a job interrupted now is kept queued for the next start (a plain bool read)."""
        return self._stopping

    # --- lifecycle ---
    def start(self, prepare: Callable[[], None]) -> None:
        """Run ``prepare`` (loading the jobs on disk), then the worker thread. Idempotent."""
        with self._lock:
            if self._worker is not None or self._stopping:
                return
            worker = self._worker = threading.Thread(target=self._work, name="transcriptions", daemon=True)
        prepare()
        worker.start()

    def stop(self, timeout_s: float) -> None:
        """Take no more jobs; the running one is interrupted (its cancel event) and waited for."""
        with self._lock:
            self._stopping = True
            running = self._running
            worker = self._worker
            self._wake.notify_all()
        if running is not None:
            running.cancel.set()
        if worker is not None and worker is not threading.current_thread():
            worker.join(timeout_s)

    # --- jobs ---
    def add(self, job: Job) -> bool:
        """Queue a new job; False (nothing changed) when shutting down."""
        with self._lock:
            if self._stopping:
                return False
            self._jobs[job.id] = job
            self._waiting.append(job)
            self._wake.notify_all()
        return True

    def adopt(self, jobs: Iterable[Job]) -> list[Job]:
        """Take jobs read from disk, oldest first, queueing the "queued" ones; returns those.

        A job already here (submitted in this process before the disk was read) keeps its live record.
        """
        queued = []
        with self._lock:
            for job in sorted(jobs, key=lambda j: j.created_at):
                if job.id in self._jobs:
                    continue
                self._jobs[job.id] = job
                if job.status == "queued":
                    self._waiting.append(job)
                    queued.append(job)
            self._wake.notify_all()
        return queued

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def jobs(self, limit: int) -> list[Job]:
        """Newest first."""
        with self._lock:
            jobs = sorted(self._jobs.values(), key=lambda j: j.created_at, reverse=True)
        return jobs[:limit]

    def positions(self) -> dict[str, int]:
        with self._lock:
            return {job.id: i + 1 for i, job in enumerate(self._waiting)}

    def withdraw(self, job: Job) -> bool:
        """A person cancels ``job`` (unless it has finished): its cancel event is set, and it leaves
        the queue if it was waiting. True when it was waiting (nothing runs it: end it now)."""
        with self._lock:
            if job.status in FINISHED:
                return False
            job.cancel_requested = True
            job.cancel.set()
            if job not in self._waiting:
                return False
            self._waiting.remove(job)
            return True

    def forget(self, job_id: str) -> None:
        with self._lock:
            self._jobs.pop(job_id, None)

    def expire(self, expired: Callable[[Job], bool]) -> list[Job]:
        """Forget the jobs for which ``expired(job)`` holds (called under the lock: keep it pure)."""
        with self._lock:
            gone = [job for job in self._jobs.values() if expired(job)]
            for job in gone:
                del self._jobs[job.id]
        return gone

    # --- the worker thread ---
    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._waiting and not self._stopping:
                    if not self._wake.wait(timeout=IDLE_S):
                        break  # an idle minute: sweep expired results
                if self._stopping:
                    return
                job = self._waiting.popleft() if self._waiting else None
                self._running = job
            if job is None:
                self._idle()
                continue
            try:
                self._run(job)
            finally:
                with self._lock:
                    self._running = None
