from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from codeblue.clock import ManualClock
from tests.support import LiveServer, make_settings


@pytest.fixture
def cserver(db_url: str, tmp_path: Path) -> Iterator[LiveServer]:
    """A live server (SQLite and PostgreSQL) whose streams send heartbeats every 0.2 s."""
    srv = LiveServer(make_settings(db_url, tmp_path, controls_heartbeat_s=0.2)).start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def manual_server(db_url: str, tmp_path: Path) -> Iterator[tuple[LiveServer, ManualClock]]:
    """A live server driven by a manual clock, background jobs off (the test runs them)."""
    clock = ManualClock(1_780_000_000.0)
    srv = LiveServer(make_settings(db_url, tmp_path, controls_heartbeat_s=0.2, workers=False), clock=clock).start()
    try:
        yield srv, clock
    finally:
        srv.stop()
