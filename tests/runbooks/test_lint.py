from __future__ import annotations

from pathlib import Path

import pytest

from codeblue.runbooks.library import SHIPPED, Library
from codeblue.runbooks.lint import Registry, lint_paths, lint_text

GOOD = """\
name: refund
trigger:
  workflows: [refund-*]
  failure_types: [answer_quality]
rollback_option: {config: suspect}
communication: {template: user_update}
postmortem_owner: incident_lead
steps:
  - id: kill
    type: kill_switch
    scope: {action: issue_refund}
"""


def errors(text: str, registry: Registry | None = None) -> list[tuple[int, int, str, str]]:
    return [(e.line, e.column, e.path, e.message) for e in lint_text(text, "r.yaml", registry).errors]


def test_shipped_runbooks_pass_lint() -> None:
    results = lint_paths([SHIPPED])
    assert len(results) >= 6
    assert all(r.ok for r in results), [str(e) for r in results for e in r.errors]


def test_good_runbook_loads() -> None:
    res = lint_text(GOOD, "r.yaml")
    assert res.ok and res.runbook is not None and res.runbook.steps[0].type == "kill_switch"


@pytest.mark.parametrize(
    ("old", "new", "line", "col", "path", "says"),
    [
        ("type: kill_switch", "type: explode", 10, 11, "steps[0].type", "unknown step type 'explode'"),
        ("{action: issue_refund}", "{action: issue_refund, colour: red}", 11, 35, "steps[0].scope.colour",
         "unknown field"),
        ("{action: issue_refund}", "{action: $acton}", 11, 21, "steps[0].scope.action", "'$acton' is not a scope value"),
        ("postmortem_owner: incident_lead", "postmortem_owner: ceo", 7, 19, "postmortem_owner", "found 'ceo'"),
        ("[answer_quality]", "[answer_qualty]", 4, 19, "trigger.failure_types[0]", "found 'answer_qualty'"),
        ("rollback_option: {config: suspect}", "rollback_option: {config: promt/x}", 5, 27, "rollback_option.config",
         "unknown config kind 'promt'"),
        ("  - id: kill\n", "  - id: Kill Switch!\n", 9, 9, "steps[0].id", "should match pattern"),
    ],
)
def test_each_error_class_has_line_and_column(old: str, new: str, line: int, col: int, path: str, says: str) -> None:
    text = GOOD.replace(old, new)
    assert text != GOOD
    errs = errors(text)
    assert any(e[0] == line and e[1] == col and e[2] == path and says in e[3] for e in errs), errs


def test_missing_field_and_kill_switch_without_action() -> None:
    errs = errors(GOOD.replace("postmortem_owner: incident_lead\n", ""))
    assert any(e[2] == "postmortem_owner" and "required" in e[3] for e in errs), errs
    errs = errors(GOOD.replace("scope: {action: issue_refund}", "scope: {workflow: refund-desk}"))
    assert any(e[2] == "steps[0]" and "needs scope.action" in e[3] for e in errs), errs


def test_step_references_and_duplicates() -> None:
    text = GOOD + """  - id: kill
    type: wait
    duration: 1m
  - id: rb
    type: rollback
    config: suspect
    after: [nope]
"""
    errs = errors(text)
    assert any(e[:3] == (12, 9, "steps[1].id") and "used twice" in e[3] for e in errs), errs
    assert any(e[:3] == (18, 13, "steps[2].after[0]") and "'nope' is not an earlier step" in e[3] for e in errs), errs


def test_references_checked_against_the_registry() -> None:
    text = GOOD + """  - id: rb
    type: rollback
    config: prompt/refund-assistant
  - id: tell
    type: notify
    channel: teams
"""
    assert lint_text(text, "r.yaml").ok  # offline: nothing to check the names against
    reg = Registry(configs={"prompt/other"}, channels={"slack", "email"})
    errs = errors(text, reg)
    assert any(e[:3] == (14, 13, "steps[1].config") and "does not exist on the server" in e[3] for e in errs), errs
    assert any(e[:3] == (17, 14, "steps[2].channel") and "allowed: email, slack" in e[3] for e in errs), errs


def test_yaml_syntax_error_and_duplicate_keys() -> None:
    errs = errors("name: x\ntrigger: [unclosed\n")
    assert errs and errs[0][0] == 3 and "YAML syntax" in errs[0][3]
    errs = errors(GOOD.replace("name: refund\n", "name: refund\nname: again\n"))
    assert any(e[:3] == (2, 1, "name") and e[3] == "duplicate key" for e in errs), errs


def test_a_runbook_that_fails_lint_is_never_loaded(tmp_path: Path) -> None:
    (tmp_path / "good.yaml").write_text(GOOD)
    (tmp_path / "bad.yaml").write_text(GOOD.replace("name: refund", "name: other").replace("kill_switch", "explode"))
    (tmp_path / "dupe-name.yaml").write_text(GOOD)
    lib = Library(tmp_path)
    results = lib.reload()
    assert results is not None
    assert [lb.runbook.name for lb in lib.runbooks()] == ["refund"]
    rejected = {Path(r.file).name for r in results if not r.ok}
    assert rejected == {"bad.yaml", "good.yaml"} or rejected == {"bad.yaml", "dupe-name.yaml"}
    assert lib.reload() is None  # unchanged files are not re-read
