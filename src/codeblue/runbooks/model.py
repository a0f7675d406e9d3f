"""Runbook runs and their steps, and recovery plans. One row per step per incident: a retry never
applies a step twice, and a restarted executor resumes where it stopped."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from codeblue.store.db import Base

#: pending → (awaiting_approval | proposed) → running → done | failed | denied | skipped
STEP_STATES = ("pending", "proposed", "awaiting_approval", "waiting", "done", "failed", "denied", "skipped")
FINAL_STATES = ("done", "failed", "denied", "skipped")


class RunbookRun(Base):
    __tablename__ = "runbook_runs"
    __table_args__ = (UniqueConstraint("incident_id", "runbook", name="uq_runbook_runs_incident_runbook"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"), index=True)
    runbook: Mapped[str] = mapped_column(String(100))
    file: Mapped[str] = mapped_column(String(500))
    content_hash: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))  # runbook | default
    state: Mapped[str] = mapped_column(String(16))  # running | proposed | done
    dry_run: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[float] = mapped_column(Float)
    created_by: Mapped[str] = mapped_column(String(64))
    context: Mapped[dict[str, Any]] = mapped_column()
    spec: Mapped[dict[str, Any]] = mapped_column()

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "incident_id": self.incident_id, "runbook": self.runbook, "file": self.file,
                "content_hash": self.content_hash, "kind": self.kind, "state": self.state,
                "created_at": self.created_at, "created_by": self.created_by, "context": self.context,
                "rollback_option": self.spec.get("rollback_option"),
                "communication": self.spec.get("communication"),
                "postmortem_owner": self.spec.get("postmortem_owner")}


class RunbookStep(Base):
    __tablename__ = "runbook_steps"
    __table_args__ = (
        UniqueConstraint("run_id", "step_id", name="uq_runbook_steps_run_step"),
        Index("ix_runbook_steps_state", "state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runbook_runs.id"), index=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"), index=True)
    step_id: Mapped[str] = mapped_column(String(64))
    position: Mapped[int] = mapped_column(Integer)
    type: Mapped[str] = mapped_column(String(32))
    spec: Mapped[dict[str, Any]] = mapped_column()
    state: Mapped[str] = mapped_column(String(24))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    started_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    requested_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    approved_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    denied_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    result: Mapped[dict[str, Any]] = mapped_column()
    error: Mapped[str] = mapped_column(Text, default="")

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "run_id": self.run_id, "step_id": self.step_id, "position": self.position,
                "type": self.type, "state": self.state, "attempts": self.attempts,
                "approval": self.spec.get("approval"), "auto": self.spec.get("auto", True),
                "requested_by": self.requested_by, "approved_by": self.approved_by, "denied_by": self.denied_by,
                "started_at": self.started_at, "finished_at": self.finished_at, "result": self.result,
                "error": self.error, "spec": self.spec}


class RecoveryPlan(Base):
    """A progressive lift of an incident's containment: traffic admitted 1 → 10 → 50 → 100 %, verified."""

    __tablename__ = "recovery_plans"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"), index=True)
    state: Mapped[str] = mapped_column(String(24))  # awaiting_approval | ramping | done | reverted | cancelled
    ramp: Mapped[list[Any]] = mapped_column()
    hold_s: Mapped[float] = mapped_column(Float)
    min_events: Mapped[int] = mapped_column(Integer)
    stage: Mapped[int] = mapped_column(Integer, default=0)
    stage_started_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    held_since: Mapped[float | None] = mapped_column(Float, nullable=True)
    conditions: Mapped[list[Any]] = mapped_column()
    original: Mapped[list[Any]] = mapped_column()  # the containment controls it replaced (as dicts)
    traffic_ids: Mapped[list[Any]] = mapped_column()
    side_effects: Mapped[bool] = mapped_column(default=False)
    requested_by: Mapped[str] = mapped_column(String(64))
    approved_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[float] = mapped_column(Float)
    reason: Mapped[str] = mapped_column(Text, default="")

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "incident_id": self.incident_id, "state": self.state, "ramp": self.ramp,
                "hold_s": self.hold_s, "min_events": self.min_events, "stage": self.stage,
                "percent": self.ramp[self.stage] if self.stage < len(self.ramp) else 100,
                "stage_started_at": self.stage_started_at, "held_since": self.held_since,
                "conditions": self.conditions, "traffic_controls": self.traffic_ids,
                "side_effects": self.side_effects, "requested_by": self.requested_by,
                "approved_by": self.approved_by, "created_at": self.created_at, "reason": self.reason}
