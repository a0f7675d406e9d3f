"""The latest self-report of each connected SDK Guard (one row per Guard instance)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Boolean, Float, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from codeblue.store.db import Base


class SdkClient(Base):
    __tablename__ = "sdk_clients"
    __table_args__ = (Index("ix_sdk_clients_environment_last_seen", "environment", "last_seen"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64), unique=True)
    service: Mapped[str] = mapped_column(String(200), default="")
    environment: Mapped[str] = mapped_column(String(64))
    host: Mapped[str] = mapped_column(String(255), default="")
    pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    sdk_version: Mapped[str] = mapped_column(String(64), default="")
    revision: Mapped[int] = mapped_column(Integer, default=0)
    #: What the Guard decides from: snapshot (server), lkg (its file) or default (nothing loaded).
    source: Mapped[str] = mapped_column(String(16), default="default")
    #: Seconds since the server last confirmed the Guard's revision, as the Guard measured it when reporting.
    stale_for: Mapped[float | None] = mapped_column(Float, nullable=True)
    connected: Mapped[bool] = mapped_column(Boolean, default=False)
    on_defaults: Mapped[bool] = mapped_column(Boolean, default=False)
    #: How many actions would fail open while the Guard has no snapshot.
    fail_open: Mapped[int] = mapped_column(Integer, default=0)
    breakers_open: Mapped[int] = mapped_column(Integer, default=0)
    events_dropped: Mapped[int] = mapped_column(Integer, default=0)
    closed: Mapped[bool] = mapped_column(Boolean, default=False)
    report: Mapped[dict[str, Any]] = mapped_column()
    reported_by: Mapped[str] = mapped_column(String(64), default="")
    first_seen: Mapped[float] = mapped_column(Float)
    last_seen: Mapped[float] = mapped_column(Float)
    heartbeats: Mapped[int] = mapped_column(Integer, default=0)
