"""Response metrics over a period, per severity, failure type and workflow, with times driven by the clock."""

from __future__ import annotations

from pathlib import Path

from codeblue.clock import ManualClock
from tests.review.helpers import move, open_incident
from tests.support import LiveServer, make_settings

T = 1_790_000_000.0


def test_mttd_mtta_mttc_mttr_per_group(db_url: str, tmp_path: Path) -> None:
    clock = ManualClock(T)
    srv = LiveServer(make_settings(db_url, tmp_path, workers=False), clock=clock).start()
    try:
        with srv.client("responder", handle="ana") as c:
            a = open_incident(c, title="a", workflows=["desk-1"], severity="SEV1", failure_type="account_action",
                              harm={"started_at": T - 600})["id"]
            clock.set(T + 60)
            c.post(f"/v1/incidents/{a}/ack")
            clock.set(T + 100)
            b = open_incident(c, title="b", workflows=["desk-1", "desk-2"], severity="SEV1", failure_type="tool")["id"]
            clock.set(T + 300)
            move(c, a, "contained")
            clock.set(T + 400)
            c.post(f"/v1/incidents/{b}/ack")
            clock.set(T + 900)
            move(c, a, "resolved")
            clock.set(T + 1000)
            move(c, b, "contained")
            clock.set(T + 5000)
            r = c.get("/v1/metrics/response", params={"since": "2h"})
            assert r.status_code == 200, r.text
            m = r.json()
            bad = c.get("/v1/metrics/response", params={"since": "yesterday"})
            assert bad.status_code == 422 and bad.json()["field"] == "since"
            # incidents opened before the period are left out
            later = c.get("/v1/metrics/response", params={"since": str(T + 50)}).json()
    finally:
        srv.stop()
    o = m["overall"]
    assert o["incidents"] == 2
    assert o["mttd"] == {"mean_s": 600.0, "median_s": 600.0, "n": 1}  # only `a` has an onset
    assert o["mtta"]["mean_s"] == (60 + 300) / 2 and o["mtta"]["n"] == 2
    assert o["mttc"]["mean_s"] == (300 + 900) / 2 and o["mttc"]["n"] == 2
    assert o["mttr"] == {"mean_s": 900.0, "median_s": 900.0, "n": 1}
    assert m["by"]["failure_type"]["tool"]["mttc"]["mean_s"] == 900.0
    assert m["by"]["failure_type"]["account_action"]["mttc"]["mean_s"] == 300.0
    assert m["by"]["severity"]["SEV1"]["incidents"] == 2
    assert m["by"]["workflow"]["desk-1"]["incidents"] == 2 and m["by"]["workflow"]["desk-2"]["incidents"] == 1
    assert later["overall"]["incidents"] == 1
