"""Persons and their API tokens. A token is stored only as its SHA-256 digest."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Boolean, Float, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from codeblue.store.db import Base

ROLES = ("viewer", "ingest", "responder", "lead", "risk_owner", "admin")

#: A role grants the roles it implies. risk_owner is deliberately not implied by admin: approving a
#: risky step needs a person who was named for it (the seed's senior doctor).
IMPLIES: dict[str, frozenset[str]] = {
    "viewer": frozenset({"viewer"}),
    "ingest": frozenset({"ingest"}),
    "responder": frozenset({"responder", "viewer"}),
    "lead": frozenset({"lead", "responder", "viewer"}),
    "risk_owner": frozenset({"risk_owner", "viewer"}),
    "admin": frozenset({"admin", "lead", "responder", "viewer", "ingest"}),
}


def effective_roles(roles: list[str] | tuple[str, ...] | set[str] | frozenset[str]) -> frozenset[str]:
    out: set[str] = set()
    for r in roles:
        out |= IMPLIES.get(r, frozenset())
    return frozenset(out)


class Person(Base):
    __tablename__ = "persons"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    handle: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(320), default="")
    created_at: Mapped[float] = mapped_column(Float)

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "handle": self.handle, "name": self.name, "email": self.email}


class Token(Base):
    __tablename__ = "tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("persons.id"), index=True)
    roles: Mapped[list[str]] = mapped_column()
    label: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[float] = mapped_column(Float)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
