"""Add connections while they pay: 1, 2, 4, 8, ... as long as each step raises the rate.

Why: behind a per-connection cap (CDNs, mirrors) every connection adds its cap, but a server
without one only gets slower with more connections (measured on the 2-core dev machine,
128 MiB from the Python test hub: 1 curl 0.95 s, 8 ranged curls 2.23 s). Each level is
measured for ``_RAMP_S``; a step that raises the rate by less than ``_RAMP_GAIN`` stops the
ramp (and goes back a level if the rate fell). This module only decides; the scheduler
measures and applies.
"""

from __future__ import annotations

_RAMP_S = 0.4  # how long each connection level is measured
_RAMP_GAIN = 1.3  # the next level must raise the rate by this factor, or the ramp stops


class Ramp:
    """The connection level of one file, from the bytes counted over time."""

    def __init__(self, connections: int, enabled: bool) -> None:
        self._levels = [1]
        while self._levels[-1] < connections:
            self._levels.append(min(connections, self._levels[-1] * 2))
        self._level = 0
        self._best: float | None = None  # the best rate measured so far (bytes/s)
        self._mark: tuple[float, int] | None = None  # (when, bytes counted) the level began
        self.active = enabled and len(self._levels) > 1

    def stop(self) -> None:
        self.active = False

    def observe(self, now: float, counted: int) -> int | None:
        """The parts now allowed in flight once a level is measured, else None."""
        if self._mark is None:
            self._mark = (now, counted)
            return None
        if now - self._mark[0] < _RAMP_S:
            return None
        rate = (counted - self._mark[1]) / (now - self._mark[0])
        if self._best is None or rate >= self._best * _RAMP_GAIN:
            self._best = rate
            self._level += 1
            self.active = self._level + 1 < len(self._levels)
        else:
            if rate < self._best:
                self._level -= 1
            self.active = False
        return self._levels[min(self._level, len(self._levels) - 1)]

    def measure_from(self, now: float, counted: int) -> None:
        """The new level starts being measured here."""
        self._mark = (now, counted)
