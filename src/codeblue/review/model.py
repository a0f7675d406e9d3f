"""Tables of the learning loop: the persisted audit queue of served answers, post-mortem drafts (versioned)
and corrective actions."""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from codeblue.store.db import Base

BigId = BigInteger().with_variant(Integer(), "sqlite")

REVIEW_STATES = ("pending", "ok", "harmful", "remediated")
#: Audit categories, riskiest first; the tier is the leading part of an item's score.
CATEGORIES = ("wrong_entity", "action", "tool_error", "ungrounded", "refusal", "error", "answer")
TIERS = {"wrong_entity": 6, "action": 5, "tool_error": 4, "ungrounded": 3, "refusal": 2, "error": 1, "answer": 0}
ACTION_KINDS = ("technical", "operational")
ACTION_STATUSES = ("open", "in_progress", "done", "wont_do")
POSTMORTEM_STATES = ("draft", "complete")


class AuditQueue(Base):
    """One per incident: when and over which window its audit queue was materialised."""

    __tablename__ = "audit_queues"

    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"), primary_key=True, autoincrement=False)
    since: Mapped[float] = mapped_column(Float)
    until: Mapped[float] = mapped_column(Float)
    workflows: Mapped[list[str]] = mapped_column(default=list)
    suspect_versions: Mapped[dict[str, Any]] = mapped_column(default=dict)
    items: Mapped[int] = mapped_column(Integer, default=0)
    scanned: Mapped[int] = mapped_column(Integer, default=0)
    truncated: Mapped[bool] = mapped_column(default=False)
    built_at: Mapped[float] = mapped_column(Float)
    built_by: Mapped[str] = mapped_column(String(100), default="")

    def as_dict(self) -> dict[str, Any]:
        return {"incident_id": self.incident_id, "since": self.since, "until": self.until,
                "workflows": list(self.workflows or []), "suspect_versions": dict(self.suspect_versions or {}),
                "items": self.items, "scanned": self.scanned, "truncated": self.truncated,
                "built_at": self.built_at, "built_by": self.built_by}


class AuditItem(Base):
    """One served event in an incident's audit queue, at a stable rank, with its review state."""

    __tablename__ = "audit_items"
    __table_args__ = (
        UniqueConstraint("incident_id", "rank", name="uq_audit_items_incident_rank"),
        Index("ix_audit_items_incident_event", "incident_id", "event_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"))
    rank: Mapped[int] = mapped_column(Integer)
    event_id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"))
    score: Mapped[float] = mapped_column(Float)
    category: Mapped[str] = mapped_column(String(16))
    reasons: Mapped[list[str]] = mapped_column(default=list)
    time: Mapped[float] = mapped_column(Float)
    workflow: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))
    subject: Mapped[str | None] = mapped_column(String, nullable=True)
    trace_id: Mapped[str | None] = mapped_column(String, nullable=True)
    amount: Mapped[float | None] = mapped_column(Float, nullable=True)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    reviewer: Mapped[str | None] = mapped_column(String(100), nullable=True)
    note: Mapped[str] = mapped_column(Text, default="")
    reviewed_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    #: The event as it was when reviewed, so confirmed evidence outlives the event retention period.
    evidence: Mapped[dict[str, Any] | None] = mapped_column(nullable=True)


class PostmortemVersion(Base):
    """One saved version of an incident's post-mortem (each save is a new row; rows are never updated)."""

    __tablename__ = "postmortem_versions"
    __table_args__ = (UniqueConstraint("incident_id", "version", name="uq_postmortem_versions_incident_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"))
    version: Mapped[int] = mapped_column(Integer)
    markdown: Mapped[str] = mapped_column(Text)
    author: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[float] = mapped_column(Float)
    note: Mapped[str] = mapped_column(Text, default="")
    generated: Mapped[bool] = mapped_column(default=False)
    digest: Mapped[str] = mapped_column(String(64))

    def as_dict(self, *, markdown: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {"incident_id": self.incident_id, "version": self.version, "author": self.author,
                               "created_at": self.created_at, "note": self.note, "generated": self.generated,
                               "sha256": self.digest}
        if markdown:
            out["markdown"] = self.markdown
        return out


class Postmortem(Base):
    """The post-mortem's state for an incident: draft until completed; the final version is pinned."""

    __tablename__ = "postmortems"

    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"), primary_key=True, autoincrement=False)
    state: Mapped[str] = mapped_column(String(16), default="draft")
    latest_version: Mapped[int] = mapped_column(Integer, default=0)
    final_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    completed_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    completed_by: Mapped[str | None] = mapped_column(String(100), nullable=True)
    updated_at: Mapped[float] = mapped_column(Float)


class CorrectiveAction(Base):
    """A follow-up the post-mortem commits to: the technical and the operational fix, each with an owner."""

    __tablename__ = "corrective_actions"
    __table_args__ = (Index("ix_corrective_actions_status_due", "status", "due_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"), index=True)
    title: Mapped[str] = mapped_column(String(300))
    kind: Mapped[str] = mapped_column(String(16))
    owner: Mapped[str] = mapped_column(String(64))
    due_at: Mapped[float] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(16), default="open")
    link: Mapped[str] = mapped_column(Text, default="")
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[float] = mapped_column(Float)
    created_by: Mapped[str] = mapped_column(String(100))
    updated_at: Mapped[float] = mapped_column(Float)
    done_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    reminded_at: Mapped[float | None] = mapped_column(Float, nullable=True)

    def as_dict(self, *, now: float | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id, "incident_id": self.incident_id, "title": self.title, "kind": self.kind,
            "owner": self.owner, "due_at": self.due_at, "status": self.status, "link": self.link,
            "note": self.note, "created_at": self.created_at, "created_by": self.created_by,
            "updated_at": self.updated_at, "done_at": self.done_at, "reminded_at": self.reminded_at,
        }
        if now is not None:
            out["overdue"] = self.status in ("open", "in_progress") and self.due_at < now
        return out
