"""`codeblue demo`: the seed's emergency room, end to end, against an embedded server.

A simulated support assistant uses the real SDK over HTTP; the demo plays the people (release engineer,
incident lead, communications lead, support liaison, risk owner) and nothing else. See docs/demo.md.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import orjson
from rich.console import Console

from codeblue.demo.scenarios import SCENARIOS
from codeblue.demo.story import Story, StoryError
from codeblue.demo.view import View

__all__ = ["SCENARIOS", "Story", "StoryError", "run_demo"]

#: Clock speed of `--fast`: the hour of stream time the story needs in about a minute.
FAST_SPEED = 60.0
DEFAULT_SPEED = 20.0


def run_demo(*, scenario: str = "refund-prompt", fast: bool = False, exit_after: bool = False,
             speed: float | None = None, port: int | None = None, console: Console | None = None,
             record_svg: Path | None = None, data_dir: Path | None = None, report: Path | None = None) -> int:
    """Play one story; return 0 when every step happened (judged by its effects), 1 otherwise."""
    console = console or Console()
    speed = speed or (FAST_SPEED if fast else DEFAULT_SPEED)
    story = Story(scenario=scenario, speed=speed, port=port, console=console, data_dir=data_dir)
    view = View(console, title=story.sc.title, total_s=75 * 60)
    story.view = view
    ok = False
    started = time.time()
    try:
        console.print(f"[dim]starting codeblue serve (SQLite, clock ×{speed:g}) in {story.dir} …[/dim]")
        story.setup()
        assert story.server is not None
        view.header([
            ("console", f"{story.server.url}/console"),
            ("status page", f"{story.server.url}/status"),
            ("API", f"{story.server.url}/docs"),
            ("login token", f"{story.server.admin_token}  (admin; also the incident lead's: "
                            f"{story.people['fay'].token})"),
            ("CLI", f"export CODEBLUE_URL={story.server.url} CODEBLUE_TOKEN={story.server.admin_token}"),
            ("clock", f"×{speed:g} — one minute of stream time every {60 / speed:.1f} s"),
            ("data", str(story.dir)),
        ])
        with view:
            try:
                story.play()
            except StoryError as exc:
                story.check("the story ran to the end", False, str(exc))
            rows = story.judge() if story.incident_id is not None else []
        checks = [(c.name, c.ok, c.evidence) for c in story.checks]
        view.summary(rows, checks)
        ok = bool(story.checks) and all(c.ok for c in story.checks)
        verdict = ("[bold green]Every step happened.[/bold green]" if ok else
                   "[bold red]Some steps did not happen (see FAIL above).[/bold red]")
        console.print(verdict)
        if record_svg is not None:
            view.picture(str(record_svg), rows, checks, verdict)
        if report is not None:
            report.write_bytes(orjson.dumps({
                "scenario": scenario, "speed": speed, "ok": ok, "wall_s": time.time() - started,
                "stream_s": story.now - view.t0, "figures": story.figures,
                "checks": [{"name": n, "ok": o, "evidence": e} for n, o, e in checks],
                "postmortem": str(story.fig.postmortem_path) if story.fig.postmortem_path else None,
            }, option=orjson.OPT_INDENT_2))
        if not exit_after:
            console.print(f"\nThe server stays up: console [bold]{story.server.url}/console[/bold], status page "
                          f"[bold]{story.server.url}/status[/bold]. Press Ctrl-C to stop.")
            with contextlib.suppress(KeyboardInterrupt):
                while story.server.alive():
                    time.sleep(0.5)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/yellow]")
    finally:
        story.close()
    return 0 if ok else 1
