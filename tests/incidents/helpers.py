"""Helpers shared by the incident tests."""

from __future__ import annotations

from typing import Any

import httpx


def open_incident(c: httpx.Client, **kw: Any) -> dict[str, Any]:
    # Neutral defaults: a workflow and failure type no shipped runbook matches, so other domains' automation
    # (auto-containment, paging) leaves the lifecycle under test alone.
    body = {"title": "incident under test", "workflows": ["incident-tests"], "severity": "SEV3",
            "failure_type": "other", **kw}
    r = c.post("/v1/incidents", json=body)
    assert r.status_code == 201, r.text
    data: dict[str, Any] = r.json()
    return data


def timeline(c: httpx.Client, incident_id: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    after = 0
    while True:
        r = c.get(f"/v1/incidents/{incident_id}/timeline", params={"after_seq": after, "limit": 1000})
        assert r.status_code == 200, r.text
        page = r.json()
        out.extend(page["entries"])
        if page["next_after_seq"] is None:
            return out
        after = page["next_after_seq"]


def verify(c: httpx.Client, incident_id: int) -> dict[str, Any]:
    r = c.get(f"/v1/incidents/{incident_id}/timeline/verify")
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data
