"""Incident tables: the incident row (with its stored milestones and timeline chain head), role history,
and the append-only, HMAC-chained timeline."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from codeblue.store.db import Base

FAILURE_TYPES = ("answer_quality", "account_action", "tool", "retrieval", "policy_refusal", "availability", "other")
SEVERITIES = ("SEV1", "SEV2", "SEV3", "SEV4")
STATUSES = ("triggered", "investigating", "contained", "monitoring", "resolved", "closed")
#: Statuses in which an incident still needs people (alert grouping and `open=true` use these).
OPEN_STATUSES = ("triggered", "investigating", "contained", "monitoring")
ROLES = (
    "incident_lead",
    "technical_lead",
    "communications_lead",
    "support_liaison",
    "infra_owner",
    "feature_owner",
    "risk_owner",
    "ops_owner",
)
MILESTONES = (
    "detected",
    "acknowledged",
    "impact_confirmed",
    "mitigation_chosen",
    "contained",
    "mitigated",
    "resolved",
)


class Incident(Base):
    __tablename__ = "incidents"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    summary: Mapped[str] = mapped_column(Text, default="")
    workflows: Mapped[list[str]] = mapped_column(default=list)
    severity: Mapped[str] = mapped_column(String(8))
    failure_type: Mapped[str] = mapped_column(String(32))
    harm: Mapped[dict[str, Any] | None] = mapped_column(nullable=True)
    suspects: Mapped[list[Any]] = mapped_column(default=list)
    status: Mapped[str] = mapped_column(String(16), index=True)
    source: Mapped[str] = mapped_column(String(64), default="manual")
    opened_by: Mapped[str] = mapped_column(String(100), default="")
    opened_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)
    closed_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    # Milestones are stored when they happen (set once), never recomputed: the comms cadence keys off them.
    detected_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    acknowledged_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    acknowledged_by: Mapped[str | None] = mapped_column(String(100), nullable=True)
    impact_confirmed_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    mitigation_chosen_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    mitigation_path: Mapped[str | None] = mapped_column(Text, nullable=True)
    contained_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    mitigated_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    resolved_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    eta: Mapped[float | None] = mapped_column(Float, nullable=True)
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Timeline chain head, updated in the same transaction as each append. `chain_seal` is an HMAC over
    # (id, count, head) so that rolling the head back together with deleting the newest entries is detected.
    chain_count: Mapped[int] = mapped_column(Integer, default=0)
    chain_head: Mapped[str] = mapped_column(String(64), default="")
    chain_seal: Mapped[str] = mapped_column(String(64), default="")

    role_rows: Mapped[list[IncidentRole]] = relationship(
        back_populates="incident", lazy="select", order_by="IncidentRole.id"
    )

    def milestone(self, name: str) -> float | None:
        value: float | None = getattr(self, f"{name}_at")
        return value

    def milestones(self) -> dict[str, float | None]:
        return {m: self.milestone(m) for m in MILESTONES}

    def current_roles(self) -> dict[str, str]:
        return {r.role: r.handle for r in self.role_rows if r.ended_at is None}

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    def as_dict(self, *, history: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "title": self.title,
            "summary": self.summary,
            "status": self.status,
            "severity": self.severity,
            "failure_type": self.failure_type,
            "workflows": list(self.workflows or []),
            "harm": self.harm,
            "suspects": list(self.suspects or []),
            "milestones": self.milestones(),
            "acknowledged_by": self.acknowledged_by,
            "eta": self.eta,
            "mitigation_path": self.mitigation_path,
            "roles": self.current_roles(),
            "opened_at": self.opened_at,
            "opened_by": self.opened_by,
            "updated_at": self.updated_at,
            "closed_at": self.closed_at,
            "source": self.source,
            "data": dict(self.data or {}),
            "chain": {"count": self.chain_count, "head": self.chain_head},
        }
        if history:
            out["role_history"] = [r.as_dict() for r in self.role_rows]
        return out


class IncidentRole(Base):
    """Who held which incident role when. A hand-over ends the previous row and starts a new one."""

    __tablename__ = "incident_roles"
    __table_args__ = (Index("ix_incident_roles_incident_role", "incident_id", "role"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"))
    role: Mapped[str] = mapped_column(String(32))
    person_id: Mapped[int] = mapped_column(ForeignKey("persons.id"))
    handle: Mapped[str] = mapped_column(String(64))
    assigned_at: Mapped[float] = mapped_column(Float)
    assigned_by: Mapped[str] = mapped_column(String(100), default="")
    ended_at: Mapped[float | None] = mapped_column(Float, nullable=True)

    incident: Mapped[Incident] = relationship(back_populates="role_rows")

    def as_dict(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "handle": self.handle,
            "assigned_at": self.assigned_at,
            "assigned_by": self.assigned_by,
            "ended_at": self.ended_at,
        }


class TimelineEntry(Base):
    """One entry of an incident's timeline. Rows are only ever inserted (see service.append_entry)."""

    __tablename__ = "timeline_entries"
    __table_args__ = (UniqueConstraint("incident_id", "seq", name="uq_timeline_entries_incident_seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"))
    seq: Mapped[int] = mapped_column(Integer)
    time: Mapped[float] = mapped_column(Float)
    actor: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(64))
    text: Mapped[str] = mapped_column(Text, default="")
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    mac: Mapped[str] = mapped_column(String(64))

    def as_dict(self) -> dict[str, Any]:
        return {
            "incident_id": self.incident_id,
            "seq": self.seq,
            "time": self.time,
            "actor": self.actor,
            "kind": self.kind,
            "text": self.text,
            "data": self.data,
            "mac": self.mac,
        }
