"""A running server re-applies the on-call and comms config files when they change; a bad version is refused
whole, the previous one stays in force, and /metrics says so."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.oncall.test_config import GOOD as ONCALL
from tests.support import LiveServer, database_url, live_server, make_settings, wait_for

SECRET = "s" * 32


def write(path: Path, text: str) -> None:
    """Replace the file as editors and config management do: a new file renamed over the old one."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def reload_ok(srv: LiveServer, config: str) -> float | None:
    text = srv.client("viewer").get("/metrics").text
    pattern = r'^codeblue_config_last_reload_successful\{config="' + config + r'",file="[^"]*"\} (\S+)$'
    m = re.search(pattern, text, re.MULTILINE)
    return float(m.group(1)) if m else None


def comms(channels: list[dict[str, Any]], sev2_every: str) -> str:
    return yaml.safe_dump({"channels": channels, "cadence": {"SEV2": {"internal": {"every": sev2_every}}}})


@pytest.fixture
def server(backend: str, tmp_path: Path) -> Iterator[tuple[LiveServer, Path, Path]]:
    oncall, comms_file = tmp_path / "oncall.yaml", tmp_path / "comms.yaml"
    oncall.write_text(ONCALL)
    comms_file.write_text(comms([{"name": "webhook:ops", "url": "http://127.0.0.1:9/ops", "secret": SECRET}], "30m"))
    with database_url(backend, tmp_path) as url, live_server(url, tmp_path, oncall_config=oncall,
                                                             comms_config=comms_file,
                                                             config_reload_interval=0.1) as srv:
        yield srv, oncall, comms_file


def test_oncall_file_is_reapplied_when_it_changes_and_a_bad_version_is_refused(
        server: tuple[LiveServer, Path, Path]) -> None:
    srv, path, _ = server
    viewer = srv.client("viewer")

    def schedules() -> list[str]:
        return sorted(s["name"] for s in viewer.get("/v1/oncall/schedules").json())

    assert schedules() == ["infra-primary"] and reload_ok(srv, "oncall") == 1.0
    added = ONCALL.replace("policies:", """\
  - name: feature-primary
    domain: feature
    layers:
      - {rotation: daily, handoff: "09:00", start: 2026-03-02, members: [bea]}
policies:""")
    write(path, added)
    wait_for(lambda: schedules() == ["feature-primary", "infra-primary"], "the new schedule")

    # a version naming someone nobody knows: refused whole, nothing in force changes, /metrics says so
    write(path, added.replace("members: [bea]", "members: [ghost]").replace("name: infra-primary", "name: infra-x"))
    wait_for(lambda: reload_ok(srv, "oncall") == 0.0, "the refusal on /metrics")
    assert schedules() == ["feature-primary", "infra-primary"]

    # fixed: applied, and a schedule dropped from the file goes
    write(path, ONCALL)
    wait_for(lambda: schedules() == ["infra-primary"], "the schedule to go")
    assert reload_ok(srv, "oncall") == 1.0


def test_comms_file_is_reapplied_when_it_changes_and_a_bad_version_is_refused(
        server: tuple[LiveServer, Path, Path]) -> None:
    srv, _, path = server
    lead = srv.client("lead")

    def channels() -> dict[str, Any]:
        return {c["name"]: c for c in lead.get("/v1/comms/channels").json()}

    def sev2_every() -> float:
        return float(lead.get("/v1/comms/policy").json()["SEV2"]["internal"]["every"])

    assert channels()["webhook:ops"]["config"]["url"] == "http://127.0.0.1:9/ops" and sev2_every() == 1800
    ops = {"name": "webhook:ops", "url": "http://127.0.0.1:9/ops2", "secret": SECRET}
    support = {"name": "webhook:support", "url": "http://127.0.0.1:9/support", "secret": SECRET}
    write(path, comms([ops, support], "20m"))
    wait_for(lambda: sev2_every() == 1200, "the cadence change")
    got = channels()
    assert got["webhook:ops"]["config"]["url"] == "http://127.0.0.1:9/ops2"
    assert got["webhook:support"]["source"] == "file"

    # a bad channel in an otherwise changed file: none of it is applied
    write(path, comms([ops, support, {"name": "webhook:bad", "url": "not a url", "secret": SECRET}], "5m"))
    wait_for(lambda: reload_ok(srv, "comms") == 0.0, "the refusal on /metrics")
    assert sev2_every() == 1200 and "webhook:bad" not in channels()

    # YAML that does not parse: also refused, and the previous version stays
    write(path, "channels: [\n")
    time.sleep(0.5)
    assert sev2_every() == 1200 and reload_ok(srv, "comms") == 0.0

    write(path, comms([ops], "20m"))
    wait_for(lambda: reload_ok(srv, "comms") == 1.0, "the recovery on /metrics")
    assert channels()["webhook:support"]["source"] == "api"  # dropped from the file: kept, now the API's


NO_LIMITS = "detector:\n  warmup: 10m\n"
ANY_WRONG_ENTITY = """\
detector:
  warmup: 10m
workflows:
  '*':
    limits:
      - indicator: wrong_entity_rate
        max_count: 0            # any wrong-entity action fires
        window: 5m
        severity: SEV1
"""


def test_detector_config_is_reapplied_when_it_changes_and_a_bad_version_is_refused(
        db_url: str, tmp_path: Path) -> None:
    from codeblue.clock import ManualClock

    path = tmp_path / "detect.yaml"
    path.write_text(NO_LIMITS)
    t0 = float(int(time.time()))
    clock = ManualClock(t0)
    srv = LiveServer(make_settings(db_url, tmp_path, workers=False, detect_config=path), clock=clock).start()
    try:
        jobs = {j.name: j for j in srv.rt.jobs}
        ingest, viewer = srv.client("ingest"), srv.client("viewer")

        def act(t: float, wf: str, target: str) -> None:
            ev = {"time": t, "workflow": wf, "kind": "action", "action": "update_account", "subject": "a",
                  "target": target, "authorized_targets": ["a"], "trace_id": f"{wf}-{t}-{target}"}
            assert ingest.post("/v1/events", json=[ev]).json()["accepted"] == 1

        def step(seconds: float) -> list[dict[str, Any]]:
            clock.advance(seconds)
            jobs["detect.config"].fn(srv.rt)
            jobs["signals.detect"].fn(srv.rt)
            return list(viewer.get("/v1/incidents").json())

        for i in range(20):
            act(t0 + i, "acct", "a")
        act(t0 + 21, "acct", "b")  # one wrong-entity action: no baseline yet, no limit, nothing fires
        assert step(40) == []

        write(path, ANY_WRONG_ENTITY)
        act(t0 + 45, "acct", "c")
        (inc,) = step(30)
        assert inc["workflows"] == ["acct"] and inc["severity"] == "SEV1" and reload_ok(srv, "detect") == 1.0

        # a bad version: refused whole; the limit in force still fires on another workflow
        write(path, ANY_WRONG_ENTITY.replace("max_count: 0", "max_count: -1").replace("SEV1", "SEV9"))
        step(1)
        assert reload_ok(srv, "detect") == 0.0
        act(clock.now() - 1, "acct2", "z")
        assert {i["workflows"][0] for i in step(30)} == {"acct", "acct2"}
    finally:
        srv.stop()
