"""On-call tables: schedules (layers as JSON), overrides, escalation policies, escalations and pages."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from codeblue.store.db import Base


class Schedule(Base):
    __tablename__ = "oncall_schedules"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    domain: Mapped[str] = mapped_column(String(16), index=True)
    workflow: Mapped[str | None] = mapped_column(String(200), nullable=True, index=True)
    timezone: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(Text, default="")
    layers: Mapped[list[Any]] = mapped_column()
    source: Mapped[str] = mapped_column(String(16), default="api")  # "api" or "config"
    created_by: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "name": self.name, "domain": self.domain, "workflow": self.workflow,
            "timezone": self.timezone, "description": self.description, "layers": self.layers,
            "source": self.source, "created_by": self.created_by, "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


class Override(Base):
    __tablename__ = "oncall_overrides"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    schedule_id: Mapped[int] = mapped_column(ForeignKey("oncall_schedules.id", ondelete="CASCADE"), index=True)
    handle: Mapped[str] = mapped_column(String(64))
    starts_at: Mapped[float] = mapped_column(Float)
    ends_at: Mapped[float] = mapped_column(Float, index=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[float] = mapped_column(Float)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "schedule_id": self.schedule_id, "handle": self.handle, "start": self.starts_at,
            "end": self.ends_at, "reason": self.reason, "created_by": self.created_by, "created_at": self.created_at,
        }


class Policy(Base):
    __tablename__ = "oncall_policies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    position: Mapped[int] = mapped_column(Integer, default=0)
    match: Mapped[dict[str, Any]] = mapped_column()
    levels: Mapped[list[Any]] = mapped_column()
    repeat: Mapped[int] = mapped_column(Integer, default=0)
    source: Mapped[str] = mapped_column(String(16), default="api")
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "name": self.name, "position": self.position, "match": self.match,
            "levels": self.levels, "repeat": self.repeat, "source": self.source,
            "created_at": self.created_at, "updated_at": self.updated_at,
        }


ESCALATION_STATES = ("active", "acknowledged", "exhausted", "cancelled")


class Escalation(Base):
    """One incident's run through an escalation policy."""

    __tablename__ = "oncall_escalations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[int] = mapped_column(Integer, index=True)
    policy: Mapped[str] = mapped_column(String(64))
    levels: Mapped[list[Any]] = mapped_column()  # the policy's levels when the run started
    repeat: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), index=True)
    cycle: Mapped[int] = mapped_column(Integer, default=0)
    level: Mapped[int] = mapped_column(Integer, default=0)
    next_at: Mapped[float | None] = mapped_column(Float, nullable=True, index=True)
    started_at: Mapped[float] = mapped_column(Float)
    ended_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    ended_by: Mapped[str] = mapped_column(String(64), default="")
    history: Mapped[list[Any]] = mapped_column()

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "incident_id": self.incident_id, "policy": self.policy, "state": self.state,
            "cycle": self.cycle, "level": self.level, "levels": self.levels, "repeat": self.repeat,
            "next_at": self.next_at, "started_at": self.started_at, "ended_at": self.ended_at,
            "ended_by": self.ended_by, "history": self.history,
        }


class Page(Base):
    """A page sent to a person about an incident (delivery itself is the comms outbox's)."""

    __tablename__ = "oncall_pages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[int] = mapped_column(Integer, index=True)
    handle: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text, default="")
    dedup_key: Mapped[str] = mapped_column(String(255), unique=True)
    channels: Mapped[list[str]] = mapped_column()
    actor: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[float] = mapped_column(Float)
    ack_expires_at: Mapped[float] = mapped_column(Float)
    acked_at: Mapped[float | None] = mapped_column(Float, nullable=True)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "incident_id": self.incident_id, "handle": self.handle, "role": self.role,
            "reason": self.reason, "dedup_key": self.dedup_key, "channels": self.channels, "actor": self.actor,
            "created_at": self.created_at, "ack_expires_at": self.ack_expires_at, "acked_at": self.acked_at,
        }
