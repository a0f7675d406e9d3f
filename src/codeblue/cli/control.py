"""`codeblue control …`: the stability kit — set, list and lift controls; print the snapshot."""

from __future__ import annotations

from typing import Any

import typer

from codeblue.cli.changes import when
from codeblue.cli.client import Client, JsonOpt, TokenOpt, UrlOpt, console, output, print_json, table

control_app = typer.Typer(
    help="Controls: kill switches, breakers, fallbacks, tool disables, traffic shedding, rollout freezes.",
    no_args_is_help=True,
)
TYPES = ("kill_switch", "breaker", "fallback", "tool_disable", "traffic", "rollout_freeze")


def register(app: typer.Typer) -> None:
    app.add_typer(control_app, name="control")


def _scope(c: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in c["scope"].items() if v != "*") or "*"


def _style(c: dict[str, Any]) -> str | None:
    if not c.get("active", True):
        return "dim"
    if c["type"] == "breaker" and c["params"].get("state") == "closed":
        return "green"
    return "red" if c["type"] in ("kill_switch", "breaker", "tool_disable") else "yellow"


def render_controls(rows: list[dict[str, Any]], title: str) -> None:
    view = [
        {
            **c,
            "where": _scope(c),
            "with": ", ".join(f"{k}={v}" for k, v in c["params"].items()),
            "until": when(c["expires_at"]) if c["expires_at"] else (c["lift_condition"] or ""),
            "state": "active" if c.get("active", True) else f"lifted by {c.get('lifted_by')}",
        }
        for c in rows
    ]
    table(view, ["id", "type", ("where", "scope"), ("with", "params"), "reason", ("author", "by"),
                 ("incident_id", "incident"), ("until", "expires / lift when"), "state"], title=title, style=_style)


@control_app.command("set")
def set_control(
    type: str = typer.Argument(..., help=" | ".join(TYPES)),
    reason: str = typer.Option(..., "--reason", "-r", help="why this control is needed"),
    workflow: str = typer.Option("*", "--workflow", "-w"),
    action: str = typer.Option("*", "--action", "-a"),
    tool: str = typer.Option("*", "--tool"),
    dependency: str = typer.Option("*", "--dependency", "-d"),
    segment: str = typer.Option("*", "--segment"),
    tenant: str = typer.Option("*", "--tenant"),
    state: str = typer.Option(None, "--state", help="breaker: open | half_open | closed"),
    fallback: str = typer.Option(None, "--fallback", help="backup_model | human_queue | static_answer"),
    target: str = typer.Option(None, "--target", help="the backup model, queue, or static answer text"),
    admit: float = typer.Option(None, "--admit", help="traffic: share admitted, 0–1"),
    config: str = typer.Option(None, "--config", help="rollout_freeze: only this config (<kind>/<name>)"),
    ttl: str = typer.Option(None, "--ttl", help="lift automatically after this long (90s, 30m, 2h)"),
    expires_at: str = typer.Option(None, "--expires-at", help="lift automatically at this time (unix or RFC 3339)"),
    lift_when: str = typer.Option(None, "--lift-when", help="the condition for lifting it, in words"),
    incident: int = typer.Option(None, "--incident", "-i"),
    environment: str = typer.Option("production", "--env", "--environment"),
    url: str = UrlOpt,
    token: str = TokenOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Put a control in place. It reaches connected SDKs within milliseconds."""
    from codeblue.cli.client import parse_duration

    if type not in TYPES:
        raise typer.BadParameter(f"{type!r} is not one of {', '.join(TYPES)}", param_hint="TYPE")
    params = {k: v for k, v in (("state", state), ("fallback", fallback), ("target", target), ("admit", admit),
                                ("config", config)) if v is not None}
    body: dict[str, Any] = {
        "type": type,
        "scope": {"workflow": workflow, "action": action, "tool": tool, "dependency": dependency,
                  "segment": segment, "tenant": tenant},
        "params": params,
        "reason": reason,
        "incident_id": incident,
        "environment": environment,
        "lift_condition": lift_when,
    }
    if ttl is not None:
        body["ttl_s"] = parse_duration(ttl)
    if expires_at is not None:
        body["expires_at"] = expires_at
    data = Client(url, token).post("/v1/controls", json=body)
    output(data, as_json, lambda d: console.print(
        f"[red]set[/red] {d['type']} [bold]#{d['id']}[/bold] on {_scope(d)} (revision {d['revision']})"))


@control_app.command("list")
def list_controls(
    all_: bool = typer.Option(False, "--all", help="include lifted controls"),
    type: str = typer.Option(None, "--type"),
    workflow: str = typer.Option(None, "--workflow", "-w"),
    incident: int = typer.Option(None, "--incident", "-i"),
    environment: str = typer.Option("production", "--env", "--environment"),
    url: str = UrlOpt,
    token: str = TokenOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Active controls (or every control with --all), newest first."""
    params: dict[str, Any] = {"environment": environment, "state": "all" if all_ else "active"}
    for key, val in (("type", type), ("workflow", workflow), ("incident_id", incident)):
        if val is not None:
            params[key] = val
    rows = Client(url, token).get("/v1/controls", params=params)
    output(rows, as_json, lambda d: render_controls(d, f"controls in {environment}"))


@control_app.command("lift")
def lift(
    control_id: int = typer.Argument(...),
    reason: str = typer.Option("", "--reason", "-r"),
    url: str = UrlOpt,
    token: str = TokenOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Lift a control (the record stays, marked lifted)."""
    data = Client(url, token).call("DELETE", f"/v1/controls/{control_id}", json={"reason": reason})
    output(data, as_json, lambda d: console.print(
        f"[green]lifted[/green] {d['type']} #{d['id']} on {_scope(d)} (revision {d['revision']})"))


@control_app.command("snapshot")
def snapshot(
    environment: str = typer.Option("production", "--env", "--environment"),
    content: bool = typer.Option(False, "--content", help="include config content"),
    url: str = UrlOpt,
    token: str = TokenOpt,
) -> None:
    """Print the snapshot SDKs evaluate (JSON)."""
    print_json(Client(url, token).get("/v1/controls/snapshot",
                                      params={"environment": environment, "content": str(content).lower()}))
