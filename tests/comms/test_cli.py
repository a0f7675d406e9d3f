"""`codeblue comms …` against a real server."""

from __future__ import annotations

import orjson
from typer.testing import CliRunner

from codeblue.cli.main import app
from tests.comms.conftest import MakeServer, open_incident
from tests.comms.peers import WebhookReceiver


def test_cli_update_due_outbox_and_channels(make_server: MakeServer) -> None:
    srv = make_server(config={"audiences": {"status_page": ["webhook:status"]}})
    inc = open_incident(srv)
    runner = CliRunner()
    resp = ["--url", srv.url, "--token", srv.token("responder")]
    admin = ["--url", srv.url, "--token", srv.admin_token]

    r = runner.invoke(app, ["comms", "update", str(inc["id"]), "-a", "status_page", "-f", "feature=Refunds",
                            "-f", "actions=paused", "-f", "status_url=https://status.example.test", *resp])
    assert r.exit_code == 1
    assert "facts.alternatives" in r.output and "safe alternatives" in r.output

    with WebhookReceiver("s3cret").running() as recv:
        r = runner.invoke(app, ["comms", "add-channel", "webhook:status", "--set", f"url={recv.url}",
                                "--set", "timeout=5", "--secret", "secret", *admin], input="s3cret\n")
        assert r.exit_code == 0, r.output
        assert "s3cret" not in r.output
        r = runner.invoke(app, ["comms", "update", str(inc["id"]), "-a", "status_page", "-f", "feature=Refunds",
                                "-f", "alternatives=the refund form", "-f", "actions=paused",
                                "-f", "status_url=https://status.example.test", *resp])
        assert r.exit_code == 0, r.output
        assert "queued to webhook:status" in r.output
        from codeblue.comms.sender import get_sender

        assert get_sender(srv.rt).deliver_due() == 1
        assert recv.rejected == 0 and len(recv.applied) == 1

    r = runner.invoke(app, ["comms", "outbox", "--json", *resp])
    assert r.exit_code == 0
    assert orjson.loads(r.output)["counts"]["delivered"] == 1
    r = runner.invoke(app, ["comms", "due", str(inc["id"]), "--json", *resp])
    items = {i["audience"]: i for i in orjson.loads(r.output)["items"]}
    assert items["status_page"]["last_sent_at"] is not None
    r = runner.invoke(app, ["comms", "channels", "--json", *admin])
    [ch] = orjson.loads(r.output)
    assert ch["name"] == "webhook:status" and ch["secrets_set"] == ["secret"] and "s3cret" not in r.output
    r = runner.invoke(app, ["comms", "messages", str(inc["id"]), *resp], env={"COLUMNS": "220"})
    assert r.exit_code == 0 and "delivered" in r.output
