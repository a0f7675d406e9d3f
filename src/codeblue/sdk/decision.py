"""What `Guard.decide` and `Guard.config` return: small immutable values, safe to share between threads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Decision:
    """Whether a request may take its normal path, and if not, where it goes instead.

    `fallback` is ``None`` or one of ``backup_model``, ``human_queue``, ``static_answer`` (with `target`,
    e.g. the backup model's name). `control_id` / `incident_id` name the control that decided, `reason` says
    why in words, `revision` is the snapshot revision the decision was made on (0 when no snapshot is
    loaded). `source` says what the decision rests on: ``snapshot`` (from the server, live or polled),
    ``lkg`` (the last-known-good file), ``default`` (the per-action default in code: nothing loaded),
    ``local_breaker`` (this process's own breaker for a dependency) or ``error`` (bad arguments).
    """

    allowed: bool
    fallback: str | None = None
    target: str | None = None
    reason: str | None = None
    control_id: int | None = None
    incident_id: int | None = None
    revision: int = 0
    control_type: str | None = None
    source: str = "snapshot"


@dataclass(frozen=True, slots=True)
class ConfigValue:
    """The version of a named config that one request gets, and its content."""

    kind: str
    name: str
    version: str
    content: Any
    candidate: bool
    revision: int

    @property
    def ident(self) -> str:
        return f"{self.kind}/{self.name}"


class Blocked(Exception):
    """Raised by a `@guard.action` function that is not allowed and has no fallback."""

    def __init__(self, decision: Decision) -> None:
        super().__init__(decision.reason or "blocked by a control")
        self.decision = decision
