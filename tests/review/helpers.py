"""Helpers for review tests: post events to a real server, open and move incidents through the API."""

from __future__ import annotations

from typing import Any

import httpx
import orjson


def post_events(c: httpx.Client, events: list[dict[str, Any]], batch: int = 5000) -> int:
    n = 0
    for i in range(0, len(events), batch):
        chunk = events[i:i + batch]
        r = c.post("/v1/events", content=orjson.dumps(chunk), headers={"content-type": "application/json"})
        assert r.status_code in (200, 202), r.text
        body = r.json()
        assert not body.get("errors"), body
        n += len(chunk)
    return n


def open_incident(c: httpx.Client, **body: Any) -> dict[str, Any]:
    r = c.post("/v1/incidents", json={"severity": "SEV2", **body})
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


def move(c: httpx.Client, incident_id: int, to: str) -> None:
    r = c.post(f"/v1/incidents/{incident_id}/status", json={"to": to})
    assert r.status_code == 200, r.text
