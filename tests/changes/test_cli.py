"""`codeblue config`, `codeblue changes` and `codeblue control` against a real server: tables, --json, exit codes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from codeblue.cli.client import console
from codeblue.cli.main import app
from tests.support import LiveServer

runner = CliRunner()


@pytest.fixture(autouse=True)
def wide_console() -> Iterator[None]:
    """Tables as a wide terminal shows them (the runner's pseudo-terminal is 80 columns)."""
    old = console.width
    console.width = 200
    yield
    console.width = old


def cli(server: LiveServer, *args: str, role: str = "responder") -> Any:
    tok = server.token(role, handle=f"cli-{role}")
    return runner.invoke(app, [*args, "--url", server.url, "--token", tok])


def j(server: LiveServer, *args: str, role: str = "responder") -> Any:
    r = cli(server, *args, "--json", role=role)
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def test_config_and_changes_commands(sqlite_server: LiveServer, tmp_path: Path) -> None:
    s = sqlite_server
    assert j(s, "config", "push", "prompt", "refund-assistant", "-c", "first", "-w", "refund-desk")["version"] == "v1"
    f = tmp_path / "v2.json"
    f.write_text('{"system": "second"}')
    assert j(s, "config", "push", "prompt", "refund-assistant", "-f", str(f), "-m", "json prompt")["content"] == {"system": "second"}
    assert j(s, "config", "push", "prompt", "refund-assistant", "-c", "third")["version"] == "v3"
    assert j(s, "config", "activate", "prompt", "refund-assistant", "v1")["to"] == "v1"
    assert j(s, "config", "activate", "prompt", "refund-assistant", "v2")["to"] == "v2"
    r = cli(s, "config", "activate", "prompt", "refund-assistant", "v3", "--fraction", "0.1")
    assert r.exit_code == 0 and "at 10%" in r.stdout
    rb = j(s, "config", "rollback", "prompt", "refund-assistant", "-m", "bad answers")
    assert (rb["type"], rb["from"], rb["to"]) == ("rollback", "v3", "v2")
    assert j(s, "config", "rollback", "prompt", "refund-assistant")["to"] == "v1"

    r = cli(s, "config", "rollback", "prompt", "refund-assistant")
    assert r.exit_code == 1 and "nothing to roll back to" in r.output

    r = cli(s, "config", "history", "prompt", "refund-assistant")
    assert r.exit_code == 0 and "stable" in r.stdout and "v3" in r.stdout and "rollback" in r.stdout
    hist = j(s, "config", "history", "prompt", "refund-assistant")
    assert hist["stable"] == "v1" and [v["version"] for v in hist["versions"]] == ["v1", "v2", "v3"]
    assert j(s, "config", "show", "prompt", "refund-assistant", "v2")["content"] == {"system": "second"}
    assert j(s, "config", "list")[0]["stable"] == "v1"

    rows = j(s, "changes", "--since", "30m", "--workflow", "refund-desk")
    assert [(x["type"], x["to"]) for x in rows] == [("rollback", "v1"), ("rollback", "v2"), ("activate", "v3"),
                                                   ("activate", "v2"), ("activate", "v1")]
    r = cli(s, "changes", "--since", "30m")
    assert r.exit_code == 0 and "prompt/refund-assistant" in r.stdout
    r = cli(s, "changes", "--since", "last tuesday")
    assert r.exit_code == 1 and "since" in r.output

    # Usage errors exit 2; a viewer is refused with exit 1.
    assert cli(s, "config", "push", "prompt", "x").exit_code == 2
    r = cli(s, "config", "activate", "prompt", "refund-assistant", "v3", role="viewer")
    assert r.exit_code == 1 and "responder" in r.output


def test_control_commands(sqlite_server: LiveServer) -> None:
    s = sqlite_server
    ks = j(s, "control", "set", "kill_switch", "-w", "refund-desk", "-a", "issue_refund", "--fallback", "human_queue",
           "--reason", "wrong refunds", "--ttl", "30m")
    assert ks["type"] == "kill_switch" and ks["scope"]["action"] == "issue_refund" and ks["expires_at"] is not None
    tr = j(s, "control", "set", "traffic", "-w", "refund-desk", "--admit", "0.25", "--reason", "shed",
           "--lift-when", "error rate below 1%")
    assert tr["params"] == {"admit": 0.25} and tr["lift_condition"] == "error rate below 1%"
    r = cli(s, "control", "set", "breaker", "--reason", "x", "--ttl", "1h")
    assert r.exit_code == 1 and "scope.dependency" in r.output
    r = cli(s, "control", "set", "teleport", "--reason", "x", "--ttl", "1h")
    assert r.exit_code == 2

    r = cli(s, "control", "list")
    assert r.exit_code == 0 and "kill_switch" in r.stdout and "traffic" in r.stdout
    assert {c["id"] for c in j(s, "control", "list")} == {ks["id"], tr["id"]}
    lifted = j(s, "control", "lift", str(ks["id"]), "--reason", "prompt reverted")
    assert lifted["active"] is False and lifted["lift_reason"] == "prompt reverted"
    assert [c["id"] for c in j(s, "control", "list")] == [tr["id"]]
    assert {c["id"] for c in j(s, "control", "list", "--all")} == {ks["id"], tr["id"]}
    assert cli(s, "control", "lift", str(ks["id"])).exit_code == 1
    r = cli(s, "control", "snapshot")
    assert r.exit_code == 0 and json.loads(r.stdout)["controls"][0]["id"] == tr["id"]
