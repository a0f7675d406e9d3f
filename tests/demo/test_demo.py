"""`codeblue demo --fast --exit` as a user runs it: a subprocess that starts its own `codeblue serve`, SMTP
sink and webhook receiver, plays the story, and exits 0 only when every step happened — judged by effects
(the assistant's own decide, its measured bad rate, deliveries at the receivers, the post-mortem's figures)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_demo(scenario: str, tmp_path: Path) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CODEBLUE_")}
    env["COLUMNS"] = "200"
    p = subprocess.run(
        [sys.executable, "-m", "codeblue.cli.main", "demo", "--fast", "--exit", "--scenario", scenario,
         "--data-dir", str(tmp_path / "run")],
        capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path,
    )
    out = p.stdout + p.stderr
    (tmp_path / "demo-output.txt").write_text(out)
    return p.returncode, out


def pm_file(out: str) -> Path:
    m = re.search(r"post-mortem draft written to (\S+\.md)", out)
    assert m, out[-3000:]
    return Path(m.group(1))


@pytest.mark.timeout(660)
def test_refund_prompt_story_end_to_end(tmp_path: Path) -> None:
    code, out = run_demo("refund-prompt", tmp_path)
    assert code == 0, out[-6000:]
    for line in (
        "dan activates prompt/refund-assistant v41 → v42",
        "✔ incident opened with triage",
        "✔ the rollout is the top suspect: prompt/refund-assistant v42",
        "✔ the assistant's Guard follows the containment: its own decide sends issue_refund to the human queue",
        "✔ served answers queued for audit",
        "✔ recovery ramped with verification: stages 1%, 10%, 50%, 100%",
        "✔ pages delivered to the mail sink",
        "✔ communication delivered on cadence: internal ✔, status page ✔, support brief ✔, executive brief ✔; "
        "/status shows it: yes",
        "✔ the assistant's own decide blocked refunds after containment",
        "✔ the bad rate on the assistant's traffic fell after the rollback",
        "✔ post-mortem draft written with the run's figures",
        "Every step happened.",
    ):
        assert line in out, f"missing {line!r}\n{out[-6000:]}"
    # a story step that did not happen is marked ✘ and FAIL in the table (a runbook step that failed an attempt
    # and was retried is the runbook working, not the story failing)
    assert "✘" not in out and not re.search(r"│\s*FAIL\s*│", out), out[-6000:]
    assert re.search(r"page delivered \(email → fay@", out), "the incident lead's page reached the SMTP sink"
    assert "status page update published" in out and "/status" in out
    md = pm_file(out).read_text()
    assert "detect" in md.lower() and "contain" in md.lower() and "missed" in md.lower()


@pytest.mark.timeout(660)
def test_finance_router_story_end_to_end(tmp_path: Path) -> None:
    code, out = run_demo("finance-router", tmp_path)
    assert code == 0, out[-6000:]
    for line in (
        "dan activates routing_policy/finance-router r7 → r8",
        "✔ the rollout is the top suspect: routing_policy/finance-router r8",
        "✔ the assistant's Guard follows the containment: it is served routing_policy/finance-router r7 again",
        "✔ the bad rate on the assistant's traffic fell after the rollback",
        "✔ pages delivered to the mail sink",
        "✔ post-mortem draft written with the run's figures",
        "Every step happened.",
    ):
        assert line in out, f"missing {line!r}\n{out[-6000:]}"
    assert pm_file(out).exists()


def test_unknown_scenario_is_refused_with_the_known_ones() -> None:
    p = subprocess.run([sys.executable, "-m", "codeblue.cli.main", "demo", "--scenario", "nope", "--exit"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2
    assert "refund-prompt" in p.stderr and "finance-router" in p.stderr
