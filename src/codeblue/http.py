"""HTTP plumbing shared by every router: problem documents (RFC 9457), auth dependencies, body limits."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

import anyio.to_thread
import orjson
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy import event
from sqlalchemy.orm import Session, object_session
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

from codeblue.auth.model import Token
from codeblue.auth.service import Principal, authenticate, digest, require
from codeblue.errors import CodeblueError, Unauthorized
from codeblue.runtime import Runtime
from codeblue.store.group_commit import GroupCommit

log = logging.getLogger(__name__)

PROBLEM = "application/problem+json"


def render_json(content: Any) -> bytes:
    """A JSON response body, as every route writes it."""
    return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY)


class ORJSONResponse(JSONResponse):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return render_json(content)


def problem(status: int, title: str, detail: str, *, type_slug: str = "about:blank", **extra: Any) -> Response:
    body: dict[str, Any] = {
        "type": type_slug if type_slug == "about:blank" else f"https://codeblue.dev/problems/{type_slug}",
        "title": title,
        "status": status,
        "detail": detail,
    }
    body.update({k: v for k, v in extra.items() if v is not None})
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return Response(orjson.dumps(body), status_code=status, media_type=PROBLEM, headers=headers)


def problem_for(exc: CodeblueError) -> Response:
    """The problem document for a domain error."""
    return problem(exc.status, exc.title, exc.detail, type_slug=exc.type_slug, field=exc.field, **exc.extra)


def _loc_to_field(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    out = ""
    for p in parts:
        out += f"[{p}]" if p.isdigit() else (f".{p}" if out else p)
    return out or ".".join(str(p) for p in loc)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(CodeblueError)
    async def _domain(_req: Request, exc: CodeblueError) -> Response:
        return problem_for(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_req: Request, exc: RequestValidationError) -> Response:
        errors = []
        for e in exc.errors():
            loc = e.get("loc", ())
            where = loc[0] if loc else "body"
            item = {"field": _loc_to_field(loc), "in": where, "message": e.get("msg", "")}
            if e.get("type") == "json_invalid":
                ctx = e.get("ctx") or {}
                pos = loc[1] if len(loc) > 1 else "?"
                item["field"] = "body"
                item["message"] = f"malformed JSON at character {pos}: {ctx.get('error', e.get('msg'))}"
            errors.append(item)
        first = errors[0] if errors else {"field": "", "message": "invalid request"}
        detail = f"{first['field']}: {first['message']}" if first["field"] else first["message"]
        if len(errors) > 1:
            detail += f" (and {len(errors) - 1} more)"
        return problem(422, "Invalid input", detail, type_slug="invalid", field=first["field"], errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_req: Request, exc: StarletteHTTPException) -> Response:
        return problem(exc.status_code, str(exc.detail), str(exc.detail))

    @app.exception_handler(Exception)
    async def _unhandled(req: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", req.method, req.url.path)
        return problem(500, "Internal error", "the server failed; the error is in its log")


class BodyLimit:
    """Refuse request bodies over `limit` bytes with 413 before reading them whole."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await _send_413(send, self.limit)
            return
        seen = 0

        async def limited_receive() -> Any:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge()
            return message

        try:
            await self.app(scope, limited_receive, send)
        except _TooLarge:
            await _send_413(send, self.limit)


class _TooLarge(Exception):
    pass


async def _send_413(send: Send, limit: int) -> None:
    body = orjson.dumps(
        {
            "type": "https://codeblue.dev/problems/too-large",
            "title": "Payload too large",
            "status": 413,
            "detail": f"the request body exceeds the limit of {limit} bytes",
        }
    )
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", PROBLEM.encode()), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


# ----- lean routes --------------------------------------------------------------------------------------

# A lean route's handler: (runtime, scope, receive, match of the path) -> (status, JSON-able body).
LeanHandler = Callable[[Runtime, Scope, Receive, "re.Match[str]"], Awaitable[tuple[int, Any]]]


@dataclass(frozen=True)
class LeanRoute:
    """A hot route served as a plain ASGI endpoint, ahead of FastAPI's routing and dependency injection.

    The FastAPI route for the same path stays: it documents the route in OpenAPI and serves every request whose
    path `pattern` does not match in full (odd path parameters, which FastAPI validates and refuses in its own
    words). The handler must behave exactly as that route does; a differential test should compare the two.
    """

    method: str
    pattern: re.Pattern[str]
    handler: LeanHandler


class LeanRoutes:
    """Pure ASGI middleware that serves `LeanRoute`s and passes everything else on to the app.

    Installed inside `BodyLimit` (413s stay as they are) and Starlette's `ServerErrorMiddleware` (an unhandled
    error is logged and answered 500 as everywhere else). A `CodeblueError` becomes the same problem document as
    FastAPI's exception handler makes of it; a success is the handler's body serialised like `ORJSONResponse`.
    """

    def __init__(self, app: ASGIApp, rt: Runtime, routes: list[LeanRoute]) -> None:
        self.app = app
        self.rt = rt
        self.served = 0  # requests answered here (tests check the lean path is the one taken)
        self.routes: dict[str, list[LeanRoute]] = {}
        for r in routes:
            self.routes.setdefault(r.method, []).append(r)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope.get("root_path"):
            for route in self.routes.get(scope["method"], ()):
                m = route.pattern.fullmatch(scope["path"])
                if m is None:
                    continue
                self.served += 1
                try:
                    status, data = await route.handler(self.rt, scope, receive, m)
                except CodeblueError as exc:
                    await problem_for(exc)(scope, receive, send)
                    return
                body = render_json(data)
                await send({"type": "http.response.start", "status": status,
                            "headers": [(b"content-length", b"%d" % len(body)), (b"content-type", _JSON)]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


_JSON = b"application/json"


def header(scope: Scope, name: bytes) -> str:
    """The first value of request header `name` (lower case), as Starlette's `request.headers.get` gives it."""
    for k, v in scope["headers"]:
        if k == name:
            return str(v.decode("latin-1"))
    return ""


async def read_body(receive: Receive) -> bytes:
    """The whole request body, as Starlette's `request.body()` reads it (ClientDisconnect if the client left)."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.request":
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                return b"".join(chunks)
        elif message["type"] == "http.disconnect":
            raise ClientDisconnect()


# ----- dependencies -------------------------------------------------------------------------------------


async def get_rt(request: Request) -> Runtime:
    # async: no I/O here, so no thread hop per request.
    rt: Runtime = request.app.state.rt
    return rt


RT = Annotated[Runtime, Depends(get_rt)]


def _bearer(authorization: str) -> str | None:
    if authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    return None


class PrincipalCache:
    """Authenticated principals by token digest, for a few seconds, so a busy client costs no token lookups.

    Never holds token values, only their SHA-256 digests. Revoking a token in this process clears the cache
    (when the revocation is set and again when it commits, and a lookup that raced a revocation is not
    cached); another replica sharing the database notices a revocation within `ttl` seconds.
    """

    def __init__(self, ttl: float = 5.0, max_entries: int = 10_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._items: dict[str, tuple[Principal, float]] = {}
        self._lock = threading.Lock()
        self.generation = 0

    def get(self, key: str) -> Principal | None:
        item = self._items.get(key)
        if item is None:
            return None
        principal, expires = item
        if time.monotonic() >= expires:
            self._items.pop(key, None)
            return None
        return principal

    def put(self, key: str, principal: Principal, generation: int) -> None:
        with self._lock:
            if generation != self.generation:
                return  # a revocation happened while this principal was being looked up
            if len(self._items) >= self.max_entries:
                self._items.clear()
            self._items[key] = (principal, time.monotonic() + self.ttl)

    def clear(self) -> None:
        with self._lock:
            self.generation += 1
            self._items.clear()


principal_cache = PrincipalCache()


@event.listens_for(Token.revoked, "set")
def _token_revoked(target: Token, value: Any, _old: Any, _initiator: Any) -> None:
    if value:
        principal_cache.clear()
        sess = object_session(target)
        if sess is not None:
            sess.info["auth.revoked"] = True


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    if session.info.pop("auth.revoked", False):
        principal_cache.clear()


def _authenticate_uncached(rt: Runtime, token: str | None) -> Principal:
    with rt.db.read() as s:
        return authenticate(s, token)


async def principal_for(rt: Runtime, authorization: str) -> Principal:
    """The caller named by an `Authorization` header's value (cached by token digest), or Unauthorized."""
    token = _bearer(authorization)
    if not token:
        raise Unauthorized("a bearer token is required (Authorization: Bearer <token>)")
    key = digest(token)
    p = principal_cache.get(key)
    if p is None:
        generation = principal_cache.generation
        p = await anyio.to_thread.run_sync(_authenticate_uncached, rt, token)
        principal_cache.put(key, p, generation)
    return p


async def current_principal(request: Request, rt: RT) -> Principal:
    cached = getattr(request.state, "principal", None)
    if isinstance(cached, Principal):
        return cached
    p = await principal_for(rt, request.headers.get("authorization", ""))
    request.state.principal = p
    return p


def requires(*roles: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency that authenticates the caller and checks they hold one of `roles`."""

    async def dep(request: Request, rt: RT) -> Principal:
        p = await current_principal(request, rt)
        require(p, *roles)
        return p

    dep.__name__ = f"requires_{'_'.join(roles)}"
    return dep


Viewer = Annotated[Principal, Depends(requires("viewer"))]
Responder = Annotated[Principal, Depends(requires("responder"))]
Lead = Annotated[Principal, Depends(requires("lead"))]
Admin = Annotated[Principal, Depends(requires("admin"))]
Ingest = Annotated[Principal, Depends(requires("ingest"))]
RiskOwner = Annotated[Principal, Depends(requires("risk_owner"))]


GROUP_COMMIT = "store.group_commit"


async def run_write_batched(rt: Runtime, fn: Callable[[Session, list[Any]], list[Any]], item: Any) -> Any:
    """Run a hot, small, independent write from an async route with group commit (`codeblue.store.group_commit`):
    the items queued for the same `fn` while a round runs are written by one call `fn(session, items)` in the
    next shared transaction (see `GroupCommit.submit_batched`); the result comes back once it committed. `fn`
    must be one function for all requests (a module-level one), not a new closure per request. On SQLite the
    round runs on the event loop when the database is free (no thread hop), otherwise in a worker thread:
    keep `fn` short and free of network I/O."""
    return await _group_commit(rt).submit_batched(fn, item)


def _group_commit(rt: Runtime) -> GroupCommit:
    gc = rt.extras.get(GROUP_COMMIT)
    if not isinstance(gc, GroupCommit):
        gc = rt.extras[GROUP_COMMIT] = GroupCommit(rt.db)
    return gc
