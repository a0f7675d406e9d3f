"""Tables of the vitals monitor's intake: stored events, their served versions, external alerts."""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, Float, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from codeblue.store.db import Base

#: 64-bit ids on PostgreSQL, INTEGER PRIMARY KEY (the rowid) on SQLite.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class StoredEvent(Base):
    """One accepted Event v1, redacted, for the audit of served answers.

    The indexed columns answer the audit's questions (workflow and time range, subject, session, trace);
    `body` holds the whole normalised event as JSON text; `version_set` points at the set of served
    versions (see `EventVersion`), so a version filter is an integer lookup, not a JSON scan.
    """

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    time: Mapped[float] = mapped_column(Float)
    received_at: Mapped[float] = mapped_column(Float)
    workflow: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))
    subject: Mapped[str | None] = mapped_column(String, nullable=True)
    session_id: Mapped[str | None] = mapped_column(String, nullable=True)
    trace_id: Mapped[str | None] = mapped_column(String, nullable=True)
    status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    version_set: Mapped[int | None] = mapped_column(Integer, nullable=True)
    body: Mapped[str] = mapped_column(Text)

    __table_args__ = (
        Index("ix_events_workflow_time", "workflow", "time"),
    )


class EventVersionSet(Base):
    """A distinct `versions` object seen on events (few per workflow: one per served combination)."""

    __tablename__ = "event_version_sets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    versions: Mapped[dict[str, Any]] = mapped_column()


class EventVersion(Base):
    """The normalised form of a version set: one row per "<kind>/<name>" → version in it."""

    __tablename__ = "event_versions"

    key: Mapped[str] = mapped_column(String(300), primary_key=True)
    version: Mapped[str] = mapped_column(String(200), primary_key=True)
    set_id: Mapped[int] = mapped_column(Integer, primary_key=True)


class ExternalAlert(Base):
    """An alert from another monitoring system (Prometheus Alertmanager), one row per firing episode."""

    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(32))
    fingerprint: Mapped[str] = mapped_column(String(128))
    name: Mapped[str] = mapped_column(String(200))
    workflow: Mapped[str | None] = mapped_column(String(200), nullable=True)
    status: Mapped[str] = mapped_column(String(16))
    labels: Mapped[dict[str, Any]] = mapped_column()
    annotations: Mapped[dict[str, Any]] = mapped_column()
    starts_at: Mapped[float] = mapped_column(Float)
    ends_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    generator_url: Mapped[str] = mapped_column(Text, default="")
    group_key: Mapped[str] = mapped_column(Text, default="")
    received_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)
    incident_id: Mapped[int | None] = mapped_column(Integer, nullable=True)

    __table_args__ = (
        UniqueConstraint("source", "fingerprint", "starts_at", name="uq_alerts_episode"),
        Index("ix_alerts_workflow_status", "workflow", "status"),
    )

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "source": self.source, "fingerprint": self.fingerprint, "name": self.name,
            "workflow": self.workflow, "status": self.status, "labels": self.labels,
            "annotations": self.annotations, "starts_at": self.starts_at, "ends_at": self.ends_at,
            "generator_url": self.generator_url, "received_at": self.received_at,
            "updated_at": self.updated_at, "incident_id": self.incident_id,
        }
