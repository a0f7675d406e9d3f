"""`codeblue oncall …`: who is on call, schedules and overrides, escalation, paging and acknowledging."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer

from codeblue.cli.client import (
    Client,
    JsonOpt,
    TokenOpt,
    UrlOpt,
    console,
    fail,
    output,
    parse_duration,
    print_json,
    table,
)

oncall_app = typer.Typer(help="The on-call map: who is on call, schedules, overrides, escalation, paging.",
                         no_args_is_help=True)

_RELATIVE = re.compile(r"^([+-])\s*(\S+)$")


def _when(c: Client, text: str | None) -> float | None:
    """'+2h' / '-30m' (relative to the server clock), unix seconds, or ISO 8601 (naive means UTC)."""
    if text is None:
        return None
    m = _RELATIVE.match(text.strip())
    if m and not text.strip().lstrip("+-").replace(".", "").isdigit():
        now = float(c.get("/healthz")["time"])
        delta = parse_duration(m.group(2))
        return now + delta if m.group(1) == "+" else now - delta
    try:
        return float(text)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise typer.BadParameter(f"{text!r} is not a time: use ISO 8601 (2026-03-08T09:00-05:00), unix "
                                 "seconds, or +2h / -30m") from exc
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()


def _ts(t: float | None, tz: str | None = None) -> str:
    if t is None:
        return ""
    from zoneinfo import ZoneInfo

    dt = datetime.fromtimestamp(t, ZoneInfo(tz) if tz else UTC)
    return dt.strftime("%Y-%m-%d %H:%M %Z")


@oncall_app.command("who")
def who(
    domain: str = typer.Option(None, "--domain", "-d", help="infra, feature, risk or ops"),
    workflow: str = typer.Option(None, "--workflow", "-w", help="the workflow whose owners to show"),
    at: str = typer.Option(None, "--at", help="when: ISO 8601, unix seconds, or +2h / -30m (default now)"),
    url: str = UrlOpt,
    token: str = TokenOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Who is on call now (or at --at), per schedule."""
    c = Client(url, token)
    params: dict[str, Any] = {k: v for k, v in (("domain", domain), ("workflow", workflow)) if v}
    when = _when(c, at)
    if when is not None:
        params["at"] = when
    data = c.get("/v1/oncall/who", params=params)

    def render(d: dict[str, Any]) -> None:
        rows = [{**r, "handle": r["handle"] or "nobody", "until": _ts(r["shift_end"], r["timezone"])}
                for r in d["on_call"]]
        if not rows:
            console.print("[yellow]no schedules match[/yellow]")
            return
        table(rows, [("domain", "domain"), ("workflow", "workflow"), ("schedule", "schedule"), ("handle", "on call"),
                     ("level", "from"), ("until", "until")],
              title=f"on call at {_ts(d['at'])}", style=lambda r: "red" if r["handle"] == "nobody" else None)

    output(data, as_json, render)


@oncall_app.command("schedules")
def schedules(
    domain: str = typer.Option(None, "--domain", "-d"),
    url: str = UrlOpt,
    token: str = TokenOpt,
    as_json: bool = JsonOpt,
) -> None:
    """List the schedules."""
    c = Client(url, token)
    data = c.get("/v1/oncall/schedules", params={"domain": domain} if domain else {})

    def render(rows: list[dict[str, Any]]) -> None:
        from codeblue.oncall.service import layer_summary

        table([{**r, "layers": "; ".join(layer_summary(x) for x in r["layers"])} for r in rows],
              ["name", "domain", "workflow", "timezone", "layers", "source"])

    output(data, as_json, render)


@oncall_app.command("shifts")
def shifts(
    schedule: str = typer.Argument(..., help="schedule name or id"),
    days: float = typer.Option(14, "--days", help="how far ahead"),
    since: str = typer.Option(None, "--since", help="from when (default now)"),
    url: str = UrlOpt,
    token: str = TokenOpt,
    as_json: bool = JsonOpt,
) -> None:
    """The final schedule (layers and overrides combined), shift by shift."""
    c = Client(url, token)
    start = _when(c, since) or float(c.get("/healthz")["time"])
    sched = c.get(f"/v1/oncall/schedules/{schedule}")
    data = c.get(f"/v1/oncall/schedules/{schedule}/shifts", params={"since": start, "until": start + days * 86400})

    def render(rows: list[dict[str, Any]]) -> None:
        tz = sched["timezone"]
        table([{"start": _ts(r["start"], tz), "end": _ts(r["end"], tz), "handle": r["handle"] or "nobody",
                "source": r["source"]} for r in rows], ["start", "end", "handle", "source"],
              title=f"{sched['name']} ({tz})", style=lambda r: "red" if r["handle"] == "nobody" else None)

    output(data, as_json, render)


@oncall_app.command("apply")
def apply(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="YAML in the on-call config format"),
    url: str = UrlOpt,
    token: str = TokenOpt,
) -> None:
    """Create or replace the schedules and escalation policies in a YAML file (needs a lead token)."""
    from codeblue.errors import Invalid
    from codeblue.oncall.config import load_config_file

    try:
        cfg = load_config_file(file)
    except Invalid as exc:
        raise fail(exc.detail, 2) from exc
    c = Client(url, token)
    if cfg.people:
        console.print("[yellow]people: are not applied from the CLI; create their tokens with "
                      "`codeblue token create` (or set CODEBLUE_ONCALL_CONFIG on the server)[/yellow]")
    existing = {r["name"] for r in c.get("/v1/oncall/schedules")}
    for spec in cfg.schedules:
        body = spec.model_dump(mode="json")
        if spec.name in existing:
            c.call("PUT", f"/v1/oncall/schedules/{spec.name}", json=body)
            console.print(f"replaced schedule [bold]{spec.name}[/bold]")
        else:
            c.post("/v1/oncall/schedules", json=body)
            console.print(f"created schedule [bold]{spec.name}[/bold]")
    for pol in cfg.policies:
        c.post("/v1/oncall/policies", json=pol.model_dump(mode="json"))
        console.print(f"saved escalation policy [bold]{pol.name}[/bold]")
    if cfg.roles is not None:
        console.print("[yellow]roles: (the role rule) is read from the server's CODEBLUE_ONCALL_CONFIG only[/yellow]")


@oncall_app.command("override")
def override(
    schedule: str = typer.Argument(..., help="schedule name or id"),
    handle: str = typer.Option(..., "--handle", help="who takes over"),
    start: str = typer.Option(None, "--start", help="from when (default now)"),
    end: str = typer.Option(None, "--end", help="until when"),
    for_: str = typer.Option(None, "--for", help="or: for how long, e.g. 4h, 2d"),
    reason: str = typer.Option("", "--reason"),
    url: str = UrlOpt,
    token: str = TokenOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Put someone on call in place of the schedule for a period."""
    c = Client(url, token)
    t0 = _when(c, start) or float(c.get("/healthz")["time"])
    if end is not None:
        t1 = _when(c, end)
    elif for_ is not None:
        t1 = t0 + parse_duration(for_)
    else:
        raise typer.BadParameter("give --end or --for")
    data = c.post(f"/v1/oncall/schedules/{schedule}/overrides",
                  json={"handle": handle, "start": t0, "end": t1, "reason": reason})
    if as_json:
        print_json(data)
    else:
        console.print(f"override {data['id']}: [bold]{handle}[/bold] on call for {schedule} "
                      f"from {_ts(data['start'])} to {_ts(data['end'])}")


@oncall_app.command("ack")
def ack(
    incident_id: int = typer.Argument(...),
    url: str = UrlOpt,
    token: str = TokenOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Acknowledge an incident: you have it; escalation stops."""
    c = Client(url, token)
    data = c.post(f"/v1/incidents/{incident_id}/ack")
    if as_json:
        print_json(data)
    else:
        console.print(f"[green]acknowledged[/green] incident {incident_id} by {data.get('acknowledged_by')}")


@oncall_app.command("page")
def page(
    incident_id: int = typer.Argument(...),
    reason: str = typer.Option(..., "--reason", help="why you are paging them"),
    handle: str = typer.Option(None, "--handle", help="the person to page"),
    target: str = typer.Option(None, "--target", help="or: infra, feature, risk, ops, schedule:<name>"),
    role: str = typer.Option("escalation", "--role", help="the role they are paged for"),
    url: str = UrlOpt,
    token: str = TokenOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Page a person, or whoever is on call for a target, about an incident (sent through the outbox)."""
    if not handle and not target:
        raise typer.BadParameter("give --handle or --target")
    c = Client(url, token)
    data = c.post("/v1/oncall/pages", json={"incident_id": incident_id, "handle": handle, "target": target,
                                            "role": role, "reason": reason})
    if as_json:
        print_json(data)
    else:
        console.print(f"paged [bold]{data['handle']}[/bold] as {data['role'].replace('_', ' ')} "
                      f"via {', '.join(data['channels']) or 'no channel'}")


@oncall_app.command("escalations")
def escalations(
    incident: int = typer.Option(None, "--incident", help="one incident's escalation"),
    url: str = UrlOpt,
    token: str = TokenOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Escalations: which level each incident is at and when the next one fires."""
    c = Client(url, token)
    data = c.get("/v1/oncall/escalations", params={"incident_id": incident} if incident else {})
    colours = {"active": "yellow", "acknowledged": "green", "exhausted": "red", "cancelled": None}

    def render(rows: list[dict[str, Any]]) -> None:
        table([{**r, "level": f"{r['level'] + 1}/{len(r['levels'])}", "round": f"{r['cycle'] + 1}/{r['repeat'] + 1}",
                "next": _ts(r["next_at"])} for r in rows],
              ["incident_id", "policy", "state", "level", "round", "next", "ended_by"],
              style=lambda r: colours.get(r["state"]))

    output(data, as_json, render)


@oncall_app.command("policies")
def policies(url: str = UrlOpt, token: str = TokenOpt, as_json: bool = JsonOpt) -> None:
    """Escalation policies, in the order they are matched."""
    c = Client(url, token)
    data = c.get("/v1/oncall/policies")

    def render(rows: list[dict[str, Any]]) -> None:
        table([{**r, "levels": " → ".join(f"{x['target']} ({x['timeout_minutes']:g} min)" for x in r["levels"]),
                "match": {k: v for k, v in r["match"].items() if v} or "any"} for r in rows],
              ["name", "match", "levels", "repeat", "source"])

    output(data, as_json, render)


def register(app: typer.Typer) -> None:
    app.add_typer(oncall_app, name="oncall")
