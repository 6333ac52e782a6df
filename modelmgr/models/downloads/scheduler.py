"""Which registered jobs may run now: per-kind slots and the waiting queues.

At most ``max_whisper_downloads`` Whisper and ``max_align_downloads`` alignment jobs run (the
small models a Whisper model works with, diarization models too, share the alignment slots); the
rest wait as ``queued``, first come first served. The scheduler only decides: it hands back
the jobs that got a slot and the caller starts their threads once the lock is released, so
no thread is started (and nothing is published) while the lock is held. It has no lock of its
own: every method is called with ``JobRegistry.lock`` held, because a job is registered and
queued, or finished and its slot given to the next one, in one step.
"""

from __future__ import annotations

from collections import deque

from modelmgr.models.downloads.jobs import Job


class Scheduler:
    """Waiting queues and running counts per kind (``whisper``, ``align``)."""

    def __init__(self, limits: dict[str, int]) -> None:
        self.limits = limits
        # All guarded by JobRegistry.lock.
        self.waiting: dict[str, deque[Job]] = {"whisper": deque(), "align": deque()}
        self.running: dict[str, int] = {"whisper": 0, "align": 0}
        # shutdown: set under the lock, read without it by the request paths; interrupted jobs
        # keep their partial files to resume later.
        self.stopping = False

    @staticmethod
    def slot(job: Job) -> str:
        """The slot kind a job waits for: ``whisper``, or ``align`` for every smaller model."""
        return "whisper" if job.spec.kind == "whisper" else "align"

    def enqueue(self, job: Job) -> None:
        self.waiting[self.slot(job)].append(job)

    def withdraw(self, job: Job) -> bool:
        """Take a job out of its queue; False when it is not waiting (it runs already)."""
        queue = self.waiting[self.slot(job)]
        if job not in queue:
            return False
        queue.remove(job)
        return True

    def release(self, job: Job) -> None:
        """A running job ended: its slot is free."""
        self.running[self.slot(job)] -= 1

    def ready(self) -> list[Job]:
        """Move waiting jobs into free slots; the caller spawns the result."""
        ready: list[Job] = []
        if self.stopping:
            return ready  # shutdown began: a queued job never starts
        for kind, queue in self.waiting.items():
            while queue and self.running[kind] < self.limits[kind]:
                job = queue.popleft()
                job.status = "downloading"
                self.running[kind] += 1
                ready.append(job)
        return ready
