"""`codeblue replay` (the detection pipeline offline, in stream time) and `codeblue sim generate`."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer

from codeblue.cli.client import SEVERITY_STYLE, JsonOpt, console, err_console, fail, print_json, table


def _when(t: float | None) -> str:
    if t is None:
        return ""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _render(report: dict[str, Any]) -> None:
    console.print(
        f"[bold]{report['events']:,}[/bold] events replayed from {report['lines']:,} lines "
        f"({_when(report['stream']['start'])} → {_when(report['stream']['end'])} UTC); "
        f"{report['rejected']:,} lines rejected, {report['changes']} changes."
    )
    incs = report["incidents"]
    if not incs:
        console.print("[green]No incidents: every indicator stayed within its baseline.[/green]")
        return
    rows = []
    for inc in incs:
        top = inc["suspects"][0] if inc["suspects"] else None
        rows.append({
            "opened": _when(inc["opened_at"]), "workflow": inc["workflow"], "indicator": inc["indicator"],
            "type": inc["failure_type"], "severity": inc["severity"],
            "harm": f"{inc['harm']['requests']} req / {inc['harm']['subjects']} subj",
            "suspect": f"{top['kind']}/{top['name']} {top['version']} ({top['score']:.2f})" if top else "",
            "resolved": _when(inc["resolved_at"]),
        })
    table(rows, ["opened", "workflow", "indicator", "type", "severity", "harm", "suspect", "resolved"],
          title="Incidents the detector would have opened", style=lambda r: SEVERITY_STYLE.get(r["severity"]))
    for inc in incs:
        console.print(f"\n[bold]#{inc['id']} {inc['workflow']}[/bold] · {inc['failure_type']} · {inc['severity']}")
        for a in inc["alerts"][:5]:
            console.print(f"  [red]●[/red] {_when(a['fired_at'])} {a['evidence']}")
        for s in inc["suspects"][:3]:
            colour = "bold red" if s["score"] >= 0.5 else "dim"
            rb = "rollback available" if s["rollback"] else "no rollback target"
            console.print(f"  [{colour}]suspect {s['score']:.2f}[/{colour}] {s['kind']}/{s['name']} {s['version']}: "
                          f"{s['evidence']} ({rb})")
        if "contained_at" in inc:
            if inc["contained_at"] is None:
                console.print("  [bold red]not contained[/bold red] by the runbooks")
            else:
                hb = inc["harm_before_containment"]
                console.print(f"  [green]contained[/green] {_when(inc['contained_at'])}: harm before containment "
                              f"{hb['requests']} requests / {hb['subjects']} subjects; prevented "
                              f"{inc['prevented']['requests']}; collateral {inc['collateral']['requests']} good requests")
            for a in inc.get("actions", []):
                console.print(f"    {_when(a['at'])} {a['type']} {a['target']}")


def register(app: typer.Typer) -> None:
    @app.command("replay")
    def replay(
        events: Path = typer.Argument(..., help="Event v1 NDJSON file", exists=True, dir_okay=False, readable=True),
        changes: Path = typer.Option(None, "--changes", help="Change v1 NDJSON file", exists=True, dir_okay=False),
        config: Path = typer.Option(None, "--config", envvar="CODEBLUE_DETECT_CONFIG",
                                    help="detector objectives (detect.yaml)", exists=True, dir_okay=False),
        runbooks: Path = typer.Option(None, "--runbooks", help="also run these runbooks in stream time (a directory;"
                                      " 'shipped' for the built-in library) and report containment", file_okay=False),
        as_json: bool = JsonOpt,
    ) -> None:
        """Run the detection pipeline offline over recorded events, in stream time, and report the incidents."""
        from codeblue.errors import Invalid
        from codeblue.signals.objectives import load_objectives
        from codeblue.signals.replay import read_changes, replay_file

        try:
            objectives = load_objectives(config)
        except Invalid as exc:
            raise fail(exc.detail, 2) from None
        if runbooks is not None:
            from codeblue.runbooks.replay import replay_with_runbooks

            if str(runbooks) != "shipped" and not runbooks.is_dir():
                raise fail(f"--runbooks {runbooks}: not a directory", 2)
            change_list, change_errors = read_changes(changes) if changes else ([], [])
            with open(events, "rb") as fh:
                report = replay_with_runbooks(
                    fh, changes=change_list, runbooks_dir=None if str(runbooks) == "shipped" else runbooks,
                    detect_config=config)
            report["change_errors"] = [e.as_dict() for e in change_errors] + report.get("change_errors", [])
        else:
            report = replay_file(events, changes_path=changes, objectives=objectives).report()
        for e in report["change_errors"]:
            where = f"{changes}:{e['line']}" if "line" in e else f"change {e.get('change')}"
            err_console.print(f"[yellow]{where}:[/yellow] {e.get('field') or 'line'}: {e['reason']} (skipped)")
        shown = report["errors"][:20]
        for e in shown:
            err_console.print(f"[yellow]{events}:{e['line']}:[/yellow] {e['field'] or 'line'}: {e['reason']} (skipped)")
        if report["rejected"] > len(shown):
            err_console.print(f"[yellow]… {report['rejected'] - len(shown)} more rejected lines[/yellow]")
        if as_json:
            print_json(report)
        else:
            _render(report)

    sim_app = typer.Typer(help="Simulated traffic and fault scenarios.", no_args_is_help=True)
    app.add_typer(sim_app, name="sim")

    @sim_app.command("generate")
    def generate(
        scenario: str = typer.Argument(..., help="scenario name (see `codeblue sim list`)"),
        out: Path = typer.Option(..., "--out", help="directory for events.ndjson, changes.ndjson, truth.json"),
        seed: int = typer.Option(0, "--seed", help="random seed"),
        days: float = typer.Option(None, "--days", help="length of the clean scenario, in days"),
    ) -> None:
        """Write a scenario's events, changes and truth."""
        from codeblue import sim

        if scenario not in sim.SCENARIOS:
            raise fail(f"unknown scenario {scenario!r}; known: {', '.join(sim.SCENARIOS)}", 2)
        opts: dict[str, Any] = {}
        if days is not None:
            if scenario != "clean":
                raise fail("--days applies to the clean scenario only", 2)
            opts["days"] = days
        run = sim.generate(scenario, seed, **opts)
        run.write(out)
        console.print(f"{len(run.events):,} events, {len(run.changes)} changes, "
                      f"{len(run.truth['faults'])} faults → {out}")

    @sim_app.command("list")
    def list_scenarios(as_json: bool = JsonOpt) -> None:
        """The scenario library."""
        from codeblue import sim

        rows = [{"scenario": k, "story": (v.__doc__ or "").strip().splitlines()[0]} for k, v in sim.SCENARIOS.items()]
        if as_json:
            print_json(rows)
        else:
            table(rows, ["scenario", "story"], title="Scenarios")
