"""`codeblue serve` as a subprocess on a fresh data directory (SQLite, accelerated clock)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import httpx

from codeblue.auth.service import new_token_value


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmbeddedServer:
    """A real `codeblue serve` process: its own database, keys and admin token, logs in `server.log`."""

    def __init__(self, data_dir: Path, *, speed: float, port: int | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.speed = speed
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.admin_token = new_token_value()
        self.log_path = data_dir / "server.log"
        self.extra_env = env or {}
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self, timeout: float = 60.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("CODEBLUE_")}
        env.update({
            "CODEBLUE_DATABASE_URL": f"sqlite:///{self.data_dir / 'codeblue.db'}",
            "CODEBLUE_DATA_DIR": str(self.data_dir),
            "CODEBLUE_BOOTSTRAP_TOKEN": self.admin_token,
            "CODEBLUE_PUBLIC_URL": self.url,
            "CODEBLUE_LOG_JSON": "true",
            **self.extra_env,
        })
        self._log = open(self.log_path, "ab")  # noqa: SIM115 (kept open for the process's life)
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "codeblue.cli.main", "serve", "--host", "127.0.0.1", "--port", str(self.port),
             "--clock-speed", f"{self.speed:g}"],
            stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=self.data_dir,
            start_new_session=True,
        )
        deadline = time.time() + timeout
        with httpx.Client(base_url=self.url, timeout=2.0) as c:
            while time.time() < deadline:
                if self._proc.poll() is not None:
                    raise RuntimeError(f"codeblue serve exited with {self._proc.returncode}; see {self.log_path}:\n"
                                       + self.tail())
                with contextlib.suppress(httpx.HTTPError):
                    if c.get("/healthz").status_code == 200:
                        return
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"codeblue serve did not answer on {self.url} within {timeout:.0f}s; see {self.log_path}")

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def wait(self) -> None:
        if self._proc is not None:
            self._proc.wait()

    def stop(self) -> None:
        p = self._proc
        if p is not None and p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)
        if self._log is not None:
            self._log.close()
            self._log = None
