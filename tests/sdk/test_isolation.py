"""The SDK is what `pip install codeblue` gives an application: it must not pull in the server side."""

from __future__ import annotations

import json
import subprocess
import sys

SERVER_ONLY = ("fastapi", "starlette", "sqlalchemy", "alembic", "pydantic", "uvicorn", "orjson", "typer", "rich",
               "psycopg", "yaml", "jinja2")


def test_importing_and_using_the_sdk_loads_no_server_code() -> None:
    # httpx itself imports its optional CLI (click, rich) when they happen to be installed, as in the dev
    # environment: what httpx and fastjsonschema load alone is the baseline, not the SDK's doing.
    code = """
import json, sys
import httpx, fastjsonschema
baseline = set(sys.modules)
from codeblue.sdk import Guard
g = Guard(None, lkg_path=None, default="fail_closed")
d = g.decide("w", action="a")
with g.trace("w", subject="s") as t:
    t.response(status=200)
g.close()
print(json.dumps({"allowed": d.allowed, "modules": sorted(set(sys.modules) - baseline)}))
"""
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["allowed"] is False
    mods = got["modules"]
    ours = [m for m in mods if m.startswith("codeblue")]
    assert all(m == "codeblue" or m.startswith("codeblue.sdk") for m in ours), ours
    leaked = [m for m in mods if m.split(".")[0] in SERVER_ONLY]
    assert not leaked, f"the SDK imported server-side packages: {leaked}"
