"""`codeblue incident …`: open, list, show, acknowledge, assign, move, note, report and verify incidents."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import typer
from rich.panel import Panel
from rich.table import Table

from codeblue.cli.client import (
    SEVERITY_STYLE,
    Client,
    JsonOpt,
    TokenOpt,
    UrlOpt,
    console,
    fail,
    output,
    print_json,
    table,
)

incident_app = typer.Typer(help="Incidents: open, triage, roles, lifecycle, timeline.", no_args_is_help=True)

STATUS_STYLE = {
    "triggered": "bold red", "investigating": "yellow", "contained": "cyan", "monitoring": "blue",
    "resolved": "green", "closed": "dim",
}


def register(app: typer.Typer) -> None:
    app.add_typer(incident_app, name="incident")


def when(ts: float | None) -> str:
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def parse_when(text: str) -> float:
    """'30m' / '2h' from now, unix seconds, or an ISO 8601 time → unix seconds."""
    from codeblue.cli.client import parse_duration

    text = text.strip()
    if text and text[-1] in "smhdw" and text[:-1].replace(".", "", 1).isdigit():
        return time.time() + parse_duration(text)
    try:
        return float(text)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise typer.BadParameter(f"{text!r} is not a time (e.g. 30m, 2h, 1764339840, 2026-11-28T17:30:00Z)") from exc
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def _harm_text(harm: dict[str, Any] | None) -> str:
    if not harm:
        return ""
    grow = " ↑" if harm.get("growing") else ""
    return f"{harm.get('requests', 0)} req / {harm.get('subjects', 0)} subj{grow}"


def _row_style(inc: dict[str, Any]) -> str | None:
    if inc.get("status") in ("resolved", "closed"):
        return "dim"
    return SEVERITY_STYLE.get(inc.get("severity", "")) if inc.get("severity") in ("SEV1", "SEV2") else None


def _list(rows: list[dict[str, Any]]) -> None:
    if not rows:
        console.print("no incidents")
        return
    view = [
        {**r, "opened": when(r.get("opened_at")), "workflows": ", ".join(r.get("workflows") or []),
         "harm_text": _harm_text(r.get("harm")), "lead": (r.get("roles") or {}).get("incident_lead", "")}
        for r in rows
    ]
    table(view, [("id", "ID"), ("severity", "SEV"), ("status", "status"), ("title", "title"),
                 ("failure_type", "type"), ("workflows", "workflows"), ("harm_text", "harm"),
                 ("lead", "incident lead"), ("opened", "opened")],
          title="Incidents", style=_row_style)


def _show(inc: dict[str, Any], entries: list[dict[str, Any]] | None = None) -> None:
    sev_style = SEVERITY_STYLE.get(inc["severity"], "")
    head = (
        f"[{sev_style}]{inc['severity']}[/] [{STATUS_STYLE.get(inc['status'], '')}]{inc['status']}[/] "
        f"· {inc['failure_type']} · workflows: {', '.join(inc['workflows']) or '—'}\n"
        f"opened {when(inc['opened_at'])} by {inc.get('opened_by') or '?'} (source {inc['source']})"
    )
    if inc.get("summary"):
        head += f"\n\n{inc['summary']}"
    harm = inc.get("harm")
    if harm:
        style = "red" if inc["severity"] in ("SEV1", "SEV2") else ""
        head += (f"\n\n[{style}]harm: {harm.get('requests', 0)} requests, {harm.get('subjects', 0)} subjects"
                 f"{' (growing)' if harm.get('growing') else ''}, since {when(harm.get('started_at')) or '?'}[/]")
    if inc.get("eta"):
        head += f"\nETA: {when(inc['eta'])}"
    if inc.get("mitigation_path"):
        head += f"\nmitigation: {inc['mitigation_path']}"
    console.print(Panel(head, title=f"#{inc['id']} {inc['title']}", expand=False))

    ms = Table(title="Milestones")
    ms.add_column("milestone")
    ms.add_column("at")
    for name, ts in inc["milestones"].items():
        ms.add_row(name.replace("_", " "), when(ts) or "[dim]—[/dim]")
    console.print(ms)
    if inc.get("roles"):
        table([{"role": k.replace("_", " "), "handle": v} for k, v in inc["roles"].items()], ["role", "handle"],
              title="Roles")
    if inc.get("suspects"):
        table(inc["suspects"], ["kind", "name", "version", "from", "score", "rollback"], title="Suspects")
    if entries is not None:
        _timeline(entries)


def _timeline(entries: list[dict[str, Any]]) -> None:
    view = [{"seq": e["seq"], "time": when(e["time"]), "actor": e["actor"], "kind": e["kind"], "text": e["text"]}
            for e in entries]
    table(view, ["seq", "time", "actor", "kind", "text"], title="Timeline",
          style=lambda r: "red" if r["kind"] == "user_report" else None)


def _fetch_timeline(c: Client, incident_id: int, after: int = 0, limit: int | None = None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while True:
        page = c.get(f"/v1/incidents/{incident_id}/timeline", params={"after_seq": after, "limit": 1000})
        out.extend(page["entries"])
        if limit is not None and len(out) >= limit:
            return out[:limit]
        if page["next_after_seq"] is None:
            return out
        after = page["next_after_seq"]


def _pairs(values: list[str] | None, option: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for v in values or []:
        if "=" not in v:
            raise typer.BadParameter(f"{v!r}: expected ROLE=HANDLE", param_hint=option)
        k, _, h = v.partition("=")
        out[k.strip()] = h.strip()
    return out


@incident_app.command("open")
def open_cmd(
    title: str = typer.Argument(..., help="what is happening, in one line"),
    workflow: list[str] = typer.Option(None, "--workflow", "-w", help="affected workflow; repeat for several"),
    severity: str = typer.Option("SEV3", "--severity", "-s", help="SEV1 (worst) … SEV4"),
    failure_type: str = typer.Option("other", "--failure-type", "-t",
                                     help="answer_quality, account_action, tool, retrieval, policy_refusal, availability, other"),
    summary: str = typer.Option("", "--summary"),
    role: list[str] = typer.Option(None, "--role", help="ROLE=HANDLE, e.g. incident_lead=al; repeat"),
    url: str = UrlOpt, token: str = TokenOpt, as_json: bool = JsonOpt,
) -> None:
    """Open an incident (status triggered) and assign roles at once."""
    body = {"title": title, "workflows": workflow or [], "severity": severity.upper(), "failure_type": failure_type,
            "summary": summary, "roles": _pairs(role, "--role")}
    data = Client(url, token).post("/v1/incidents", json=body)
    output(data, as_json, lambda d: console.print(
        f"opened incident [bold]#{d['id']}[/bold] [{SEVERITY_STYLE.get(d['severity'], '')}]{d['severity']}[/] {d['title']}"))


@incident_app.command("list")
def list_cmd(
    status: list[str] = typer.Option(None, "--status", help="only this status; repeat for several"),
    open_only: bool = typer.Option(False, "--open", help="only incidents not yet resolved or closed"),
    workflow: str = typer.Option(None, "--workflow", "-w"),
    limit: int = typer.Option(50, "--limit", min=1, max=1000),
    url: str = UrlOpt, token: str = TokenOpt, as_json: bool = JsonOpt,
) -> None:
    """List incidents, newest first; SEV1/SEV2 in red."""
    params: dict[str, Any] = {"limit": limit}
    if status:
        params["status"] = status
    if open_only:
        params["open"] = "true"
    if workflow:
        params["workflow"] = workflow
    output(Client(url, token).get("/v1/incidents", params=params), as_json, _list)


@incident_app.command("show")
def show_cmd(
    incident_id: int = typer.Argument(..., metavar="ID"),
    entries: int = typer.Option(20, "--entries", "-n", help="newest timeline entries to show (0: none)"),
    url: str = UrlOpt, token: str = TokenOpt, as_json: bool = JsonOpt,
) -> None:
    """An incident: triage, milestones, roles, suspects and the newest timeline entries."""
    c = Client(url, token)
    inc = c.get(f"/v1/incidents/{incident_id}")
    tl: list[dict[str, Any]] = []
    if entries > 0:
        after = max(0, int(inc["chain"]["count"]) - entries)
        tl = _fetch_timeline(c, incident_id, after=after)
    if as_json:
        print_json({**inc, "timeline": tl})
    else:
        _show(inc, tl if entries > 0 else None)


@incident_app.command("timeline")
def timeline_cmd(
    incident_id: int = typer.Argument(..., metavar="ID"),
    after: int = typer.Option(0, "--after", help="only entries after this sequence number"),
    limit: int = typer.Option(None, "--limit", min=1),
    url: str = UrlOpt, token: str = TokenOpt, as_json: bool = JsonOpt,
) -> None:
    """The incident's timeline, oldest first."""
    output(_fetch_timeline(Client(url, token), incident_id, after=after, limit=limit), as_json, _timeline)


@incident_app.command("ack")
def ack_cmd(incident_id: int = typer.Argument(..., metavar="ID"),
            url: str = UrlOpt, token: str = TokenOpt, as_json: bool = JsonOpt) -> None:
    """Acknowledge: you have it. A triggered incident moves to investigating."""
    data = Client(url, token).post(f"/v1/incidents/{incident_id}/ack")
    output(data, as_json, lambda d: console.print(
        f"#{d['id']} acknowledged by {d['acknowledged_by']} at {when(d['milestones']['acknowledged'])}; "
        f"status {d['status']}"))


@incident_app.command("assign")
def assign_cmd(
    incident_id: int = typer.Argument(..., metavar="ID"),
    role: str = typer.Argument(..., help="incident_lead, technical_lead, communications_lead, support_liaison, "
                                         "infra_owner, feature_owner, risk_owner, ops_owner"),
    handle: str = typer.Argument(..., help="the person's handle"),
    url: str = UrlOpt, token: str = TokenOpt, as_json: bool = JsonOpt,
) -> None:
    """Give an incident role to a person; the previous holder hands over."""
    data = Client(url, token).post(f"/v1/incidents/{incident_id}/roles", json={"role": role, "handle": handle})
    output(data, as_json, lambda d: console.print(f"#{d['id']} {role.replace('_', ' ')}: {d['roles'].get(role)}"))


@incident_app.command("status")
def status_cmd(
    incident_id: int = typer.Argument(..., metavar="ID"),
    to: str = typer.Argument(..., help="investigating, contained, monitoring, resolved, closed"),
    note: str = typer.Option("", "--note", "-m"),
    url: str = UrlOpt, token: str = TokenOpt, as_json: bool = JsonOpt,
) -> None:
    """Move the incident along its lifecycle (closing needs a lead token)."""
    data = Client(url, token).post(f"/v1/incidents/{incident_id}/status", json={"to": to, "note": note})
    output(data, as_json, lambda d: console.print(
        f"#{d['id']} is now [{STATUS_STYLE.get(d['status'], '')}]{d['status']}[/]"))


@incident_app.command("note")
def note_cmd(
    incident_id: int = typer.Argument(..., metavar="ID"),
    text: str = typer.Argument(...),
    url: str = UrlOpt, token: str = TokenOpt, as_json: bool = JsonOpt,
) -> None:
    """Add a note to the timeline."""
    data = Client(url, token).post(f"/v1/incidents/{incident_id}/notes", json={"text": text})
    output(data, as_json, lambda d: console.print(f"#{incident_id} entry {d['seq']} added"))


@incident_app.command("report")
def report_cmd(
    incident_id: int = typer.Argument(..., metavar="ID"),
    text: str = typer.Argument(..., help="what the user experienced"),
    subject: str = typer.Option(None, "--subject", help="the affected account or user"),
    channel: str = typer.Option(None, "--channel", help="where the report came from (zendesk, email, …)"),
    url: str = UrlOpt, token: str = TokenOpt, as_json: bool = JsonOpt,
) -> None:
    """Feed a user report back in (support liaison): on the timeline, and counted as a complaint."""
    data = Client(url, token).post(f"/v1/incidents/{incident_id}/reports",
                                   json={"text": text, "subject": subject, "channel": channel})
    output(data, as_json, lambda d: console.print(f"#{incident_id} user report recorded (entry {d['seq']})"))


@incident_app.command("milestone")
def milestone_cmd(
    incident_id: int = typer.Argument(..., metavar="ID"),
    name: str = typer.Argument(..., help="impact_confirmed, mitigation_chosen, mitigated, eta"),
    path: str = typer.Option(None, "--path", help="the mitigation path chosen (mitigation_chosen)"),
    eta: str = typer.Option(None, "--eta", help="ETA: 30m, 2h, unix seconds or ISO time (eta)"),
    url: str = UrlOpt, token: str = TokenOpt, as_json: bool = JsonOpt,
) -> None:
    """Record a milestone (set once) or update the ETA."""
    data: dict[str, Any] = {}
    if path:
        data["path"] = path
    if eta:
        data["eta"] = parse_when(eta)
    res = Client(url, token).post(f"/v1/incidents/{incident_id}/milestones", json={"name": name, "data": data})
    output(res, as_json, lambda d: console.print(
        f"#{incident_id} {name.replace('_', ' ')} " + ("recorded" if d["set"] else "was already set; unchanged")))


@incident_app.command("update")
def update_cmd(
    incident_id: int = typer.Argument(..., metavar="ID"),
    severity: str = typer.Option(None, "--severity", "-s"),
    failure_type: str = typer.Option(None, "--failure-type", "-t"),
    summary: str = typer.Option(None, "--summary"),
    title: str = typer.Option(None, "--title"),
    eta: str = typer.Option(None, "--eta", help="30m, 2h, unix seconds or ISO time"),
    url: str = UrlOpt, token: str = TokenOpt, as_json: bool = JsonOpt,
) -> None:
    """Change triage facts; each change goes on the timeline."""
    body: dict[str, Any] = {}
    for key, val in (("severity", severity.upper() if severity else None), ("failure_type", failure_type),
                     ("summary", summary), ("title", title)):
        if val is not None:
            body[key] = val
    if eta:
        body["eta"] = parse_when(eta)
    if not body:
        raise fail("nothing to change: give --severity, --failure-type, --summary, --title or --eta", 2)
    data = Client(url, token).call("PATCH", f"/v1/incidents/{incident_id}", json=body)
    output(data, as_json, lambda d: _show(d))


@incident_app.command("verify")
def verify_cmd(incident_id: int = typer.Argument(..., metavar="ID"),
               url: str = UrlOpt, token: str = TokenOpt, as_json: bool = JsonOpt) -> None:
    """Check the timeline's HMAC chain; exits 1 when it was tampered with."""
    data = Client(url, token).get(f"/v1/incidents/{incident_id}/timeline/verify")

    def render(d: dict[str, Any]) -> None:
        if d["ok"]:
            console.print(f"[green]#{incident_id}: timeline intact[/green] ({d['entries']} entries, chain verified)")
            return
        console.print(f"[bold red]#{incident_id}: timeline TAMPERED[/bold red] ({d['entries']} entries stored, "
                      f"{d['head']['count']} on the chain head)")
        table(d["problems"], ["seq", "problem", "detail"], title="Problems", style=lambda _r: "red")

    output(data, as_json, render)
    if not data["ok"]:
        raise typer.Exit(1)
