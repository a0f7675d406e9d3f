"""`codeblue runbook lint|list|run|status|approve|deny|accept` and `codeblue recover`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from codeblue.cli.client import Client, JsonOpt, TokenOpt, UrlOpt, console, err_console, output, parse_duration, table

runbook_app = typer.Typer(help="Runbooks: lint files, run them on incidents, approve risky steps.", no_args_is_help=True)

STATE_STYLE = {"done": "green", "failed": "bold red", "denied": "red", "awaiting_approval": "yellow",
               "proposed": "cyan", "waiting": "yellow", "skipped": "dim"}


@runbook_app.command("lint")
def lint(
    files: list[Path] = typer.Argument(..., help="runbook files or directories"),
    server: bool = typer.Option(False, "--server", help="also check references against the server's registry"),
    url: str = UrlOpt,
    token: str = TokenOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Report every error with file:line:column. Exit 1 if any file fails."""
    from codeblue.runbooks.lint import lint_paths

    for f in files:
        if not f.exists():
            raise typer.BadParameter(f"{f} does not exist", param_hint="FILES")
    results: list[dict[str, Any]] = []
    if server:
        c = Client(url, token)
        for path in files:
            for fp in (sorted(path.glob("*.y*ml")) if path.is_dir() else [path]):
                res = c.post("/v1/runbooks/lint", json={"text": fp.read_text(encoding="utf-8"), "file": str(fp)})
                results.append(res)
    else:
        for lr in lint_paths(files):
            results.append({"ok": lr.ok, "file": lr.file, "content_hash": lr.content_hash,
                            "errors": [e.as_dict() for e in lr.errors]})
    bad = [r for r in results if not r["ok"]]
    if as_json:
        output(results, True, lambda _d: None)
    else:
        for r in results:
            for e in r["errors"]:
                err_console.print(f"[red]{e['file']}:{e['line']}:{e['column']}:[/red] "
                                  + (f"{e['path']}: " if e["path"] else "") + e["message"])
        n = len(results)
        msg = f"{n - len(bad)}/{n} runbook files pass lint"
        console.print(f"[green]{msg}[/green]" if not bad else f"[red]{msg}[/red]")
    if bad:
        raise typer.Exit(1)


@runbook_app.command("list")
def list_(url: str = UrlOpt, token: str = TokenOpt, as_json: bool = JsonOpt) -> None:
    """Runbooks loaded by the server, and files it rejected."""
    data = Client(url, token).get("/v1/runbooks")

    def render(d: dict[str, Any]) -> None:
        table(d["runbooks"], ["name", "file", ("content_hash", "sha256"), "steps", "postmortem_owner"],
              title=f"runbooks in {d['directory']}")
        for r in d["rejected"]:
            for e in r["errors"]:
                err_console.print(f"[red]rejected {e['file']}:{e['line']}:{e['column']}:[/red] {e['message']}")

    output(data, as_json, render)


def _render_runs(d: dict[str, Any]) -> None:
    for run in d["runs"]:
        console.print(f"[bold]{run['runbook']}[/bold] ({run['kind']}, {run['state']}) from {run['file']}")
        table(run["steps"], [("id", "#"), "step_id", "type", "state", "approval", "requested_by", "approved_by",
                             "attempts", "error"],
              style=lambda r: STATE_STYLE.get(r["state"]))
    for p in d.get("recovery", []):
        console.print(f"recovery: {p['state']} at {p['percent']:g}% (stage {p['stage'] + 1}/{len(p['ramp'])})")


@runbook_app.command("status")
def status(incident: int, url: str = UrlOpt, token: str = TokenOpt, as_json: bool = JsonOpt) -> None:
    """Runbook runs and steps on an incident."""
    output(Client(url, token).get(f"/v1/incidents/{incident}/runbook"), as_json, _render_runs)


@runbook_app.command("run")
def run(
    incident: int,
    runbook: str = typer.Argument(None, help="runbook name (default: the stabilisation default)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="show what would happen, change nothing"),
    url: str = UrlOpt,
    token: str = TokenOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Run a runbook on an incident."""
    data = Client(url, token).post(f"/v1/incidents/{incident}/runbook/run",
                                   json={"runbook": runbook, "dry_run": dry_run})

    def render(d: dict[str, Any]) -> None:
        if d.get("dry_run"):
            console.print(f"[bold]dry run of {d['runbook']}[/bold] — nothing was changed")
            for item in d["plan"]:
                line = f"  {item['position'] + 1}. {item['step_id']} ({item['type']})"
                if item.get("approval"):
                    line += f" [yellow]needs {item['approval']}[/yellow]"
                console.print(line)
                for c in item.get("controls", []):
                    scope = " ".join(f"{k}={v}" for k, v in c["scope"].items() if v != "*")
                    console.print(f"       {c['type']} on {scope} — {'; '.join(c['why'])}")
                if item.get("rollback"):
                    rb = item["rollback"]
                    console.print(f"       rollback: {rb.get('skip') or str(rb.get('kind')) + '/' + str(rb.get('name'))}")
        else:
            console.print(f"runbook [bold]{d['runbook']}[/bold] started (run {d['id']})")

    output(data, as_json, render)


@runbook_app.command("accept")
def accept(incident: int, url: str = UrlOpt, token: str = TokenOpt, as_json: bool = JsonOpt) -> None:
    """Accept the proposed stabilisation steps in one command."""
    data = Client(url, token).post(f"/v1/incidents/{incident}/runbook/accept")
    output(data, as_json, lambda d: console.print(f"accepted {len(d['accepted'])} steps"))


@runbook_app.command("approve")
def approve(incident: int, step: int, url: str = UrlOpt, token: str = TokenOpt, as_json: bool = JsonOpt) -> None:
    """Approve a risky step (needs the role it names; not your own request)."""
    data = Client(url, token).post(f"/v1/incidents/{incident}/runbook/steps/{step}/approve")
    output(data, as_json, lambda d: console.print(f"[green]approved[/green] step {d['step_id']}"))


@runbook_app.command("deny")
def deny(incident: int, step: int, reason: str = typer.Option("", "--reason"), url: str = UrlOpt,
         token: str = TokenOpt, as_json: bool = JsonOpt) -> None:
    """Deny a step awaiting approval."""
    data = Client(url, token).post(f"/v1/incidents/{incident}/runbook/steps/{step}/deny", json={"reason": reason})
    output(data, as_json, lambda d: console.print(f"[red]denied[/red] step {d['step_id']}"))


def recover(
    incident: int,
    ramp: str = typer.Option("1,10,50,100", "--ramp", help="percent of traffic admitted at each stage"),
    hold: str = typer.Option("5m", "--hold", help="how long each stage must verify healthy"),
    min_events: int = typer.Option(100, "--min-events", help="events a stage needs before it can pass"),
    approve: bool = typer.Option(False, "--approve", help="approve a recovery awaiting a risk owner"),
    url: str = UrlOpt,
    token: str = TokenOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Lift containment progressively, verifying each stage ("reopen carefully after verification")."""
    c = Client(url, token)
    if approve:
        data = c.post(f"/v1/incidents/{incident}/recover/approve")
    else:
        try:
            steps = [float(x) for x in ramp.split(",") if x.strip()]
        except ValueError:
            raise typer.BadParameter(f"{ramp!r} is not a list of percentages such as 1,10,50,100") from None
        data = c.post(f"/v1/incidents/{incident}/recover",
                      json={"ramp": steps, "hold_s": parse_duration(hold), "min_events": min_events})

    def render(d: dict[str, Any]) -> None:
        state = d["state"]
        colour = "yellow" if state == "awaiting_approval" else "green"
        console.print(f"recovery [{colour}]{state}[/{colour}]: {', '.join(f'{p:g}%' for p in d['ramp'])}, "
                      f"hold {d['hold_s']:.0f}s"
                      + (" — a risk owner must approve re-enabling side effects" if state == "awaiting_approval"
                         else ""))

    output(data, as_json, render)


def register(app: typer.Typer) -> None:
    app.add_typer(runbook_app, name="runbook")
    app.command("recover")(recover)
