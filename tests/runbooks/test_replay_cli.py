from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from codeblue.cli.main import app
from codeblue.sim import generate


def refund_desk_stream(tmp_path: Path, scenario: str, *, tail: str = "") -> tuple[float, list[dict[str, Any]]]:
    """The refund desk's events from 90 minutes before the fault to 15 after, and its changes, as files in
    `tmp_path` (`tail` appended to the events); returns the onset and the events."""
    run = generate(scenario, seed=3)
    (fault,) = run.truth["faults"]
    onset = float(fault["onset"])
    events = [e for e in run.events if e["workflow"] == "refund-desk" and onset - 5400 <= e["time"] < onset + 900]
    (tmp_path / "events.ndjson").write_text("\n".join(json.dumps(e) for e in events) + "\n" + tail)
    (tmp_path / "changes.ndjson").write_text(
        "\n".join(json.dumps(c) for c in run.changes if "refund-desk" in c["workflows"]) + "\n")
    return onset, events


def test_replay_with_runbooks_reports_containment(tmp_path: Path) -> None:
    onset, events = refund_desk_stream(tmp_path, "refund-prompt", tail="{not json}\n")
    ev_path, ch_path = tmp_path / "events.ndjson", tmp_path / "changes.ndjson"

    res = CliRunner().invoke(app, ["replay", str(ev_path), "--changes", str(ch_path), "--runbooks", "shipped",
                                   "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout[res.stdout.index("{"):])
    assert report["rejected"] == 1 and report["errors"][0]["line"] == len(events) + 1
    (inc,) = [i for i in report["incidents"] if i["workflow"] == "refund-desk"]
    assert inc["suspects"][0]["version"] == "v42"
    assert inc["contained_at"] is not None and inc["contained_at"] - onset <= 300
    types = {a["type"] for a in inc["actions"]}
    assert {"kill_switch", "fallback", "rollback"} <= types
    assert inc["harm_before_containment"]["requests"] > 0
    assert inc["prevented"]["requests"] > inc["harm_before_containment"]["requests"]
    assert inc["collateral"]["requests"] > 0, "good refunds blocked by the kill switch are counted"
    for key in ("opened_at", "workflow", "indicator", "failure_type", "severity", "harm"):
        assert key in inc


BREAKER_RB = """\
name: open-the-model-breaker
trigger: {workflows: ["*"], failure_types: [availability]}
rollback_option: {config: suspect}
communication: {template: user_update}
postmortem_owner: infra_owner
steps:
  - {id: open-breaker, type: breaker, scope: {dependency: gpt-large}, expires: 1h}
"""


def test_replay_applies_a_breaker_on_the_model_that_answered(tmp_path: Path) -> None:
    """A breaker is scoped to a dependency; in a replay the event's `model` is the dependency the application
    asked about, so requests to the broken model count as blocked (prevented or collateral), not served."""
    _onset, events = refund_desk_stream(tmp_path, "deploy-5xx")
    ev_path, ch_path = tmp_path / "events.ndjson", tmp_path / "changes.ndjson"
    rb_dir = tmp_path / "runbooks"
    rb_dir.mkdir()
    (rb_dir / "breaker.yaml").write_text(BREAKER_RB)

    res = CliRunner().invoke(app, ["replay", str(ev_path), "--changes", str(ch_path), "--runbooks", str(rb_dir),
                                   "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout[res.stdout.index("{"):])
    (inc,) = [i for i in report["incidents"] if i["workflow"] == "refund-desk"]
    assert [a["type"] for a in inc["actions"]] == ["breaker"] and inc["contained_at"] is not None
    after = [e for e in events if e["time"] >= inc["contained_at"] + 10 and e["kind"] == "response"]
    errors_after = sum(1 for e in after if e.get("status", 200) >= 500)
    assert errors_after > 0
    # every later request to gpt-large is blocked: the errors among them prevented, the rest collateral
    assert inc["prevented"]["requests"] >= errors_after
    assert inc["collateral"]["requests"] >= len(after) - errors_after
