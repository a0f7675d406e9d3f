"""Helpers the benchmark scripts share: a free loopback port and a throwaway PostgreSQL database."""

from __future__ import annotations

import contextlib
import secrets
import socket
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def postgres_db(base: str) -> Iterator[str]:
    """A fresh database on the server of `base` (a SQLAlchemy URL), dropped afterwards."""
    import psycopg

    name = "cb_bench_" + secrets.token_hex(4)
    parts = urlsplit(base.replace("postgresql+psycopg://", "postgresql://"))
    admin = urlunsplit(parts)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(parts._replace(path="/" + name)).replace("postgresql://", "postgresql+psycopg://", 1)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
