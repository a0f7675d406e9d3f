"""Fixtures for the incident tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import LiveServer, make_settings


@pytest.fixture
def quiet_server(db_url: str, tmp_path: Path) -> Iterator[LiveServer]:
    """A real server on each backend with background jobs off, for tests that compare stored state before and
    after a request (other domains' jobs, e.g. escalation reminders, would otherwise write in between)."""
    srv = LiveServer(make_settings(db_url, tmp_path, workers=False)).start()
    try:
        yield srv
    finally:
        srv.stop()
