"""`codeblue postmortem`, `codeblue metrics` and `codeblue audit list|review|export|progress`."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer
from rich.markdown import Markdown
from rich.table import Table

from codeblue.cli.client import Client, JsonOpt, TokenOpt, UrlOpt, console, fail, print_json

audit_app = typer.Typer(help="Audit of served answers: the riskiest first, review, export.", no_args_is_help=True)
action_app = typer.Typer(help="Corrective actions of post-mortems.", no_args_is_help=True)

CATEGORY_STYLE = {"wrong_entity": "bold red", "action": "red", "tool_error": "magenta", "ungrounded": "yellow",
                  "refusal": "cyan", "error": "blue", "answer": "dim"}


def register(app: typer.Typer) -> None:
    app.command("postmortem")(postmortem_cmd)
    app.command("metrics")(metrics_cmd)
    app.add_typer(audit_app, name="audit")
    app.add_typer(action_app, name="action")


def _when(ts: float | None) -> str:
    return "" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _dur(s: float | None) -> str:
    if s is None:
        return "—"
    n = round(s)
    h, rem = divmod(n, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}h {m:02d}m" if h else (f"{m}m {sec:02d}s" if m else f"{sec}s")


def _clip(v: Any, n: int = 60) -> str:
    text = "" if v is None else str(v).replace("\n", " ")
    return text if len(text) <= n else text[: n - 1] + "…"


# ----- post-mortem ----------------------------------------------------------------------------------------


def postmortem_cmd(
    incident: int = typer.Argument(..., help="incident id"),
    md: Path = typer.Option(None, "--md", help="write the Markdown to this file instead of showing it"),
    generate: bool = typer.Option(False, "--generate", help="compute a fresh draft even if versions are saved"),
    save: Path = typer.Option(None, "--save", help="save this Markdown file as a new version"),
    base_version: int = typer.Option(None, "--base-version", help="with --save: the version you edited"),
    complete: bool = typer.Option(False, "--complete", help="mark the post-mortem complete (lead)"),
    url: str = UrlOpt,
    token: str = TokenOpt,
    as_json: bool = JsonOpt,
) -> None:
    """The post-mortem of an incident: a draft from the timeline and stored signals, or the latest version."""
    c = Client(url, token, timeout=300.0)
    if save is not None:
        try:
            text = save.read_text(encoding="utf-8")
        except OSError as exc:
            raise fail(f"cannot read {save}: {exc}", 2) from exc
        body: dict[str, Any] = {"markdown": text}
        if base_version is not None:
            body["base_version"] = base_version
        data = c.call("PUT", f"/v1/incidents/{incident}/postmortem", json=body)
        if as_json:
            print_json(data)
        else:
            console.print(f"saved post-mortem version {data['version']} of incident {incident}")
        return
    if complete:
        data = c.post(f"/v1/incidents/{incident}/postmortem/complete")
        if as_json:
            print_json(data)
        else:
            console.print(f"post-mortem of incident {incident} completed (final version {data['final_version']})")
        return
    data = c.get(f"/v1/incidents/{incident}/postmortem", params={"generate": str(generate).lower()})
    if as_json:
        print_json(data)
        return
    if md is not None:
        md.write_text(data["markdown"], encoding="utf-8")
        what = "draft" if data.get("generated") else f"version {data['version']['version']}"
        console.print(f"wrote the post-mortem {what} of incident {incident} to {md}")
        return
    if sys.stdout.isatty():
        console.print(Markdown(data["markdown"]))
    else:
        sys.stdout.write(data["markdown"])


# ----- metrics --------------------------------------------------------------------------------------------


def metrics_cmd(
    since: str = typer.Option("30d", "--since", help="period start: a duration before now (30d), RFC 3339 or unix"),
    until: str = typer.Option(None, "--until"),
    url: str = UrlOpt,
    token: str = TokenOpt,
    as_json: bool = JsonOpt,
) -> None:
    """MTTD, MTTA, MTTC and MTTR per severity, failure type and workflow."""
    params = {"since": since, **({"until": until} if until else {})}
    data = Client(url, token).get("/v1/metrics/response", params=params)
    if as_json:
        print_json(data)
        return
    t = Table(title=f"Response metrics {_when(data['since'])} → {_when(data['until'])} (mean; n)")
    for col in ("group", "incidents", "MTTD", "MTTA", "MTTC", "MTTR"):
        t.add_column(col)

    def row(label: str, sm: dict[str, Any]) -> None:
        cells = [f"{_dur(sm[m]['mean_s'])} ({sm[m]['n']})" for m in ("mttd", "mtta", "mttc", "mttr")]
        t.add_row(label, str(sm["incidents"]), *cells)

    row("all", data["overall"])
    for dim, groups in data["by"].items():
        for key, sm in groups.items():
            row(f"{dim}={key}", sm)
    console.print(t)


# ----- audit ----------------------------------------------------------------------------------------------


@audit_app.command("list")
def audit_list(
    incident: int = typer.Argument(..., help="incident id"),
    limit: int = typer.Option(20, "--limit", help="items per page"),
    cursor: str = typer.Option(None, "--cursor", help="continue from a previous page's next cursor"),
    state: str = typer.Option(None, "--state", help="pending, ok, harmful or remediated"),
    category: str = typer.Option(None, "--category"),
    url: str = UrlOpt,
    token: str = TokenOpt,
    as_json: bool = JsonOpt,
) -> None:
    """The incident's served answers, riskiest first (input/output redacted at intake)."""
    params: dict[str, Any] = {"limit": limit}
    for k, v in (("cursor", cursor), ("state", state), ("category", category)):
        if v:
            params[k] = v
    c = Client(url, token, timeout=300.0)
    data = c.get(f"/v1/incidents/{incident}/audit", params=params)
    if as_json:
        print_json(data)
        return
    q = data.get("queue") or {}
    t = Table(title=f"Audit of incident {incident}: {q.get('items', 0)} items, {_when(q.get('since'))} → "
                    f"{_when(q.get('until'))}" + (" (truncated)" if q.get("truncated") else ""))
    for col in ("item", "rank", "category", "state", "time", "subject", "trace", "amount", "input", "output", "why"):
        t.add_column(col)
    for it in data["items"]:
        t.add_row(str(it["id"]), str(it["rank"]), it["category"], it["state"], _when(it["time"]),
                  _clip(it["subject"], 16), _clip(it["trace_id"], 12), "" if it["amount"] is None else f"{it['amount']:g}",
                  _clip(it["input"], 40), _clip(it["output"], 40), _clip("; ".join(it["reasons"]), 60),
                  style=CATEGORY_STYLE.get(it["category"]))
    console.print(t)
    if data.get("next_cursor"):
        console.print(f"more: --cursor {data['next_cursor']}")


@audit_app.command("review")
def audit_review(
    incident: int = typer.Argument(..., help="incident id"),
    item: int = typer.Argument(..., help="audit item id (the `item` column of `audit list`)"),
    state: str = typer.Option(..., "--state", help="pending, ok, harmful or remediated"),
    note: str = typer.Option("", "--note"),
    url: str = UrlOpt,
    token: str = TokenOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Record the review of one item."""
    data = Client(url, token).post(f"/v1/incidents/{incident}/audit/items/{item}",
                                   json={"state": state, "note": note})
    if as_json:
        print_json(data)
    else:
        console.print(f"item {data['id']} (rank {data['rank']}, {data['category']}) is now {data['state']}")


@audit_app.command("progress")
def audit_progress(
    incident: int = typer.Argument(..., help="incident id"),
    url: str = UrlOpt,
    token: str = TokenOpt,
    as_json: bool = JsonOpt,
) -> None:
    """How much of the audit has been reviewed, and the harm it confirmed."""
    data = Client(url, token).get(f"/v1/incidents/{incident}/audit/progress")
    if as_json:
        print_json(data)
        return
    st = data["states"]
    console.print(f"incident {incident}: {data['reviewed']}/{data['total']} reviewed ({data['percent']}%) — "
                  + ", ".join(f"{k} {v}" for k, v in st.items())
                  + f"; confirmed harm {data['confirmed_harm']}")


@audit_app.command("export")
def audit_export(
    incident: int = typer.Argument(..., help="incident id"),
    fmt: str = typer.Option("csv", "--format", help="csv or json"),
    out: Path = typer.Option(None, "--out", "-o", help="file to write (default: standard output)"),
    url: str = UrlOpt,
    token: str = TokenOpt,
) -> None:
    """Export the whole queue with review states."""
    if fmt not in ("csv", "json"):
        raise fail("--format must be csv or json", 2)
    c = Client(url, token, timeout=600.0)
    try:
        with c.http.stream("GET", f"/v1/incidents/{incident}/audit/export", params={"format": fmt}) as resp:
            if resp.status_code >= 400:
                resp.read()
                try:
                    body = resp.json()
                    raise fail(f"{body.get('title')}: {body.get('detail')}")
                except ValueError:
                    raise fail(f"HTTP {resp.status_code}") from None
            sink = open(out, "wb") if out else sys.stdout.buffer  # noqa: SIM115
            try:
                for chunk in resp.iter_bytes():
                    sink.write(chunk)
            finally:
                if out:
                    sink.close()
    except OSError as exc:
        raise fail(f"cannot write {out}: {exc}", 1) from exc
    if out:
        console.print(f"wrote {out}")


# ----- corrective actions ---------------------------------------------------------------------------------


@action_app.command("add")
def action_add(
    incident: int = typer.Argument(..., help="incident id"),
    title: str = typer.Argument(..., help="what will be done"),
    kind: str = typer.Option(..., "--kind", help="technical or operational"),
    owner: str = typer.Option(..., "--owner", help="the owner's handle"),
    due: str = typer.Option(..., "--due", help="YYYY-MM-DD, RFC 3339, unix seconds or +7d"),
    link: str = typer.Option("", "--link"),
    url: str = UrlOpt,
    token: str = TokenOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Add a corrective action to an incident's post-mortem."""
    data = Client(url, token).post(f"/v1/incidents/{incident}/actions",
                                   json={"title": title, "kind": kind, "owner": owner, "due": due, "link": link})
    if as_json:
        print_json(data)
    else:
        console.print(f"action {data['id']} ({data['kind']}) for @{data['owner']} due {_when(data['due_at'])}")


@action_app.command("set")
def action_set(
    action: int = typer.Argument(..., help="action id"),
    status: str = typer.Option(None, "--status", help="open, in_progress, done or wont_do"),
    owner: str = typer.Option(None, "--owner"),
    due: str = typer.Option(None, "--due"),
    link: str = typer.Option(None, "--link"),
    url: str = UrlOpt,
    token: str = TokenOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Change an action's status, owner, due date or link."""
    body = {k: v for k, v in (("status", status), ("owner", owner), ("due", due), ("link", link)) if v is not None}
    if not body:
        raise fail("nothing to change: give --status, --owner, --due or --link", 2)
    data = Client(url, token).call("PATCH", f"/v1/actions/{action}", json=body)
    if as_json:
        print_json(data)
    else:
        console.print(f"action {data['id']}: {data['status']}, @{data['owner']}, due {_when(data['due_at'])}")


@action_app.command("list")
def action_list(
    incident: int = typer.Option(None, "--incident"),
    overdue: bool = typer.Option(False, "--overdue"),
    url: str = UrlOpt,
    token: str = TokenOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Corrective actions, soonest due first."""
    c = Client(url, token)
    if incident is not None:
        data = c.get(f"/v1/incidents/{incident}/actions")
    else:
        data = c.get("/v1/actions", params={"overdue": str(overdue).lower()})
    if as_json:
        print_json(data)
        return
    t = Table(title="Corrective actions")
    for col in ("id", "incident", "kind", "title", "owner", "due", "status"):
        t.add_column(col)
    for a in data["actions"]:
        t.add_row(str(a["id"]), str(a["incident_id"]), a["kind"], _clip(a["title"], 50), "@" + a["owner"],
                  _when(a["due_at"])[:10], a["status"] + (" (overdue)" if a.get("overdue") else ""),
                  style="red" if a.get("overdue") else None)
    console.print(t)
    if data.get("missing_kinds"):
        console.print(f"still needed before completion: {', '.join(data['missing_kinds'])}")
