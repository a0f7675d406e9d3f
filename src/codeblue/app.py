"""Builds the HTTP app from the domain routers: the composition root.

Each domain package may have ``api.py`` (a ``router``) and ``wiring.py`` (``setup(rt) -> list[Job]``, which
subscribes to hooks and returns background jobs). Only this module knows them all.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from codeblue import __version__
from codeblue.auth import service as auth_service
from codeblue.clock import Clock, make_clock
from codeblue.hooks import hooks
from codeblue.http import BodyLimit, LeanRoute, LeanRoutes, ORJSONResponse, install_error_handlers
from codeblue.runtime import Runtime, data_path, load_server_key
from codeblue.settings import Settings, load_settings
from codeblue.store.db import Database
from codeblue.store.migrate import upgrade

log = logging.getLogger(__name__)

DOMAINS = (
    "auth",
    "incidents",
    "changes",
    "controls",
    "controls.clients",
    "signals",
    "runbooks",
    "oncall",
    "comms",
    "review",
    "web",
)


def _optional(module: str) -> Any | None:
    if importlib.util.find_spec(module) is None:
        return None
    return importlib.import_module(module)


def build_runtime(settings: Settings, clock: Clock | None = None, db: Database | None = None) -> Runtime:
    """Open the database, migrate it forward and wire the domains. No HTTP."""
    db = db or Database(settings.database_url)
    upgrade(db.engine)
    rt = Runtime(
        settings=settings,
        db=db,
        clock=clock or make_clock(settings.clock_speed),
        server_key=load_server_key(settings),
    )
    hooks.clear()
    for d in DOMAINS:
        wiring = _optional(f"codeblue.{d}.wiring")
        if wiring is not None:
            rt.jobs.extend(wiring.setup(rt))
    return rt


def bootstrap_admin(rt: Runtime) -> str | None:
    """Create the first admin token when none exists; return its value (shown once) or None."""
    with rt.db.write() as s:
        if auth_service.has_admin(s):
            return None
        value = rt.settings.bootstrap_token or None
        _tok, plain = auth_service.create_token(
            s, handle="admin", name="Administrator", roles=["admin", "risk_owner"], now=rt.clock.now(),
            label="bootstrap", value=value,
        )
    if not rt.settings.bootstrap_token:
        path = data_path(rt.settings, "admin-token")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(plain + "\n")
    return plain


def create_app(
    settings: Settings | None = None, *, clock: Clock | None = None, rt: Runtime | None = None
) -> FastAPI:
    settings = settings or (rt.settings if rt else load_settings())
    rt = rt or build_runtime(settings, clock)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if settings.workers:
            rt.start_jobs()
        try:
            yield
        finally:
            rt.stop_jobs()

    app = FastAPI(
        title="codeblue",
        version=__version__,
        description="Incident response for AI products.",
        default_response_class=ORJSONResponse,
        lifespan=lifespan,
    )
    app.state.rt = rt
    install_error_handlers(app)

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, Any]:
        return {"status": "ok", "version": __version__, "time": rt.clock.now()}

    lean: list[LeanRoute] = []
    for d in DOMAINS:
        api = _optional(f"codeblue.{d}.api")
        if api is None:
            continue
        for router in getattr(api, "routers", None) or [api.router]:
            app.include_router(router)
        lean.extend(getattr(api, "lean_routes", ()))
    # The last added is the outermost: lean routes run inside the body limit.
    if lean:
        app.add_middleware(LeanRoutes, rt=rt, routes=lean)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    return app
