"""The records of a download job, kept apart so every part of the package can share them.

The registry stores them, the scheduler queues them, the workers fill them in and the views
read them. With the types in a module of their own, none of those parts has to import
another just to name a ``Job``.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from modelmgr.core.catalog import ModelSpec

IN_FLIGHT = ("queued", "downloading", "verifying")


class SpeedMeter:
    """Bytes per second over a sliding window, so a stall shows as a falling speed.

    The count can go down (a retried part's discarded bytes are taken back out): the window
    then starts again from the lower count, so the speed is never negative and the discard is
    not read as a burst once the count climbs back."""

    def __init__(self, window_s: float = 3.0) -> None:
        self.window_s = window_s
        self.samples: deque[tuple[float, int]] = deque()

    def update(self, now: float, done: int) -> float | None:
        if self.samples and done < self.samples[-1][1]:
            self.samples.clear()
        self.samples.append((now, done))
        while len(self.samples) > 2 and now - self.samples[0][0] > self.window_s:
            self.samples.popleft()
        t0, b0 = self.samples[0]
        return max(0.0, (done - b0) / (now - t0)) if now - t0 > 0.05 else None


@dataclass(eq=False)
class Job:
    spec: ModelSpec
    bundle: tuple[str, ...] = ()  # alignment model ids to start when this job completes
    mode: str = "download"  # download | update | verify
    status: str = "queued"
    bytes_done: int = 0
    bytes_total: int | None = None
    speed_bps: float | None = None
    error: str | None = None
    error_code: str | None = None  # the typed error's code (auth_required, insufficient_storage, ...)
    verdict: dict[str, str] | None = None  # a verify's {"result", "message"} (manifests.verify_verdict)
    cancel: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    meter: SpeedMeter = field(default_factory=SpeedMeter)
    last_publish: float = 0.0

    def progress(self) -> dict[str, Any]:
        total = self.bytes_total
        percent = (
            round(100.0 * self.bytes_done / total, 1)
            if total
            else (100.0 if self.status == "downloaded" else 0.0)
        )
        speed = self.speed_bps if self.status == "downloading" else None
        eta = (total - self.bytes_done) / speed if speed and total else None
        return {
            "bytes_done": self.bytes_done,
            "bytes_total": total,
            "percent": min(percent, 100.0),
            "speed_bps": round(speed) if speed else None,
            "eta_s": round(eta, 1) if eta is not None else None,
        }


@dataclass(frozen=True)
class StartResult:
    status: str  # started | queued | already_downloading | already_downloaded
    job: Job | None
