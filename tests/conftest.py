"""Shared fixtures: every test that needs a database runs on SQLite and, when configured, PostgreSQL."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import PG_ENV, LiveServer, database_url, live_server

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


def _backends() -> list[object]:
    pg = pytest.param(
        "postgres",
        marks=pytest.mark.skipif(
            not os.environ.get(PG_ENV), reason=f"PostgreSQL tests need {PG_ENV} (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test)"
        ),
    )
    return ["sqlite", pg]


@pytest.fixture(params=_backends())
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db_url(backend: str, tmp_path: Path) -> Iterator[str]:
    with database_url(backend, tmp_path) as url:
        yield url


@pytest.fixture
def server(db_url: str, tmp_path: Path) -> Iterator[LiveServer]:
    """A real codeblue server on loopback, on each database backend."""
    with live_server(db_url, tmp_path) as srv:
        yield srv


@pytest.fixture
def sqlite_server(tmp_path: Path) -> Iterator[LiveServer]:
    """A real codeblue server on loopback with SQLite only (for tests whose subject is not storage)."""
    with live_server(f"sqlite:///{tmp_path}/codeblue.db", tmp_path) as srv:
        yield srv


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
