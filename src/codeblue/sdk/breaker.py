"""The Guard's own automatic breaker per dependency, fed by `guard.report(dependency, ok=...)`.

closed --(`failures` failures within `window` s)--> open --(`cooldown` s)--> half_open
half_open lets at most `trial_calls` requests through; a success closes, a failure opens again.
A half-open breaker whose trials were handed out but never reported re-arms its trials after another
cool-down, so a lost report cannot keep a dependency shut forever.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    failures: int = 5
    window: float = 30.0
    cooldown: float = 15.0
    trial_calls: int = 1

    def __post_init__(self) -> None:
        if self.failures < 1:
            raise ValueError("breaker failures must be >= 1")
        if self.window <= 0 or self.cooldown <= 0:
            raise ValueError("breaker window and cooldown must be > 0 seconds")
        if self.trial_calls < 1:
            raise ValueError("breaker trial_calls must be >= 1")


class LocalBreaker:
    """One dependency's breaker. Thread-safe; every method is short and does no I/O."""

    def __init__(self, name: str, policy: BreakerPolicy, clock: Callable[[], float]) -> None:
        self.name = name
        self.policy = policy
        self._clock = clock
        self._lock = threading.Lock()
        self._failures: deque[float] = deque()
        self.state = CLOSED
        self.opened_at: float | None = None
        self._trials_left = 0
        self._trial_armed_at = 0.0
        self.transitions = 0

    def _refresh(self, now: float) -> None:
        if self.state == OPEN and self.opened_at is not None and now >= self.opened_at + self.policy.cooldown:
            self.state = HALF_OPEN
            self._trials_left = self.policy.trial_calls
            self._trial_armed_at = now
            self.transitions += 1
        elif (
            self.state == HALF_OPEN
            and self._trials_left == 0
            and now >= self._trial_armed_at + self.policy.cooldown
        ):
            self._trials_left = self.policy.trial_calls
            self._trial_armed_at = now

    def current(self) -> str:
        with self._lock:
            self._refresh(self._clock())
            return self.state

    def allow(self) -> bool:
        """Whether a call may go to the dependency now (takes a trial slot when half-open)."""
        with self._lock:
            self._refresh(self._clock())
            if self.state == CLOSED:
                return True
            if self.state == HALF_OPEN and self._trials_left > 0:
                self._trials_left -= 1
                return True
            return False

    def record(self, ok: bool) -> bool:
        """Record one call's outcome; True when the state changed."""
        with self._lock:
            now = self._clock()
            self._refresh(now)
            before = self.state
            if self.state == CLOSED:
                if ok:
                    return False
                self._failures.append(now)
                horizon = now - self.policy.window
                while self._failures and self._failures[0] < horizon:
                    self._failures.popleft()
                if len(self._failures) >= self.policy.failures:
                    self._open(now)
            elif self.state == HALF_OPEN:
                if ok:
                    self.state = CLOSED
                    self.opened_at = None
                    self._failures.clear()
                else:
                    self._open(now)
            # OPEN: calls should not be happening; their outcome says nothing about recovery yet.
            if self.state != before:
                self.transitions += 1
                return True
            return False

    def _open(self, now: float) -> None:
        self.state = OPEN
        self.opened_at = now
        self._trials_left = 0

    def as_dict(self) -> dict[str, Any]:
        with self._lock:
            now = self._clock()
            self._refresh(now)
            horizon = now - self.policy.window
            recent = sum(1 for t in self._failures if t >= horizon)
            return {
                "state": self.state,
                "failures": recent,
                "opened_at": self.opened_at,
                "retry_at": (self.opened_at + self.policy.cooldown) if self.state == OPEN and self.opened_at else None,
                "trials_left": self._trials_left if self.state == HALF_OPEN else None,
            }

    def reset_after_fork(self) -> None:
        self._lock = threading.Lock()
