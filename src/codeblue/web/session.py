"""Console sessions: an HMAC-signed cookie that references an API token, and per-session CSRF tokens.

Logging in with an API token sets ``cb_session``: ``<payload>.<mac>`` where the payload names the token row
and carries a keyed fingerprint of the token's SHA-256 digest (never the token, never the bare digest), the
issue and expiry times and a random nonce; the MAC is HMAC-SHA256 under the server key. Every request reloads
the token row, so revoking the token ends its console sessions at once, and checks that the session was not
signed out: signing out records the end of the session server-side (`codeblue.web.model`), so a copy of the
cookie stops working too. The cookie is HttpOnly and SameSite=Strict (Secure behind https).

Every state-changing console request must carry the session's CSRF token (form field ``csrf`` or header
``X-CSRF-Token``), derived from the session nonce under the server key and compared in constant time. A
request with a bearer token instead of a cookie needs no CSRF token: a bearer token is never sent by the
browser on its own.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

import anyio.to_thread
import orjson
from fastapi import Depends, Request
from sqlalchemy import delete
from sqlalchemy.orm import Session

from codeblue.auth.model import Person, Token, effective_roles
from codeblue.auth.service import Principal, authenticate, digest, require
from codeblue.errors import Forbidden, Unauthorized
from codeblue.http import RT, current_principal
from codeblue.runtime import Job, Runtime
from codeblue.web.model import ConsoleSessionEnd

COOKIE = "cb_session"
LOGIN_COOKIE = "cb_login_csrf"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(rt: Runtime, purpose: str, data: bytes) -> bytes:
    return hmac.new(rt.server_key, purpose.encode() + b"\x00" + data, hashlib.sha256).digest()


def token_fingerprint(rt: Runtime, token_digest: str) -> str:
    """A keyed fingerprint of a token digest: binds the session to the token without carrying the digest."""
    return _b64(_mac(rt, "console-token", token_digest.encode())[:18])


@dataclass(frozen=True)
class ConsoleSession:
    token_id: int
    fingerprint: str
    issued_at: float
    expires_at: float
    nonce: str

    def csrf(self, rt: Runtime) -> str:
        return _b64(_mac(rt, "console-csrf", self.nonce.encode())[:24])


def issue(rt: Runtime, *, token_id: int, token_digest: str) -> tuple[str, ConsoleSession]:
    now = rt.clock.now()
    sess = ConsoleSession(token_id=token_id, fingerprint=token_fingerprint(rt, token_digest), issued_at=now,
                          expires_at=now + rt.settings.console_session_ttl_s, nonce=secrets.token_urlsafe(18))
    payload = orjson.dumps({"t": sess.token_id, "f": sess.fingerprint, "i": sess.issued_at, "e": sess.expires_at,
                            "n": sess.nonce})
    value = _b64(payload) + "." + _b64(_mac(rt, "console-session", payload))
    return value, sess


def read(rt: Runtime, value: str | None) -> ConsoleSession | None:
    """The session a cookie value carries, or None when it is absent, forged, malformed or expired."""
    if not value or value.count(".") != 1 or len(value) > 2048:
        return None
    raw_payload, raw_mac = value.split(".")
    try:
        payload = _unb64(raw_payload)
        mac = _unb64(raw_mac)
    except (ValueError, TypeError):
        return None
    if not hmac.compare_digest(mac, _mac(rt, "console-session", payload)):
        return None
    try:
        d = orjson.loads(payload)
        sess = ConsoleSession(token_id=int(d["t"]), fingerprint=str(d["f"]), issued_at=float(d["i"]),
                              expires_at=float(d["e"]), nonce=str(d["n"]))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None
    if rt.clock.now() >= sess.expires_at:
        return None
    return sess


def _nonce_digest(sess: ConsoleSession) -> str:
    return hashlib.sha256(sess.nonce.encode()).hexdigest()


def end(s: Session, rt: Runtime, sess: ConsoleSession) -> None:
    """Sign a session out server-side: every copy of its cookie is refused from now on."""
    key = _nonce_digest(sess)
    if s.get(ConsoleSessionEnd, key) is None:
        s.add(ConsoleSessionEnd(nonce_digest=key, ended_at=rt.clock.now(), expires_at=sess.expires_at))


def purge_ended(rt: Runtime) -> None:
    """Forget sign-outs of sessions that have expired anyway (their cookies are refused for that)."""
    with rt.db.write() as s:
        s.execute(delete(ConsoleSessionEnd).where(ConsoleSessionEnd.expires_at < rt.clock.now()))


def jobs() -> list[Job]:
    return [Job("console.sessions.purge", 3600.0, purge_ended)]


def principal_for(s: Session, rt: Runtime, sess: ConsoleSession) -> Principal:
    """The person behind a session, from the token row as it is now (a revoked token ends the session, and
    so does signing out)."""
    if s.get(ConsoleSessionEnd, _nonce_digest(sess)) is not None:
        raise Unauthorized("you signed out of this console session; log in again")
    tok = s.get(Token, sess.token_id)
    if tok is None or tok.revoked:
        raise Unauthorized("your console session has ended (the token was revoked); log in again")
    if not hmac.compare_digest(token_fingerprint(rt, tok.digest), sess.fingerprint):
        raise Unauthorized("your console session does not match its token; log in again")
    person = s.get(Person, tok.person_id)
    if person is None:
        raise Unauthorized("the person behind this session no longer exists")
    return Principal(person.id, person.handle, person.name, effective_roles(tok.roles), tok.id)


def login(s: Session, rt: Runtime, token: str) -> tuple[str, Principal, ConsoleSession]:
    """Check an API token and start a session for it. Unauthorized when the token is not valid."""
    principal = authenticate(s, token.strip())
    value, sess = issue(rt, token_id=principal.token_id, token_digest=digest(token.strip()))
    return value, principal, sess


def secure_cookies(rt: Runtime) -> bool:
    flag = rt.settings.console_secure_cookies
    if flag is not None:
        return flag
    return rt.settings.public_url.startswith("https://")


# ----- request-level helpers -------------------------------------------------------------------------------


@dataclass(frozen=True)
class User:
    """Who is looking at a console page, with the session's CSRF token for the forms it renders."""

    principal: Principal
    session: ConsoleSession | None
    csrf: str

    def has(self, role: str) -> bool:
        return self.principal.has(role)

    @property
    def handle(self) -> str:
        return self.principal.handle


def _lookup(rt: Runtime, sess: ConsoleSession) -> Principal:
    with rt.db.read() as s:
        return principal_for(s, rt, sess)


async def page_viewer(request: Request, rt: RT) -> User | None:
    """The signed-in viewer of a page, or None (the page then redirects to the login form)."""
    sess = read(rt, request.cookies.get(COOKIE))
    if sess is None:
        return None
    try:
        p = await anyio.to_thread.run_sync(_lookup, rt, sess)
    except Unauthorized:
        return None
    if not p.has("viewer"):
        return None
    return User(p, sess, sess.csrf(rt))


async def _csrf_from(request: Request) -> str:
    header = request.headers.get(CSRF_HEADER)
    if header:
        return header
    ctype = request.headers.get("content-type", "")
    if ctype.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        form = await request.form()
        value = form.get(CSRF_FIELD)
        return value if isinstance(value, str) else ""
    return ""


async def acting(request: Request, rt: RT) -> Principal:
    """Who is making a state-changing console request: a bearer token, or a session cookie with its CSRF
    token. No credential → 401; a session without a matching CSRF token → 403."""
    if request.headers.get("authorization"):
        return await current_principal(request, rt)
    sess = read(rt, request.cookies.get(COOKIE))
    if sess is None:
        raise Unauthorized("sign in to the console first (or send Authorization: Bearer <token>)")
    p = await anyio.to_thread.run_sync(_lookup, rt, sess)
    sent = await _csrf_from(request)
    if not sent or not hmac.compare_digest(sent.encode(), sess.csrf(rt).encode()):
        raise Forbidden("the form's CSRF token is missing or does not match this session; reload the page",
                        field=CSRF_FIELD)
    request.state.principal = p
    return p


def acting_as(*roles: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency: the acting principal (see `acting`), who must hold one of `roles`."""

    async def dep(request: Request, rt: RT) -> Principal:
        p = await acting(request, rt)
        require(p, *roles)
        return p

    dep.__name__ = f"console_{'_'.join(roles)}"
    return dep


ActViewer = Annotated[Principal, Depends(acting_as("viewer"))]
ActResponder = Annotated[Principal, Depends(acting_as("responder"))]
ActLead = Annotated[Principal, Depends(acting_as("lead"))]
