"""Shared by the sdk_* benchmarks: a real `codeblue serve` on loopback, and the peers' own virtualenv."""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
PEERS_VENV = HERE / "out" / "venv-peers"
PEERS = ["openfeature-sdk", "launchdarkly-server-sdk", "UnleashClient", "pybreaker"]


def peers_python() -> Path:
    """The peers' interpreter, creating their virtualenv on first use (never a codeblue dependency)."""
    py = PEERS_VENV / "bin" / "python"
    stamp = PEERS_VENV / ".installed"
    if not stamp.exists():
        print(f"installing peers into {PEERS_VENV} ({', '.join(PEERS)}) …", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(PEERS_VENV)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", *PEERS], check=True)
        stamp.write_text("\n".join(PEERS))
    return py


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Served:
    url: str
    admin: str
    proc: subprocess.Popen[bytes]

    def client(self, token: str | None = None) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {token or self.admin}"}, timeout=60)

    def token(self, handle: str, *roles: str) -> str:
        with self.client() as c:
            r = c.post("/v1/tokens", json={"handle": handle, "roles": list(roles)})
            r.raise_for_status()
            return str(r.json()["token"])


@contextlib.contextmanager
def serve(extra_env: dict[str, str] | None = None) -> Iterator[Served]:
    """`codeblue serve` on a free loopback port with a throwaway SQLite database."""
    tmp = Path(tempfile.mkdtemp(prefix="codeblue-bench-"))
    port = free_port()
    admin = "cb_bench_" + secrets.token_hex(16)
    env = {**os.environ, "CODEBLUE_DATABASE_URL": f"sqlite:///{tmp}/codeblue.db", "CODEBLUE_DATA_DIR": str(tmp),
           "CODEBLUE_BOOTSTRAP_TOKEN": admin, **(extra_env or {})}
    proc = subprocess.Popen([sys.executable, "-m", "codeblue.cli.main", "serve", "--port", str(port)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError("codeblue serve exited")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            if time.time() > deadline:
                raise RuntimeError("codeblue serve did not start")
            time.sleep(0.1)
        yield Served(url, admin, proc)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def control(c: httpx.Client, type: str, scope: dict[str, str], params: dict[str, Any] | None = None,
            reason: str = "bench") -> dict[str, Any]:
    r = c.post("/v1/controls", json={"type": type, "scope": scope, "params": params or {}, "reason": reason,
                                     "lift_condition": "benchmark over"})
    r.raise_for_status()
    out: dict[str, Any] = r.json()
    return out
