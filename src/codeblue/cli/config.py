"""`codeblue config …`: push versions, activate (in steps), roll back, and read a config's history."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

import typer
from rich.console import Group
from rich.panel import Panel
from rich.syntax import Syntax

from codeblue.cli.changes import render_changes, when
from codeblue.cli.client import Client, JsonOpt, TokenOpt, UrlOpt, console, fail, output, print_json, table

config_app = typer.Typer(help="Versioned AI configuration: push, activate, roll back, history.", no_args_is_help=True)

EnvOpt = typer.Option("production", "--env", "--environment", help="environment")
IncidentOpt = typer.Option(None, "--incident", "-i", help="incident id to put this on the timeline of")
NoteOpt = typer.Option("", "--note", "-m", help="why")


def register(app: typer.Typer) -> None:
    app.add_typer(config_app, name="config")


def _path(kind: str, name: str) -> str:
    return f"/v1/configs/{quote(kind, safe='')}/{quote(name, safe='')}"


def _print_change(ch: dict[str, Any]) -> None:
    verb = "rolled back" if ch["type"] == "rollback" else "activated"
    colour = "green" if ch["type"] == "rollback" else "bold"
    share = "" if ch["fraction"] >= 1 else f" at {ch['fraction']:.0%}"
    console.print(
        f"[{colour}]{verb}[/{colour}] {ch['kind']}/{ch['name']} in {ch['environment']}: "
        f"{ch['from'] or '∅'} → {ch['to'] or '∅'}{share} (change {ch['id']})"
    )


@config_app.command("push")
def push(
    kind: str = typer.Argument(..., help="prompt, routing_policy, model_alias, retrieval_index, policy_template, "
                                         "tool_contract, feature_flag, or a registered custom kind"),
    name: str = typer.Argument(...),
    file: Path = typer.Option(None, "--file", "-f", help="read the content from a file ('-' for stdin)"),
    content: str = typer.Option(None, "--content", "-c", help="the content as text"),
    as_json_content: bool = typer.Option(False, "--json-content", help="parse the content as JSON (default for .json files)"),
    version: str = typer.Option(None, "--version", "-v", help="version label (default: the next vN)"),
    note: str = NoteOpt,
    workflow: list[str] = typer.Option(None, "--workflow", "-w", help="a workflow this config touches; repeat"),
    url: str = UrlOpt,
    token: str = TokenOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Store a new immutable version (serves nothing until activated)."""
    if (file is None) == (content is None):
        raise typer.BadParameter("give exactly one of --file or --content")
    if file is not None:
        text = sys.stdin.read() if str(file) == "-" else file.read_text(encoding="utf-8")
        as_json_content = as_json_content or file.suffix == ".json"
    else:
        text = content
    body_content: Any = text
    if as_json_content:
        try:
            body_content = json.loads(text)
        except json.JSONDecodeError as exc:
            raise typer.BadParameter(f"the content is not JSON: line {exc.lineno} column {exc.colno}: {exc.msg}") from exc
    body: dict[str, Any] = {"content": body_content, "note": note}
    if version:
        body["version"] = version
    if workflow:
        body["workflows"] = workflow
    data = Client(url, token).post(f"{_path(kind, name)}/versions", json=body)
    output(data, as_json, lambda d: console.print(f"pushed {kind}/{name} [bold]{d['version']}[/bold]"))


@config_app.command("activate")
def activate(
    kind: str = typer.Argument(...),
    name: str = typer.Argument(...),
    version: str = typer.Argument(...),
    fraction: float = typer.Option(1.0, "--fraction", help="share of traffic (0–1]; 1 makes it stable"),
    environment: str = EnvOpt,
    incident: int = IncidentOpt,
    note: str = NoteOpt,
    url: str = UrlOpt,
    token: str = TokenOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Make a version stable, or roll it out as the candidate at --fraction (raise it in steps)."""
    body = {"version": version, "fraction": fraction, "environment": environment, "incident_id": incident, "note": note}
    data = Client(url, token).post(f"{_path(kind, name)}/activate", json=body)
    output(data, as_json, _print_change)


@config_app.command("rollback")
def rollback(
    kind: str = typer.Argument(...),
    name: str = typer.Argument(...),
    to: str = typer.Option(None, "--to", help="roll back to this version (default: the previous stable)"),
    environment: str = EnvOpt,
    incident: int = IncidentOpt,
    note: str = NoteOpt,
    url: str = UrlOpt,
    token: str = TokenOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Stop a rolling-out candidate, or re-activate the previous stable version (or --to)."""
    body = {"environment": environment, "to_version": to, "incident_id": incident, "note": note}
    data = Client(url, token).post(f"{_path(kind, name)}/rollback", json=body)
    output(data, as_json, _print_change)


@config_app.command("history")
def history(
    kind: str = typer.Argument(...),
    name: str = typer.Argument(...),
    environment: str = EnvOpt,
    url: str = UrlOpt,
    token: str = TokenOpt,
    as_json: bool = JsonOpt,
) -> None:
    """A config's versions (stable and candidate marked) and its changes, newest first."""
    data = Client(url, token).get(_path(kind, name), params={"environment": environment})

    def render(d: dict[str, Any]) -> None:
        frozen = " [red]frozen[/red]" if d["frozen"] else ""
        cand = f", candidate [yellow]{d['candidate']}[/yellow] at {d['fraction']:.0%}" if d["candidate"] else ""
        console.print(f"[bold]{d['key']}[/bold] in {d['environment']}: stable [green]{d['stable'] or '∅'}[/green]"
                      f"{cand}{frozen}; workflows: {', '.join(d['workflows']) or '—'}")
        rows = []
        for v in reversed(d["versions"]):
            mark = "stable" if v["version"] == d["stable"] else ("candidate" if v["version"] == d["candidate"] else "")
            rows.append({**v, "state": mark, "when": when(v["created_at"])})
        table(rows, ["version", "state", ("when", "created (UTC)"), "author", "note"], title="versions",
              style=lambda r: {"stable": "green", "candidate": "yellow"}.get(r["state"]))
        if d.get("changes"):
            render_changes(d["changes"], title="changes (every environment)", one_config=True)

    output(data, as_json, render)


@config_app.command("show")
def show(
    kind: str = typer.Argument(...),
    name: str = typer.Argument(...),
    version: str = typer.Argument(...),
    url: str = UrlOpt,
    token: str = TokenOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Print one version's content."""
    data = Client(url, token).get(f"{_path(kind, name)}/versions/{quote(version, safe='')}")

    def render(d: dict[str, Any]) -> None:
        body = d["content"]
        shown: Any = body if isinstance(body, str) else Syntax(json.dumps(body, indent=2), "json")
        console.print(Panel(Group(shown), title=f"{kind}/{name} {d['version']} by {d['author']} {when(d['created_at'])}"))

    output(data, as_json, render)


@config_app.command("list")
def list_configs(
    kind: str = typer.Option(None, "--kind"),
    environment: str = EnvOpt,
    url: str = UrlOpt,
    token: str = TokenOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Every config with what serves in the environment."""
    params: dict[str, Any] = {"environment": environment}
    if kind:
        params["kind"] = kind
    rows = Client(url, token).get("/v1/configs", params=params)
    output(rows, as_json, lambda d: table(
        [{**r, "rolling": f"{r['candidate']} at {r['fraction']:.0%}" if r["candidate"] else ""} for r in d],
        ["key", "stable", ("rolling", "candidate"), "frozen", "versions", "latest", "workflows"],
        title=f"configs in {environment}",
        style=lambda r: "red" if r["frozen"] else ("yellow" if r["candidate"] else None),
    ))


@config_app.command("kinds")
def kinds(url: str = UrlOpt, token: str = TokenOpt, as_json: bool = JsonOpt) -> None:
    """Built-in and registered config kinds."""
    rows = Client(url, token).get("/v1/configs/kinds")
    output(rows, as_json, lambda d: table(
        [{**r, "schema": "yes" if r["schema"] else ""} for r in d], ["kind", "builtin", "schema", "description"],
        title="config kinds"))


@config_app.command("register-kind")
def register_kind(
    kind: str = typer.Argument(..., help="e.g. output_schema"),
    description: str = typer.Option("", "--description", "-d"),
    schema: Path = typer.Option(None, "--schema", help="a JSON Schema file every version's content must match"),
    url: str = UrlOpt,
    token: str = TokenOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Register a custom config kind."""
    body: dict[str, Any] = {"kind": kind, "description": description}
    if schema is not None:
        try:
            body["schema"] = json.loads(schema.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise fail(f"cannot read the schema {schema}: {exc}", 2) from exc
    data = Client(url, token).post("/v1/configs/kinds", json=body)
    if as_json:
        print_json(data)
    else:
        console.print(f"registered config kind [bold]{data['kind']}[/bold]")
