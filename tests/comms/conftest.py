"""Comms fixtures: a real server on loopback driven by a manual clock, with background jobs off so a test
runs the sender and cadence jobs itself, step by step."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from codeblue.clock import ManualClock
from tests.support import LiveServer, make_settings

MakeServer = Callable[..., LiveServer]


@pytest.fixture
def make_server(db_url: str, tmp_path: Path) -> Iterator[MakeServer]:
    """`make_server(config={...}, **settings)` → a started LiveServer with a ManualClock at the wall time."""
    started: list[LiveServer] = []

    def make(config: dict[str, Any] | None = None, **overrides: Any) -> LiveServer:
        if config is not None:
            path = tmp_path / "comms.yaml"
            path.write_text(yaml.safe_dump(config))
            overrides["comms_config"] = path
        overrides.setdefault("workers", False)
        clock = ManualClock(start=float(int(time.time())))
        srv = LiveServer(make_settings(db_url, tmp_path, **overrides), clock=clock).start()
        started.append(srv)
        return srv

    yield make
    for srv in started:
        sender = srv.rt.extras.get("comms.sender")
        if sender is not None:
            sender.close()
        srv.stop()


def clock_of(srv: LiveServer) -> ManualClock:
    clock = srv.rt.clock
    assert isinstance(clock, ManualClock)
    return clock


def open_incident(srv: LiveServer, **body: Any) -> dict[str, Any]:
    payload = {"title": "Refund assistant issues refunds to the wrong account", "workflows": ["refund-desk"],
               "severity": "SEV2", "failure_type": "account_action"}
    payload.update(body)
    r = srv.client("lead", handle="lena").post("/v1/incidents", json=payload)
    assert r.status_code == 201, r.text
    data: dict[str, Any] = r.json()
    return data
