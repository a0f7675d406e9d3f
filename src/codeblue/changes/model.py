"""Versioned AI configuration: kinds, named configs, immutable versions, per-environment state, the change log."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from codeblue.store.db import Base

#: The built-in config kinds (DESIGN.md); custom kinds are rows of ``config_kinds``.
CONFIG_KINDS = (
    "prompt",
    "routing_policy",
    "model_alias",
    "retrieval_index",
    "policy_template",
    "tool_contract",
    "feature_flag",
)
CHANGE_TYPES = ("activate", "rollback", "external")


class ConfigKind(Base):
    """A custom config kind registered by a user (e.g. ``output_schema``), optionally with a JSON Schema."""

    __tablename__ = "config_kinds"

    kind: Mapped[str] = mapped_column(String(64), primary_key=True)
    description: Mapped[str] = mapped_column(Text, default="")
    schema: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    author: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[float] = mapped_column(Float)

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "description": self.description,
            "schema": self.schema,
            "builtin": False,
            "author": self.author,
            "created_at": self.created_at,
        }


class Config(Base):
    """A named config (``prompt/refund-assistant``) and the workflows it touches."""

    __tablename__ = "configs"
    __table_args__ = (UniqueConstraint("kind", "name", name="uq_configs_kind_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(128))
    workflows: Mapped[list[str]] = mapped_column()
    created_at: Mapped[float] = mapped_column(Float)

    @property
    def key(self) -> str:
        return f"{self.kind}/{self.name}"


class ConfigVersion(Base):
    """One immutable version of a config: nothing updates a row of this table."""

    __tablename__ = "config_versions"
    __table_args__ = (UniqueConstraint("config_id", "version", name="uq_config_versions_config_id_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    config_id: Mapped[int] = mapped_column(ForeignKey("configs.id"))
    seq: Mapped[int] = mapped_column(Integer)
    version: Mapped[str] = mapped_column(String(64))
    content: Mapped[Any] = mapped_column(JSON)
    author: Mapped[str] = mapped_column(String(64))
    note: Mapped[str] = mapped_column(Text, default="")
    workflows: Mapped[list[str]] = mapped_column()
    created_at: Mapped[float] = mapped_column(Float)

    def as_dict(self, *, content: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "version": self.version,
            "seq": self.seq,
            "author": self.author,
            "note": self.note,
            "workflows": list(self.workflows),
            "created_at": self.created_at,
        }
        if content:
            out["content"] = self.content
        return out


class ConfigState(Base):
    """What serves in one environment: the stable version, and a candidate rolling out at `fraction`."""

    __tablename__ = "config_states"
    __table_args__ = (
        UniqueConstraint("config_id", "environment", name="uq_config_states_config_id_environment"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    config_id: Mapped[int] = mapped_column(ForeignKey("configs.id"))
    environment: Mapped[str] = mapped_column(String(64))
    stable: Mapped[str | None] = mapped_column(String(64), nullable=True)
    candidate: Mapped[str | None] = mapped_column(String(64), nullable=True)
    fraction: Mapped[float] = mapped_column(Float, default=0.0)
    #: Earlier stable versions, oldest first: what a rollback returns to, one step at a time.
    previous: Mapped[list[str]] = mapped_column()
    updated_at: Mapped[float] = mapped_column(Float)


class Change(Base):
    """Change v1 (DESIGN.md): an activation, a rollback, or an external change (a deploy, a flag elsewhere)."""

    __tablename__ = "changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    time: Mapped[float] = mapped_column(Float, index=True)
    type: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(128))
    from_version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    to_version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    fraction: Mapped[float] = mapped_column(Float)
    environment: Mapped[str] = mapped_column(String(64))
    workflows: Mapped[list[str]] = mapped_column()
    actor: Mapped[str] = mapped_column(String(64))
    incident_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    note: Mapped[str] = mapped_column(Text, default="")
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)

    def as_dict(self) -> dict[str, Any]:
        """The Change v1 shape."""
        out: dict[str, Any] = {
            "id": self.id,
            "time": self.time,
            "type": self.type,
            "kind": self.kind,
            "name": self.name,
            "from": self.from_version,
            "to": self.to_version,
            "fraction": self.fraction,
            "environment": self.environment,
            "workflows": list(self.workflows),
            "actor": self.actor,
            "incident": self.incident_id,
            "note": self.note,
        }
        if self.data:
            out["data"] = self.data
        return out
