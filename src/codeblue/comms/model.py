"""Comms tables: the outbox and its delivery attempts, channels (secrets sealed), published updates, and a
projection of each incident's comms-relevant state (kept current from the incident hooks)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Boolean, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from codeblue.store.db import Base

#: pending → sending (claimed, leased) → delivered | pending (retry later) | dead (dead-lettered).
STATES = ("pending", "sending", "delivered", "dead")
AUDIENCES = ("internal", "status_page", "support", "executive")
CHANNEL_TYPES = ("slack", "email", "webhook", "pagerduty")


class OutboxMessage(Base):
    """One outbound message. Written in the transaction of the change that caused it; delivered after commit."""

    __tablename__ = "comms_outbox"
    __table_args__ = (Index("ix_comms_outbox_due", "state", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(32))
    dedup_key: Mapped[str] = mapped_column(String(255), unique=True)
    subject: Mapped[str] = mapped_column(String(500))
    body: Mapped[str] = mapped_column(Text)
    to: Mapped[list[str]] = mapped_column(default=list)
    incident_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[float] = mapped_column(Float)
    claimed_until: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)
    delivered_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    last_error: Mapped[str] = mapped_column(Text, default="")
    last_status: Mapped[int | None] = mapped_column(Integer, nullable=True)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "channel": self.channel,
            "kind": self.kind,
            "dedup_key": self.dedup_key,
            "subject": self.subject,
            "body": self.body,
            "to": list(self.to or []),
            "incident_id": self.incident_id,
            "data": dict(self.data or {}),
            "state": self.state,
            "attempts": self.attempts,
            "redeliveries": max(self.attempts - 1, 0),
            "next_attempt_at": self.next_attempt_at if self.state == "pending" else None,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "delivered_at": self.delivered_at,
            "last_error": self.last_error or None,
            "last_status": self.last_status,
        }


class DeliveryAttempt(Base):
    """One try at delivering a message: what happened, so the delivery state is explainable."""

    __tablename__ = "comms_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("comms_outbox.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[float] = mapped_column(Float)
    finished_at: Mapped[float] = mapped_column(Float)
    outcome: Mapped[str] = mapped_column(String(16))  # delivered | retry | dead
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str] = mapped_column(Text, default="")

    def as_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "outcome": self.outcome,
            "status_code": self.status_code,
            "error": self.error or None,
        }


class Channel(Base):
    """A configured destination. `config` holds only non-secret settings; `secret` is sealed (see crypto.py)."""

    __tablename__ = "comms_channels"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    type: Mapped[str] = mapped_column(String(16))
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    secret: Mapped[str] = mapped_column(Text, default="")
    secret_fields: Mapped[list[str]] = mapped_column(default=list)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    source: Mapped[str] = mapped_column(String(16), default="api")
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)

    def as_dict(self) -> dict[str, Any]:
        """The API shape: never the secret, only which secret fields are set."""
        return {
            "name": self.name,
            "type": self.type,
            "config": dict(self.config or {}),
            "secrets_set": sorted(self.secret_fields or []),
            "enabled": self.enabled,
            "source": self.source,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


class Update(Base):
    """A published update for one audience. Only `public` rows (audience status_page) reach the status page."""

    __tablename__ = "comms_updates"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[int] = mapped_column(Integer, index=True)
    audience: Mapped[str] = mapped_column(String(32))
    facts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    text: Mapped[str] = mapped_column(Text, default="")
    rendered: Mapped[str] = mapped_column(Text, default="")
    public: Mapped[bool] = mapped_column(Boolean, default=False)
    public_status: Mapped[str | None] = mapped_column(String(32), nullable=True)
    author: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[float] = mapped_column(Float)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "incident_id": self.incident_id,
            "audience": self.audience,
            "facts": dict(self.facts or {}),
            "text": self.text,
            "rendered": self.rendered,
            "public": self.public,
            "public_status": self.public_status,
            "author": self.author,
            "created_at": self.created_at,
        }


class IncidentView(Base):
    """What comms needs to know about an incident, projected from the incident hooks (never written by hand)."""

    __tablename__ = "comms_incidents"

    incident_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    title: Mapped[str] = mapped_column(String(200))
    severity: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(16), index=True)
    workflows: Mapped[list[str]] = mapped_column(default=list)
    milestones: Mapped[dict[str, Any]] = mapped_column(default=dict)
    roles: Mapped[dict[str, Any]] = mapped_column(default=dict)
    harm: Mapped[dict[str, Any] | None] = mapped_column(nullable=True)
    eta: Mapped[float | None] = mapped_column(Float, nullable=True)
    mitigation_path: Mapped[str | None] = mapped_column(Text, nullable=True)
    opened_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)
    closed_at: Mapped[float | None] = mapped_column(Float, nullable=True)
