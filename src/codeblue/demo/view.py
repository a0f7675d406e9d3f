"""The demo's terminal: a live timeline, a progress bar for stream time, vitals (red is harm, green is
healthy), and a summary table of the figures at the end."""

from __future__ import annotations

from collections import deque
from datetime import UTC, datetime
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.progress import BarColumn, Progress, TextColumn
from rich.table import Table
from rich.text import Text

#: Timeline entry kinds → colour. Red is harm, green is healthy/repaired, yellow is people acting.
STYLES = {
    "harm": "bold red", "ok": "bold green", "people": "yellow", "system": "cyan", "comms": "magenta",
    "check": "bold", "fail": "bold red", "dim": "dim",
}


def stream_clock(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%H:%M:%S")


class View:
    """Prints the story line by line above a live footer (progress + vitals)."""

    def __init__(self, console: Console, *, title: str, total_s: float) -> None:
        self.console = console
        self.title = title
        self.total_s = total_s
        self.t0 = 0.0
        self.phase = "starting"
        self.vitals: list[tuple[str, float | None, int, bool]] = []
        self.progress = Progress(TextColumn("[bold]stream time[/bold] {task.fields[clock]}"), BarColumn(),
                                 TextColumn("{task.fields[elapsed]}"), TextColumn("[dim]{task.fields[phase]}"),
                                 console=console, auto_refresh=False)
        self.task = self.progress.add_task("stream", total=total_s, clock="--:--:--", elapsed="", phase="")
        self.tail: deque[tuple[str, str]] = deque(maxlen=14)  # the last lines, for the end-of-run picture
        self.live = Live(self._render(), console=console, auto_refresh=False, transient=True,
                         redirect_stdout=False, redirect_stderr=False)

    def __enter__(self) -> View:
        self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.live.__exit__(*exc)

    def _render(self) -> Group:
        vit = Table.grid(padding=(0, 2))
        row: list[Text] = []
        for wf, rate, n, harm in self.vitals:
            label = "—" if rate is None else f"{100 * rate:.1f}% wrong"
            row.append(Text(f"{wf}: {label} (n={n})", style="bold red" if harm else "green"))
        if row:
            vit.add_row(*row)
        return Group(self.progress, vit)

    def header(self, lines: list[tuple[str, str]]) -> None:
        t = Table.grid(padding=(0, 1))
        t.add_column(style="bold")
        t.add_column()
        for k, v in lines:
            t.add_row(k, v)
        self.console.print(Panel(t, title=f"[bold]codeblue demo[/bold] — {self.title}", border_style="blue"))

    def tick(self, now: float, phase: str, vitals: list[tuple[str, float | None, int, bool]]) -> None:
        elapsed = max(0.0, now - self.t0)
        if elapsed > self.total_s:
            self.total_s = elapsed * 1.1
        self.phase = phase
        self.vitals = vitals
        m, s = divmod(int(elapsed), 60)
        self.progress.update(self.task, completed=elapsed, total=self.total_s, clock=stream_clock(now),
                             elapsed=f"+{m:02d}:{s:02d}", phase=phase)
        self.live.update(self._render(), refresh=True)

    def line(self, t: float | None, text: str, style: str = "system") -> None:
        stamp = f"[dim]{stream_clock(t)}[/dim] " if t is not None else " " * 9
        self.console.print(f"{stamp}{text}", style=STYLES.get(style, style), highlight=False)
        self.tail.append((f"{stamp}{text}", STYLES.get(style, style)))

    def step(self, n: int, text: str) -> None:
        self.console.print(Text(f"\n── {n}. {text}", style="bold blue"))

    def picture(self, path: str, rows: list[tuple[str, str, str, bool]], checks: list[tuple[str, bool, str]],
                verdict: str) -> None:
        """Save the end of the run (the last timeline lines, both tables, the verdict) as SVG."""
        import io

        rec = Console(record=True, file=io.StringIO(), width=min(self.console.width, 120), force_terminal=True,
                      color_system="truecolor")
        mine, self.console = self.console, rec
        try:
            for text, style in self.tail:
                rec.print(text, style=style, highlight=False)
            self.summary(rows, checks)
            rec.print(verdict)
        finally:
            self.console = mine
        rec.save_svg(path, title=f"codeblue demo — {self.title}")

    def summary(self, rows: list[tuple[str, str, str, bool]], checks: list[tuple[str, bool, str]]) -> None:
        t = Table(title="The run, measured", title_style="bold", show_lines=False)
        t.add_column("figure")
        t.add_column("measured by the app", justify="right")
        t.add_column("codeblue says", justify="right")
        for name, app, server, ok in rows:
            t.add_row(name, app, server, style=None if ok else "red")
        self.console.print(t)
        c = Table(title="Story steps, judged by their effects", title_style="bold")
        c.add_column("step")
        c.add_column("result")
        c.add_column("evidence")
        for name, ok, why in checks:
            c.add_row(name, Text("PASS" if ok else "FAIL", style="bold green" if ok else "bold red"), why)
        self.console.print(c)
