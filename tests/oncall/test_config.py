"""The on-call YAML file: validated with line numbers, applied to the database at start-up."""

from __future__ import annotations

from pathlib import Path

import pytest

from codeblue.app import build_runtime
from codeblue.clock import ManualClock
from codeblue.errors import Invalid
from codeblue.oncall import service
from codeblue.oncall.config import parse_config
from tests.support import make_settings

GOOD = """\
people:
  - {handle: al, name: Al Ng, email: al@example.test}
  - {handle: bea, email: bea@example.test}
schedules:
  - name: infra-primary
    domain: infra
    timezone: America/New_York
    layers:
      - rotation: weekly
        handoff: 9:00        # unquoted: YAML 1.1 reads this as 540; accepted as 09:00
        start: 2026-03-02
        members: [al, bea]
policies:
  - name: default
    repeat: 1
    levels:
      - {target: infra, timeout_minutes: 5}
      - {target: "person:bea", timeout_minutes: 10}
roles:
  - {role: incident_lead, from: [infra]}
"""


def test_good_file_parses() -> None:
    cfg = parse_config(GOOD, "oncall.yaml")
    assert cfg.schedules[0].layers[0].handoff == "09:00"
    assert cfg.schedules[0].layers[0].name == "layer 1"
    assert cfg.policies[0].levels[1].target == "person:bea"
    assert cfg.roles is not None and cfg.roles[0].from_ == ["infra"]


@pytest.mark.parametrize(
    ("text", "line", "field", "words"),
    [
        (GOOD.replace("America/New_York", "Mars/Olympus"), 7, "schedules[0].timezone", "IANA time zone"),
        (GOOD.replace("handoff: 9:00", "handoff: '25:00'"), 10, "schedules[0].layers[0].handoff", "HH:MM"),
        (GOOD.replace("rotation: weekly", "rotation: fortnightly"), 9, "schedules[0].layers[0].rotation", "weekly"),
        (GOOD.replace("target: infra,", "target: nobody,"), 17, "policies[0].levels[0].target", "schedule:<name>"),
        (GOOD.replace("members: [al, bea]", "members: []"), 12, "schedules[0].layers[0].members", "at least 1"),
        (GOOD.replace("    domain: infra\n", ""), 5, "schedules[0]", "domain"),
        (GOOD.replace("role: incident_lead", "role: chief"), 20, "roles[0].role", "incident_lead"),
        (GOOD + "colour: blue\n", 21, "colour", "Extra inputs"),
    ],
)
def test_bad_file_names_line_and_field(text: str, line: int, field: str, words: str) -> None:
    with pytest.raises(Invalid) as err:
        parse_config(text, "oncall.yaml")
    assert err.value.extra["line"] == line, err.value.detail
    assert err.value.field == field
    assert err.value.detail.startswith(f"oncall.yaml:{line}: {field}: ")
    assert words in err.value.detail


def test_malformed_yaml_names_line() -> None:
    with pytest.raises(Invalid) as err:
        parse_config("schedules:\n  - name: x\n    layers: [\n", "oncall.yaml")
    assert err.value.detail.startswith("oncall.yaml:4: not valid YAML")


def test_file_is_applied_at_start_and_unknown_member_is_refused_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "oncall.yaml"
    path.write_text(GOOD)
    settings = make_settings(f"sqlite:///{tmp_path}/cb.db", tmp_path, oncall_config=path)
    clock = ManualClock(1_772_460_000.0)  # 2026-03-02 14:00 UTC, al's first week
    rt = build_runtime(settings, clock)
    with rt.db.read() as s:
        assert [r.name for r in service.list_schedules(s)] == ["infra-primary"]
        assert [p.name for p in service.list_policies(s)] == ["default"]
        assert service.who_is_on_call(s, rt, domain="infra")[0]["handle"] == "al"
    assert [r.role for r in service.role_rules(rt)] == ["incident_lead"]

    # Start again with a schedule that names someone nobody knows: start-up refuses, naming the line.
    path.write_text(GOOD.replace("members: [al, bea]", "members: [al, ghost]"))
    with pytest.raises(Invalid) as err:
        build_runtime(settings, clock)
    assert f"{path}:12" in err.value.detail and "ghost" in err.value.detail
    # ... and nothing already accepted was lost.
    with rt.db.read() as s:
        assert service.get_schedule(s, "infra-primary").layers[0]["members"] == ["al", "bea"]

    # A schedule removed from the file goes away; one created through the API stays.
    path.write_text(GOOD.replace("name: infra-primary", "name: infra-main"))
    rt2 = build_runtime(settings, clock)
    with rt2.db.read() as s:
        assert [r.name for r in service.list_schedules(s)] == ["infra-main"]
    rt.db.dispose()
    rt2.db.dispose()


def test_policy_naming_an_unknown_person_is_refused_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "oncall.yaml"
    path.write_text(GOOD.replace('"person:bea"', '"person:nobody"'))
    settings = make_settings(f"sqlite:///{tmp_path}/cb.db", tmp_path, oncall_config=path)
    with pytest.raises(Invalid) as err:
        build_runtime(settings, ManualClock(1_772_460_000.0))
    assert err.value.detail.startswith(f"{path}:18: policy default: levels[1].target: no person named 'nobody'")
