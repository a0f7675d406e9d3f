"""The CLI's HTTP client and output helpers: tables for people, --json for scripts, exit codes that mean something.

Exit codes: 0 ok, 1 refused by the server (its problem detail is printed), 2 usage error.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import httpx
import orjson
import typer
from rich.console import Console
from rich.table import Table


def _console(*, stderr: bool = False) -> Console:
    """A terminal gets its own width; a pipe, a file or CI gets wide tables instead of Rich's 80-column default
    (which would cut cells short). COLUMNS still wins when set."""
    probe = Console(stderr=stderr)
    if probe.is_terminal or os.environ.get("COLUMNS"):
        return probe
    return Console(stderr=stderr, width=200)


console = _console()
err_console = _console(stderr=True)

UrlOpt = typer.Option(None, "--url", envvar="CODEBLUE_URL", help="server URL (default http://127.0.0.1:8600)")
TokenOpt = typer.Option(None, "--token", envvar="CODEBLUE_TOKEN", help="API token")
JsonOpt = typer.Option(False, "--json", help="print JSON instead of a table")


def fail(message: str, code: int = 1) -> typer.Exit:
    err_console.print(f"[red]error:[/red] {message}")
    return typer.Exit(code)


class Client:
    def __init__(self, url: str | None = None, token: str | None = None, timeout: float = 30.0) -> None:
        self.url = (url or os.environ.get("CODEBLUE_URL") or "http://127.0.0.1:8600").rstrip("/")
        self.token = token or os.environ.get("CODEBLUE_TOKEN") or ""
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            resp = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise fail(f"cannot reach {self.url}: {exc}") from exc
        if resp.status_code >= 400:
            try:
                body = resp.json()
                where = f" (field {body['field']})" if body.get("field") else ""
                msg = f"{body.get('title', resp.status_code)}: {body.get('detail', '')}{where}"
            except Exception:
                msg = f"HTTP {resp.status_code}: {resp.text[:500]}"
            raise fail(msg, 1)
        if resp.status_code == 204 or not resp.content:
            return None
        ctype = resp.headers.get("content-type", "")
        if "json" in ctype:
            return resp.json()
        return resp.text

    def get(self, path: str, **kw: Any) -> Any:
        return self.call("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> Any:
        return self.call("POST", path, **kw)

    def delete(self, path: str, **kw: Any) -> Any:
        return self.call("DELETE", path, **kw)


def print_json(data: Any) -> None:
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode() + "\n")


def table(
    rows: Iterable[dict[str, Any]],
    columns: Sequence[str | tuple[str, str]],
    *,
    title: str | None = None,
    style: Callable[[dict[str, Any]], str | None] | None = None,
) -> None:
    t = Table(title=title)
    keys: list[str] = []
    for c in columns:
        key, head = (c, c) if isinstance(c, str) else c
        keys.append(key)
        t.add_column(head)
    for row in rows:
        t.add_row(*[fmt(row.get(k)) for k in keys], style=style(row) if style else None)
    console.print(t)


def fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1e6 else f"{v:.0f}"
    if isinstance(v, (list, tuple)):
        return ", ".join(fmt(x) for x in v)
    if isinstance(v, dict):
        return ", ".join(f"{k}={fmt(x)}" for k, x in v.items())
    return str(v)


def output(data: Any, as_json: bool, render: Callable[[Any], None]) -> None:
    if as_json:
        print_json(data)
    else:
        render(data)


SEVERITY_STYLE = {"SEV1": "bold red", "SEV2": "red", "SEV3": "yellow", "SEV4": "cyan"}


def parse_duration(text: str) -> float:
    """'90s', '30m', '2h', '7d' or plain seconds → seconds."""
    text = text.strip()
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    try:
        if text[-1] in units:
            return float(text[:-1]) * units[text[-1]]
        return float(text)
    except (ValueError, IndexError) as exc:
        raise typer.BadParameter(f"{text!r} is not a duration (e.g. 90s, 30m, 2h, 7d)") from exc
