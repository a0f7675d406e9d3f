"""`codeblue`: verbs on nouns (`codeblue incident open`) and a few top-level verbs for whole jobs."""

from __future__ import annotations

import gc
import importlib
import importlib.util
from pathlib import Path

import typer

from codeblue.cli.client import Client, JsonOpt, TokenOpt, UrlOpt, console, print_json

app = typer.Typer(
    name="codeblue",
    help="Incident response for AI products.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

#: Modules in codeblue.cli that each define ``register(app)``; missing ones are skipped.
GROUPS = (
    "incident",
    "changes",
    "config",
    "control",
    "signals",
    "runbook",
    "oncall",
    "comms",
    "review",
    "demo",
)


@app.command()
def serve(
    host: str = typer.Option(None, help="address to listen on (default 127.0.0.1)"),
    port: int = typer.Option(None, help="port (default 8600)"),
    clock_speed: float = typer.Option(None, "--clock-speed", help="run the server clock N times faster (demos)"),
    database_url: str = typer.Option(None, "--database-url", help="SQLAlchemy URL (default sqlite:///./codeblue.db)"),
    data_dir: Path = typer.Option(None, "--data-dir", help="where keys and the admin token file live"),
    runbooks: Path = typer.Option(None, "--runbooks", help="directory of runbook YAML files"),
    config_file: Path = typer.Option(None, "--config", help="settings file (YAML)"),
) -> None:
    """Run the API, console, detectors and push stream in one process."""
    import uvicorn

    from codeblue.app import bootstrap_admin, build_runtime, create_app
    from codeblue.logs import setup_logging
    from codeblue.settings import load_settings

    overrides: dict[str, object] = {}
    for key, val in (
        ("host", host), ("port", port), ("clock_speed", clock_speed), ("database_url", database_url),
        ("data_dir", data_dir), ("runbooks_dir", runbooks), ("config_file", config_file),
    ):
        if val is not None:
            overrides[key] = val
    settings = load_settings(**overrides)
    setup_logging(settings.log_json)
    rt = build_runtime(settings)
    token = bootstrap_admin(rt)
    if token:
        where = "CODEBLUE_BOOTSTRAP_TOKEN" if settings.bootstrap_token else str(settings.data_dir / "admin-token")
        console.print(
            f"[bold green]First start:[/bold green] admin token [bold]{token}[/bold]\n"
            f"(shown once; also saved to {where}, readable only by you)"
        )
    console.print(f"codeblue listening on [bold]http://{settings.host}:{settings.port}[/bold]")
    web_app = create_app(settings, rt=rt)
    # Everything built so far (modules, routes, models: ~180k objects) lives as long as the process. Moving it out
    # of the cyclic collector's reach makes each full collection microseconds instead of 70-230 ms, a pause
    # every request in flight would otherwise wait out (it set the p99 of timeline appends).
    gc.collect()
    gc.freeze()
    # Streams (SSE) stay open; give them a few seconds on shutdown, then close (SDKs resume with Last-Event-ID).
    # Access lines are below the log level anyway; access_log=False skips building them per request.
    uvicorn.run(web_app, host=settings.host, port=settings.port, log_level="warning", access_log=False,
                timeout_graceful_shutdown=3)


token_app = typer.Typer(help="API tokens.", no_args_is_help=True)
app.add_typer(token_app, name="token")


@token_app.command("create")
def token_create(
    role: list[str] = typer.Option(..., "--role", help="a role; repeat for several"),
    name: str = typer.Option(..., "--name", help="handle of the person the token belongs to"),
    full_name: str = typer.Option(None, "--full-name"),
    email: str = typer.Option(None, "--email"),
    url: str = UrlOpt,
    token: str = TokenOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Create a token for a person (needs an admin token). The value is printed once."""
    c = Client(url, token)
    data = c.post("/v1/tokens", json={"handle": name, "name": full_name, "email": email, "roles": role})
    if as_json:
        print_json(data)
    else:
        console.print(f"token for [bold]{data['handle']}[/bold] ({', '.join(data['roles'])}): {data['token']}")


for _mod in GROUPS:
    _name = f"codeblue.cli.{_mod}"
    if importlib.util.find_spec(_name) is not None:
        importlib.import_module(_name).register(app)


def run() -> None:
    app()


if __name__ == "__main__":
    run()
