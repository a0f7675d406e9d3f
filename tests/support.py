"""Test support: real servers on loopback, real databases. No mocks of our own code."""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import uvicorn

from codeblue.app import bootstrap_admin, build_runtime, create_app
from codeblue.clock import Clock
from codeblue.runtime import Runtime
from codeblue.settings import Settings

PG_ENV = "CODEBLUE_TEST_POSTGRES_URL"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test; dropped afterwards."""
    import psycopg

    base = os.environ[PG_ENV]
    name = "cb_" + secrets.token_hex(6)
    parts = urlsplit(base.replace("postgresql+psycopg://", "postgresql://"))
    admin_url = urlunsplit(parts)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = urlunsplit(parts._replace(path="/" + name)).replace("postgresql://", "postgresql+psycopg://", 1)
    try:
        yield url
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def database_url(kind: str, tmp: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{tmp}/codeblue.db"
    else:
        with postgres_database() as url:
            yield url


@contextlib.contextmanager
def live_server(db_url: str, tmp: Path, **settings: Any) -> Iterator[LiveServer]:
    """A started LiveServer on `db_url` with these settings, stopped on exit."""
    srv = LiveServer(make_settings(db_url, tmp, **settings)).start()
    try:
        yield srv
    finally:
        srv.stop()


def wait_for(cond: Callable[[], Any], what: str = "condition", timeout: float = 60.0, every: float = 0.02) -> Any:
    """Poll `cond` until it returns something truthy and return that; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


def make_settings(db_url: str, tmp: Path, **kw: Any) -> Settings:
    return Settings(database_url=db_url, data_dir=tmp / "data", **kw)


class LiveServer:
    """A real `codeblue` app served by uvicorn on a loopback port, in a thread of this process."""

    def __init__(self, settings: Settings, clock: Clock | None = None) -> None:
        self.port = free_port()
        self.settings = settings.model_copy(update={"host": "127.0.0.1", "port": self.port})
        self.rt: Runtime = build_runtime(self.settings, clock)
        self.admin_token = bootstrap_admin(self.rt) or ""
        self.app = create_app(self.settings, rt=self.rt)
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = f"http://127.0.0.1:{self.port}"
        self._tokens: dict[tuple[str, tuple[str, ...]], str] = {}

    def start(self) -> LiveServer:
        self.thread.start()
        deadline = time.time() + 60
        while not self.server.started:
            if time.time() > deadline or not self.thread.is_alive():
                raise RuntimeError("server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.rt.db.dispose()

    def token(self, *roles: str, handle: str | None = None) -> str:
        """A token with `roles` for a person (one per distinct handle/roles pair)."""
        handle = handle or "-".join(roles) or "nobody"
        key = (handle, tuple(sorted(roles)))
        if key not in self._tokens:
            r = httpx.post(
                f"{self.url}/v1/tokens",
                json={"handle": handle, "roles": list(roles), "email": f"{handle}@example.test"},
                headers={"Authorization": f"Bearer {self.admin_token}"},
                timeout=60.0,
            )
            r.raise_for_status()
            self._tokens[key] = r.json()["token"]
        return self._tokens[key]

    def client(self, *roles: str, handle: str | None = None, timeout: float = 60.0) -> httpx.Client:
        headers = {}
        if roles:
            headers["Authorization"] = f"Bearer {self.token(*roles, handle=handle)}"
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def admin(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.admin_token}"}, timeout=60.0
        )


class ServerProcess:
    """`codeblue serve` as a separate OS process (for crash tests and CLI tests)."""

    def __init__(self, db_url: str, data_dir: Path, *, port: int | None = None, env: dict[str, str] | None = None,
                 args: list[str] | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.admin_token = "cb_test_" + secrets.token_hex(16)
        self.env = {
            **os.environ,
            "CODEBLUE_DATABASE_URL": db_url,
            "CODEBLUE_DATA_DIR": str(data_dir),
            "CODEBLUE_BOOTSTRAP_TOKEN": self.admin_token,
            **(env or {}),
        }
        self.args = args or []
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ServerProcess:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "codeblue.cli.main", "serve", "--port", str(self.port), *self.args],
            env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        deadline = time.time() + 120  # a cold start imports the whole stack; slow on a busy machine
        while time.time() < deadline:
            if self.proc.poll() is not None:
                out = self.proc.stdout.read().decode() if self.proc.stdout else ""
                raise RuntimeError(f"server exited: {out}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            time.sleep(0.05)
        raise RuntimeError("server did not start")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def admin(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.admin_token}"}, timeout=60)
