"""Errors a user can act on. Services raise these; the HTTP layer turns them into problem documents."""

from __future__ import annotations

from typing import Any


class CodeblueError(Exception):
    """Base error: a status, a short title, a detail that says what was wrong and what is accepted."""

    status = 400
    title = "Bad request"
    type_slug = "bad-request"

    def __init__(self, detail: str, *, field: str | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field
        self.extra = extra


class Invalid(CodeblueError):
    status = 422
    title = "Invalid input"
    type_slug = "invalid"


class NotFound(CodeblueError):
    status = 404
    title = "Not found"
    type_slug = "not-found"


class Conflict(CodeblueError):
    """The request is well formed but the current state refuses it (illegal transition, nothing to roll back)."""

    status = 409
    title = "Conflict"
    type_slug = "conflict"


class Unauthorized(CodeblueError):
    status = 401
    title = "Unauthorized"
    type_slug = "unauthorized"


class Forbidden(CodeblueError):
    status = 403
    title = "Forbidden"
    type_slug = "forbidden"


class TooLarge(CodeblueError):
    status = 413
    title = "Payload too large"
    type_slug = "too-large"
