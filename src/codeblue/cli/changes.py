"""`codeblue changes`: what changed recently (activations, rollbacks, external changes), newest first."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import typer

from codeblue.cli.client import Client, JsonOpt, TokenOpt, UrlOpt, output, table

CHANGE_STYLE = {"rollback": "green", "external": "cyan", "activate": None}


def when(ts: float | None) -> str:
    return "" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


ALL_COLUMNS = [("when", "time (UTC)"), ("type", "type"), ("config", "config"), ("versions", "from → to"),
               ("share", "share"), ("environment", "env"), ("actor", "actor"), ("incident", "incident"),
               ("note", "note")]


def render_changes(rows: list[dict[str, Any]], title: str = "changes", *, one_config: bool = False) -> None:
    view = [
        {
            **r,
            "when": when(r["time"]),
            "config": f"{r['kind']}/{r['name']}",
            "versions": f"{r['from'] or '∅'} → {r['to'] or '∅'}",
            "share": f"{r['fraction']:.0%}",
        }
        for r in rows
    ]
    table(
        view,
        [c for c in ALL_COLUMNS if not (one_config and c[0] in ("config", "environment"))],
        title=title,
        style=lambda r: CHANGE_STYLE.get(r["type"]),
    )


def changes(
    since: str = typer.Option("24h", "--since", help="unix seconds, RFC 3339, or a duration before now (30m, 2h, 7d)"),
    until: str = typer.Option(None, "--until", help="same forms as --since"),
    workflow: str = typer.Option(None, "--workflow", "-w", help="only changes touching this workflow"),
    kind: str = typer.Option(None, "--kind", help="a config kind, or deploy"),
    environment: str = typer.Option(None, "--env", "--environment", help="only this environment"),
    limit: int = typer.Option(200, "--limit", min=1, max=5000),
    url: str = UrlOpt,
    token: str = TokenOpt,
    as_json: bool = JsonOpt,
) -> None:
    """What changed recently? Activations, rollbacks and external changes (deploys, flags), newest first."""
    params: dict[str, Any] = {"since": since, "limit": limit}
    for key, val in (("until", until), ("workflow", workflow), ("kind", kind), ("environment", environment)):
        if val is not None:
            params[key] = val
    rows = Client(url, token).get("/v1/changes", params=params)
    output(rows, as_json, lambda d: render_changes(d, title=f"changes since {since}"))


def register(app: typer.Typer) -> None:
    app.command("changes")(changes)
