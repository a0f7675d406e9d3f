"""The stability kit's tables: controls, the global revision counter and the revision log."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Float, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from codeblue.store.db import Base

CONTROL_TYPES = ("kill_switch", "breaker", "fallback", "tool_disable", "traffic", "rollout_freeze")
SCOPE_FIELDS = ("workflow", "action", "tool", "dependency", "segment", "tenant")
FALLBACKS = ("backup_model", "human_queue", "static_answer")
BREAKER_STATES = ("open", "half_open", "closed")


class Control(Base):
    """One control. Lifting keeps the row (active = False) so the record of containment survives."""

    __tablename__ = "controls"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    environment: Mapped[str] = mapped_column(String(64))
    type: Mapped[str] = mapped_column(String(32))
    scope: Mapped[dict[str, Any]] = mapped_column(JSON)
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    reason: Mapped[str] = mapped_column(Text)
    author: Mapped[str] = mapped_column(String(64))
    incident_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    lift_condition: Mapped[str | None] = mapped_column(Text, nullable=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    lifted_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    lifted_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lift_reason: Mapped[str | None] = mapped_column(Text, nullable=True)

    @property
    def specificity(self) -> int:
        return sum(1 for f in SCOPE_FIELDS if self.scope.get(f, "*") != "*")

    def as_snapshot_dict(self) -> dict[str, Any]:
        """The control as the snapshot and stream carry it (docs/architecture.md)."""
        return {
            "id": self.id,
            "type": self.type,
            "scope": {f: self.scope.get(f, "*") for f in SCOPE_FIELDS},
            "params": dict(self.params),
            "reason": self.reason,
            "incident_id": self.incident_id,
            "author": self.author,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "lift_condition": self.lift_condition,
        }

    def as_dict(self) -> dict[str, Any]:
        """The full record, for the API and the CLI."""
        out = self.as_snapshot_dict()
        out.update(
            environment=self.environment,
            updated_at=self.updated_at,
            active=self.active,
            lifted_at=self.lifted_at,
            lifted_by=self.lifted_by,
            lift_reason=self.lift_reason,
        )
        return out


class ControlsRevision(Base):
    """A single row (id 1): the global revision. Its row lock serialises every control/config change."""

    __tablename__ = "controls_revision"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    revision: Mapped[int] = mapped_column(BigInteger)


class RevisionLogEntry(Base):
    """One revision: the patch it made to one environment's snapshot, and that environment's previous revision."""

    __tablename__ = "controls_revision_log"

    revision: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    environment: Mapped[str] = mapped_column(String(64))
    prev: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[float] = mapped_column(Float)
    patch: Mapped[dict[str, Any]] = mapped_column(JSON)
