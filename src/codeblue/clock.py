"""One clock for the whole server: real, accelerated (demos) or driven by event time (replays, tests)."""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    """Seconds since the Unix epoch, as the system should see them."""

    def now(self) -> float: ...

    def sleep(self, seconds: float) -> None:
        """Sleep for `seconds` of this clock's time."""


class RealClock:
    """Wall-clock time."""

    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class AcceleratedClock:
    """Time that runs `speed` times faster than the wall clock, from `start` (default: now)."""

    def __init__(self, speed: float, start: float | None = None) -> None:
        if speed <= 0:
            raise ValueError("clock speed must be > 0")
        self.speed = speed
        self._wall0 = time.time()
        self._t0 = self._wall0 if start is None else start

    def now(self) -> float:
        return self._t0 + (time.time() - self._wall0) * self.speed

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds / self.speed)


class ManualClock:
    """A clock that only moves when told to: replays follow event time, tests step it."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._cond = threading.Condition()

    def now(self) -> float:
        return self._now

    def set(self, t: float) -> None:
        """Move to `t`; never backwards."""
        with self._cond:
            if t > self._now:
                self._now = t
                self._cond.notify_all()

    def advance(self, seconds: float) -> None:
        self.set(self._now + seconds)

    def sleep(self, seconds: float) -> None:
        # A manual clock does not pass time by itself; sleeping yields briefly so other threads can run.
        time.sleep(0.001)


def make_clock(speed: float = 1.0, start: float | None = None) -> Clock:
    """The clock for `codeblue serve --clock-speed N`."""
    if speed == 1.0 and start is None:
        return RealClock()
    return AcceleratedClock(speed, start)
