"""`codeblue replay --json` and `codeblue sim generate`: the report keys other tools read, bad lines skipped
with their line numbers, objectives errors with line numbers."""

from __future__ import annotations

from pathlib import Path

import orjson
from typer.testing import CliRunner

from codeblue.cli.main import app
from codeblue.sim import simulate
from codeblue.sim.scenarios import START
from tests.signals.test_pipeline import _refund_plan

runner = CliRunner()


def _write(path: Path, lines: list[bytes]) -> None:
    path.write_bytes(b"\n".join(lines) + b"\n")


def test_replay_json_report_keys_and_bad_lines(tmp_path: Path) -> None:
    onset = START + 2 * 3600
    plan = _refund_plan(fraction=1.0, onset=onset, end=None, stop=onset + 900, refusal=0.4)
    events = [orjson.dumps(e) for e in simulate(plan, 11)]
    events.insert(10, b"{not json")
    events.insert(20, orjson.dumps({"time": START + 100, "kind": "response"}))
    events.insert(30, orjson.dumps({"time": START + 100, "workflow": "refund-desk", "kind": "response",
                                    "refusal": "yes"}))
    ev = tmp_path / "events.ndjson"
    _write(ev, events)
    ch = tmp_path / "changes.ndjson"
    _write(ch, [orjson.dumps(c) for c in plan.changes] + [b'{"time": 1, "kind": "prompt"}'])
    res = runner.invoke(app, ["replay", str(ev), "--changes", str(ch), "--json"])
    assert res.exit_code == 0, res.output
    out = res.stdout
    report = orjson.loads(out[out.index("{"):])
    assert report["events"] == len(events) - 3
    assert report["rejected"] == 3
    assert [(e["line"], e["field"]) for e in report["errors"]] == [(11, ""), (21, "workflow"), (31, "refusal")]
    assert [e["line"] for e in report["change_errors"]] == [3]
    assert len(report["incidents"]) == 1
    inc = report["incidents"][0]
    for key in ("opened_at", "workflow", "indicator", "failure_type", "severity", "harm", "suspects"):
        assert key in inc
    assert set(inc["harm"]) >= {"requests", "subjects"}
    assert inc["workflow"] == "refund-desk" and inc["indicator"] == "refusal_rate"
    assert inc["failure_type"] == "policy_refusal" and inc["severity"] in ("SEV1", "SEV2", "SEV3", "SEV4")
    assert onset <= inc["opened_at"] <= onset + 300
    sus = inc["suspects"]
    assert [set(s) >= {"kind", "name", "version", "score", "evidence"} for s in sus] == [True] * len(sus)
    assert sus == sorted(sus, key=lambda s: -s["score"])
    assert (sus[0]["kind"], sus[0]["name"], sus[0]["version"]) == ("prompt", "refund-assistant", "v42")

    human = runner.invoke(app, ["replay", str(ev), "--changes", str(ch)])
    assert human.exit_code == 0
    assert "refund-desk" in human.stdout and "suspect" in human.stdout


def test_replay_rejects_a_bad_objectives_file_with_its_line(tmp_path: Path) -> None:
    ev = tmp_path / "e.ndjson"
    _write(ev, [orjson.dumps({"time": START, "workflow": "w", "kind": "response"})])
    cfg = tmp_path / "detect.yaml"
    cfg.write_text("workflows:\n  w:\n    limits:\n      - indicator: nope\n        max_count: 1\n")
    res = runner.invoke(app, ["replay", str(ev), "--config", str(cfg), "--json"])
    assert res.exit_code == 2
    assert "detect.yaml:4:" in res.output and "unknown indicator" in res.output


def test_sim_generate_writes_events_changes_truth(tmp_path: Path) -> None:
    out = tmp_path / "scn"
    res = runner.invoke(app, ["sim", "generate", "clean", "--out", str(out), "--seed", "2", "--days", "0.05"])
    assert res.exit_code == 0, res.output
    assert (out / "events.ndjson").stat().st_size > 0
    assert (out / "changes.ndjson").exists()
    truth = orjson.loads((out / "truth.json").read_bytes())
    assert truth["scenario"] == "clean" and truth["faults"] == []
    bad = runner.invoke(app, ["sim", "generate", "nope", "--out", str(out)])
    assert bad.exit_code == 2
