"""`codeblue comms …`: channels, the outbox, what is due per incident, and publishing updates."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import typer

from codeblue.cli.client import Client, JsonOpt, TokenOpt, UrlOpt, console, output, table

comms_app = typer.Typer(help="Communication: channels, outbox delivery, cadence, updates.", no_args_is_help=True)

STATE_STYLE = {"pending": "yellow", "sending": "cyan", "delivered": "green", "dead": "bold red",
               "overdue": "bold red", "due": "yellow", "waiting": "dim", "done": "green", "stopped": "dim"}


def register(app: typer.Typer) -> None:
    app.add_typer(comms_app, name="comms")


def _when(ts: float | None) -> str:
    return "" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _pairs(values: list[str], what: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in values:
        key, sep, val = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{what} {item!r} must look like key=value")
        try:
            out[key] = orjson.loads(val) if val[:1] in "[{0123456789" or val in ("true", "false") else val
        except orjson.JSONDecodeError:
            out[key] = val
    return out


@comms_app.command("channels")
def channels(url: str = UrlOpt, token: str = TokenOpt, as_json: bool = JsonOpt) -> None:
    """List configured channels (secrets are never shown, only which are set)."""
    data = Client(url, token).get("/v1/comms/channels")
    output(data, as_json, lambda rows: table(
        rows, ["name", "type", ("secrets_set", "secrets"), "enabled", "source", "config"], title="Channels"))


@comms_app.command("add-channel")
def add_channel(
    name: str = typer.Argument(..., help="e.g. slack, email, webhook:ops, pagerduty"),
    type_: str = typer.Option(None, "--type", help="slack, email, webhook or pagerduty (default: from the name)"),
    sets: list[str] = typer.Option([], "--set", help="a setting key=value; repeat (e.g. --set url=https://…)"),
    secrets: list[str] = typer.Option([], "--secret", help="a secret field to prompt for (password, secret, "
                                                              "routing_key, url); never echoed"),
    url: str = UrlOpt, token: str = TokenOpt, as_json: bool = JsonOpt,
) -> None:
    """Create or replace a channel (admin). Secrets are prompted for and stored sealed."""
    body: dict[str, Any] = {"name": name, **_pairs(sets, "--set")}
    if type_:
        body["type"] = type_
    for field in secrets:
        body[field] = typer.prompt(f"{field} for {name}", hide_input=True)
    data = Client(url, token).post("/v1/comms/channels", json=body)
    output(data, as_json, lambda d: console.print(f"channel [bold]{d['name']}[/bold] ({d['type']}) saved"))


@comms_app.command("remove-channel")
def remove_channel(name: str, url: str = UrlOpt, token: str = TokenOpt) -> None:
    Client(url, token).delete(f"/v1/comms/channels/{name}")
    console.print(f"channel [bold]{name}[/bold] removed")


@comms_app.command("test-channel")
def test_channel(name: str, url: str = UrlOpt, token: str = TokenOpt, as_json: bool = JsonOpt) -> None:
    """Queue a test message on a channel; watch it with `codeblue comms outbox`."""
    data = Client(url, token).post(f"/v1/comms/channels/{name}/test")
    output(data, as_json, lambda d: console.print(f"test message {d['id']} queued on {name}"))


def _messages(rows: list[dict[str, Any]], title: str) -> None:
    table(
        [{**m, "created": _when(m["created_at"]), "next": _when(m.get("next_attempt_at"))} for m in rows],
        ["id", "state", "channel", "kind", "subject", "attempts", "created", "next", ("last_error", "last error")],
        title=title, style=lambda m: STATE_STYLE.get(m["state"]),
    )


@comms_app.command("outbox")
def show_outbox(
    state: str = typer.Option(None, "--state", help="pending, sending, delivered or dead"),
    channel: str = typer.Option(None, "--channel"),
    incident: int = typer.Option(None, "--incident"),
    limit: int = typer.Option(50, "--limit"),
    url: str = UrlOpt, token: str = TokenOpt, as_json: bool = JsonOpt,
) -> None:
    """Outbound messages and their delivery state, newest first."""
    params: dict[str, Any] = {"limit": limit}
    for k, v in (("state", state), ("channel", channel), ("incident_id", incident)):
        if v is not None:
            params[k] = v
    data = Client(url, token).get("/v1/comms/outbox", params=params)

    def render(d: dict[str, Any]) -> None:
        counts = ", ".join(f"{k} {v}" for k, v in d["counts"].items())
        _messages(d["messages"], f"Outbox ({counts}; redeliveries {d['redeliveries']})")

    output(data, as_json, render)


@comms_app.command("retry")
def retry(message_id: int, url: str = UrlOpt, token: str = TokenOpt, as_json: bool = JsonOpt) -> None:
    """Requeue a dead-lettered message (lead)."""
    data = Client(url, token).post(f"/v1/comms/outbox/{message_id}/retry")
    output(data, as_json, lambda d: console.print(f"message {d['id']} requeued"))


@comms_app.command("messages")
def messages(incident_id: int, url: str = UrlOpt, token: str = TokenOpt, as_json: bool = JsonOpt) -> None:
    """Every outbound message about an incident, with its delivery state."""
    data = Client(url, token).get(f"/v1/incidents/{incident_id}/messages")
    output(data, as_json, lambda d: _messages(d["messages"], f"Messages for incident #{incident_id}"))


@comms_app.command("due")
def due(incident_id: int, url: str = UrlOpt, token: str = TokenOpt, as_json: bool = JsonOpt) -> None:
    """What communication is due when for an incident."""
    data = Client(url, token).get(f"/v1/incidents/{incident_id}/comms")

    def render(d: dict[str, Any]) -> None:
        rows = [{**i, "due": _when(i["due_at"]), "last": _when(i["last_sent_at"]),
                 "note": i.get("waiting_for") and f"waits for {i['waiting_for']}"} for i in d["items"]]
        table(rows, ["label", "state", "due", "last", "note"], title=f"Incident #{incident_id} ({d['severity']})",
              style=lambda r: STATE_STYLE.get(r["state"]))

    output(data, as_json, render)


@comms_app.command("update")
def update(
    incident_id: int,
    audience: str = typer.Option(..., "--audience", "-a", help="internal, status_page, support or executive"),
    facts: list[str] = typer.Option([], "--fact", "-f", help="fact=value; repeat (feature, alternatives, "
                                                              "actions, status_url, …)"),
    text: str = typer.Option("", "--text", "-t"),
    url: str = UrlOpt, token: str = TokenOpt, as_json: bool = JsonOpt,
) -> None:
    """Publish an update; refused (exit 1) naming the missing fact when one is required."""
    body = {"audience": audience, "facts": {k: str(v) for k, v in _pairs(facts, "--fact").items()}, "text": text}
    data = Client(url, token).post(f"/v1/incidents/{incident_id}/updates", json=body)
    if as_json:
        output(data, True, lambda _d: None)
        return
    console.print(f"[green]{audience} update published[/green] (#{data['id']}), queued to "
                  f"{', '.join(m['channel'] for m in data['messages']) or 'no channel'}")
    console.print(data["rendered"])
