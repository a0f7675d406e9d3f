from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import LiveServer, live_server


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "browser: drives a real headless Chromium against a live server")


def _no_runbooks(tmp_path: Path) -> Path:
    """The console tests drive an incident by hand, so their server loads no runbook that would act on it first
    (the shipped catch-all contains any answer-quality incident by itself). A test that needs runbooks gives
    its own directory."""
    d = tmp_path / "no-runbooks"
    d.mkdir(exist_ok=True)
    return d


@pytest.fixture
def server(db_url: str, tmp_path: Path) -> Iterator[LiveServer]:
    with live_server(db_url, tmp_path, runbooks_dir=_no_runbooks(tmp_path)) as srv:
        yield srv


@pytest.fixture
def sqlite_server(tmp_path: Path) -> Iterator[LiveServer]:
    with live_server(f"sqlite:///{tmp_path}/codeblue.db", tmp_path, runbooks_dir=_no_runbooks(tmp_path)) as srv:
        yield srv
