"""`codeblue demo`: the seed's emergency room, end to end (see docs/demo.md)."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def demo(
        scenario: str = typer.Option("refund-prompt", "--scenario", help="refund-prompt or finance-router"),
        fast: bool = typer.Option(False, "--fast", help="run the clock fast (×60): the story in about a minute"),
        exit_after: bool = typer.Option(False, "--exit", help="stop the server at the end; exit 1 if a step "
                                                              "did not happen"),
        speed: float = typer.Option(None, "--speed", help="clock speed (default 20, or 60 with --fast)"),
        port: int = typer.Option(None, "--port", help="port of the embedded server (default: a free one)"),
        record_svg: Path = typer.Option(None, "--record-svg", help="save the end of the run (last lines and the summary tables) as SVG"),
        report: Path = typer.Option(None, "--report", help="write the checks and figures of the run as JSON"),
        data_dir: Path = typer.Option(None, "--data-dir", help="where the run keeps its files (default: a new "
                                                                "temporary directory)"),
    ) -> None:
        """Play the seed's worked example against an embedded server: detection, containment, paging,
        communication, audit, verified recovery and the post-mortem — all by themselves."""
        from codeblue.demo import SCENARIOS, run_demo

        if scenario not in SCENARIOS:
            raise typer.BadParameter(f"unknown scenario {scenario!r}; one of {', '.join(SCENARIOS)}",
                                     param_hint="--scenario")
        if speed is not None and not 1 <= speed <= 1000:
            raise typer.BadParameter("the clock speed must be between 1 and 1000", param_hint="--speed")
        raise typer.Exit(run_demo(scenario=scenario, fast=fast, exit_after=exit_after, speed=speed, port=port,
                                  record_svg=record_svg, data_dir=data_dir, report=report))
