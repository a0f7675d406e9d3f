"""The `codeblue incident` commands against a real server: tables, --json, exit codes 0/1/2."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import text
from typer.testing import CliRunner

from codeblue.cli.main import app
from tests.support import LiveServer

runner = CliRunner()


def cli(server: LiveServer, *args: str, role: str = "lead") -> Any:
    tok = server.token(role, handle=f"cli-{role}")
    return runner.invoke(app, [*args, "--url", server.url, "--token", tok])


def j(server: LiveServer, *args: str, role: str = "lead") -> Any:
    r = cli(server, *args, "--json", role=role)
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def test_incident_commands_end_to_end(sqlite_server: LiveServer) -> None:
    s = sqlite_server
    s.token("responder", handle="ana")
    inc = j(s, "incident", "open", "wrong refund guidance", "-w", "cli-desk", "-s", "sev1", "-t", "other",
            "--role", "incident_lead=ana")
    iid = str(inc["id"])
    assert inc["severity"] == "SEV1" and inc["roles"] == {"incident_lead": "ana"}

    r = cli(s, "incident", "list")
    assert r.exit_code == 0 and "wrong" in r.stdout and "SEV1" in r.stdout
    assert [i["id"] for i in j(s, "incident", "list", "--open", "-w", "cli-desk")] == [inc["id"]]

    assert j(s, "incident", "ack", iid)["status"] == "investigating"
    assert j(s, "incident", "assign", iid, "technical_lead", "cli-lead")["roles"]["technical_lead"] == "cli-lead"
    assert j(s, "incident", "note", iid, "prompt v42 rolled out at 11:20")["kind"] == "note"
    rep = j(s, "incident", "report", iid, "customer got wrong refund amount", "--subject", "u-9", "--channel", "email")
    assert rep["kind"] == "user_report"
    assert j(s, "incident", "milestone", iid, "mitigation_chosen", "--path", "revert prompt")["set"] is True
    assert j(s, "incident", "update", iid, "--eta", "30m", "--severity", "SEV2")["severity"] == "SEV2"
    assert j(s, "incident", "status", iid, "contained", "-m", "refund path disabled")["status"] == "contained"

    shown = j(s, "incident", "show", iid)
    assert shown["mitigation_path"] == "revert prompt" and shown["eta"] is not None
    kinds = [e["kind"] for e in shown["timeline"]]
    assert {"note", "user_report", "status", "role_assigned"} <= set(kinds)
    r = cli(s, "incident", "show", iid)
    assert r.exit_code == 0 and "Milestones" in r.stdout and "Timeline" in r.stdout

    r = cli(s, "incident", "verify", iid)
    assert r.exit_code == 0 and "intact" in r.stdout
    assert j(s, "incident", "verify", iid)["ok"] is True

    # refused by the server → exit 1 with its message
    r = cli(s, "incident", "status", iid, "triggered")
    assert r.exit_code == 1 and "cannot move from contained to triggered" in r.output
    r = cli(s, "incident", "status", iid, "closed", role="responder")
    assert r.exit_code == 1 and "lead" in r.output
    r = cli(s, "incident", "show", "999999")
    assert r.exit_code == 1
    # usage errors → exit 2
    assert cli(s, "incident", "show", "not-a-number").exit_code == 2
    assert cli(s, "incident", "open").exit_code == 2
    assert cli(s, "incident", "update", iid).exit_code == 2

    # tampering → verify exits 1 and says so
    with s.rt.db.engine.begin() as conn:
        conn.execute(text("UPDATE timeline_entries SET text='nothing happened' WHERE incident_id=:i AND seq=2"),
                     {"i": inc["id"]})
    r = cli(s, "incident", "verify", iid)
    assert r.exit_code == 1 and "TAMPERED" in r.stdout
    assert json.loads(cli(s, "incident", "verify", iid, "--json").stdout)["ok"] is False
