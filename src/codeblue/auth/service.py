"""Create persons and tokens; authenticate a presented token."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from codeblue.auth.model import ROLES, Person, Token, effective_roles
from codeblue.errors import Forbidden, Invalid, NotFound, Unauthorized

TOKEN_PREFIX = "cb_"


@dataclass(frozen=True)
class Principal:
    """Who is calling: the person behind the token and what the token may do."""

    person_id: int
    handle: str
    name: str
    roles: frozenset[str]
    token_id: int

    def has(self, role: str) -> bool:
        return role in self.roles


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token_value() -> str:
    """128 bits of randomness, URL-safe."""
    return TOKEN_PREFIX + secrets.token_urlsafe(16)


def validate_roles(roles: list[str]) -> list[str]:
    if not roles:
        raise Invalid("at least one role is required", field="roles", allowed=list(ROLES))
    for i, r in enumerate(roles):
        if r not in ROLES:
            raise Invalid(f"unknown role {r!r}; allowed: {', '.join(ROLES)}", field=f"roles[{i}]")
    return sorted(set(roles))


def get_or_create_person(
    session: Session, *, handle: str, name: str | None = None, email: str | None = None, now: float
) -> Person:
    person = session.scalar(select(Person).where(Person.handle == handle))
    if person is None:
        person = Person(handle=handle, name=name or handle, email=email or "", created_at=now)
        session.add(person)
        session.flush()
    else:
        if name:
            person.name = name
        if email:
            person.email = email
    return person


def create_token(
    session: Session,
    *,
    handle: str,
    roles: list[str],
    now: float,
    name: str | None = None,
    email: str | None = None,
    label: str = "",
    value: str | None = None,
) -> tuple[Token, str]:
    """Create a token for a person (created if new). Returns the row and the plaintext, shown once."""
    if not handle or len(handle) > 64:
        raise Invalid("handle must be 1–64 characters", field="handle")
    roles = validate_roles(roles)
    person = get_or_create_person(session, handle=handle, name=name, email=email, now=now)
    plain = value or new_token_value()
    tok = Token(digest=digest(plain), person_id=person.id, roles=roles, label=label, created_at=now)
    session.add(tok)
    session.flush()
    return tok, plain


def authenticate(session: Session, presented: str | None) -> Principal:
    if not presented:
        raise Unauthorized("a bearer token is required (Authorization: Bearer <token>)")
    d = digest(presented)
    tok = session.scalar(select(Token).where(Token.digest == d))
    # compare_digest keeps the final comparison constant-time even though the lookup is by digest.
    if tok is None or tok.revoked or not hmac.compare_digest(tok.digest, d):
        raise Unauthorized("the token is not valid")
    person = session.get(Person, tok.person_id)
    assert person is not None
    return Principal(person.id, person.handle, person.name, effective_roles(tok.roles), tok.id)


def require(principal: Principal, *roles: str) -> None:
    """Refuse unless the principal holds at least one of `roles`."""
    if not any(principal.has(r) for r in roles):
        raise Forbidden(f"this needs the role {' or '.join(roles)}; your token has {', '.join(sorted(principal.roles))}")


def has_admin(session: Session) -> bool:
    return any("admin" in tok.roles for tok in session.scalars(select(Token).where(Token.revoked.is_(False))))


def revoke_token(session: Session, *, token_id: int) -> None:
    tok = session.get(Token, token_id)
    if tok is None:
        raise NotFound(f"no token {token_id}")
    tok.revoked = True


def person_by_handle(session: Session, handle: str) -> Person:
    person = session.scalar(select(Person).where(Person.handle == handle))
    if person is None:
        raise NotFound(f"no person with handle {handle!r}", field="handle")
    return person
