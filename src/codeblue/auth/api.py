"""Token and person routes."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from codeblue.auth import service
from codeblue.auth.model import Person
from codeblue.http import RT, Admin, Viewer

router = APIRouter(prefix="/v1", tags=["auth"])


class TokenIn(BaseModel):
    handle: str = Field(min_length=1, max_length=64, description="the person the token belongs to")
    name: str | None = Field(default=None, max_length=200)
    email: str | None = Field(default=None, max_length=320)
    roles: list[str] = Field(min_length=1)
    label: str = Field(default="", max_length=200)


@router.post("/tokens", status_code=201)
def create_token(body: TokenIn, rt: RT, who: Admin) -> dict[str, Any]:
    """Create a token; its value is in this response only."""
    with rt.db.write() as s:
        tok, plain = service.create_token(
            s, handle=body.handle, roles=body.roles, now=rt.clock.now(), name=body.name,
            email=body.email, label=body.label or f"created by {who.handle}",
        )
        return {"id": tok.id, "token": plain, "handle": body.handle, "roles": tok.roles}


@router.delete("/tokens/{token_id}", status_code=204)
def revoke_token(token_id: int, rt: RT, _who: Admin) -> None:
    with rt.db.write() as s:
        service.revoke_token(s, token_id=token_id)


@router.get("/me")
def me(who: Viewer) -> dict[str, Any]:
    return {"id": who.person_id, "handle": who.handle, "name": who.name, "roles": sorted(who.roles)}


@router.get("/persons")
def persons(rt: RT, _who: Viewer) -> list[dict[str, Any]]:
    from sqlalchemy import select

    with rt.db.read() as s:
        return [p.as_dict() for p in s.scalars(select(Person).order_by(Person.handle))]
