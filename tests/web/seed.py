"""Realistic data for console tests: a prompt rolled out to 10 % that grounds far worse than the stable one."""

from __future__ import annotations

from typing import Any

import httpx

WF = "support-chat"
KEY = "prompt/refund-assistant"


def login(srv_url: str, token: str) -> httpx.Client:
    """An httpx client holding a console session (what a browser holds after signing in)."""
    c = httpx.Client(base_url=srv_url, timeout=30, follow_redirects=False)
    r = c.get("/console/login")
    assert r.status_code == 200, r.text
    csrf = r.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    r = c.post("/console/login", data={"token": token, "csrf": csrf, "next": "/console/incidents"})
    assert r.status_code == 303 and r.headers["location"] == "/console/incidents", r.text
    assert "cb_session" in c.cookies
    return c


def page_csrf(html: str) -> str:
    return html.split('data-csrf="', 1)[1].split('"', 1)[0]


def rollout(api: httpx.Client, now: float) -> None:
    for v in ("v41", "v42"):
        r = api.post("/v1/configs/prompt/refund-assistant/versions",
                     json={"version": v, "content": f"refund assistant {v}", "workflows": [WF]})
        assert r.status_code in (200, 201), r.text
    r = api.post("/v1/configs/prompt/refund-assistant/activate", json={"version": "v41"})
    assert r.status_code in (200, 201), r.text
    r = api.post("/v1/configs/prompt/refund-assistant/activate", json={"version": "v42", "fraction": 0.1})
    assert r.status_code in (200, 201), r.text


def events(now: float, n: int = 400) -> list[dict[str, Any]]:
    """Stored traffic: v41 grounds 96 % of answers all along; v42 (10 %) fails a third of them since now-600."""
    out = []
    for i in range(n):
        t = now - 1800 + i * (1790 / n)
        bad_version = i % 10 == 0 and t >= now - 900
        v = "v42" if bad_version else "v41"
        grounded = (i % 3 != 0) if bad_version else (i % 25 != 0)
        out.append({"time": t, "workflow": WF, "kind": "response", "status": 200, "grounded": grounded,
                    "refusal": False, "subject": f"acct-{i % 90}", "trace_id": f"tr-{i}", "versions": {KEY: v},
                    "output": "You can get a refund within 30 days."})
    return out


SUSPECT = {"kind": "prompt", "name": "refund-assistant", "version": "v42", "score": 0.91, "rollback": True,
           "evidence": "v42 serves 33% ungrounded answers vs 4% on v41"}


def open_incident(api: httpx.Client, now: float, **extra: Any) -> dict[str, Any]:
    body = {"title": "Refund answers cite the wrong policy", "workflows": [WF], "severity": "SEV2",
            "failure_type": "answer_quality", "harm": {"requests": 37, "subjects": 31, "started_at": now - 900,
                                                        "growing": True, "workflows": [WF]},
            "suspects": [SUSPECT], "data": {"indicator": "grounding_failure_rate"}, **extra}
    r = api.post("/v1/incidents", json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())
