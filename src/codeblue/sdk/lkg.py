"""The last-known-good snapshot file: written atomically, safe with several processes, checked on load.

Format: a header line (JSON: format, revision, environment, saved_at, sha256 of the body) and a body line
(the snapshot JSON, with content). Writers take an exclusive `flock` on ``<file>.lock``, skip the write when
the file already holds the same or a newer revision, write a temporary file in the same directory, fsync it,
``os.replace`` it over the old one and fsync the directory: a reader sees the old file or the new one, never
half of one, and a process with an older snapshot never overwrites a newer one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

try:  # POSIX; elsewhere the atomic replace still holds, only the revision check can race.
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("codeblue.sdk")

FORMAT = "codeblue-lkg/1"


class LkgError(ValueError):
    """The file is not a usable last-known-good snapshot; says why."""


@dataclass(frozen=True)
class Saved:
    snapshot: dict[str, Any]
    revision: int
    environment: str
    saved_at: float


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    if fcntl is None:
        yield
        return
    fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _header(path: Path) -> dict[str, Any] | None:
    try:
        with open(path, "rb") as fh:
            line = fh.readline(4096)
        head = json.loads(line)
        return head if isinstance(head, dict) else None
    except (OSError, ValueError):
        return None


def save(path: Path, snapshot: dict[str, Any], *, environment: str, saved_at: float, force: bool = False) -> bool:
    """Persist `snapshot`; False when the file already holds this revision or a newer one (unless `force`)."""
    revision = int(snapshot["revision"])
    body = json.dumps(snapshot, separators=(",", ":"), ensure_ascii=False).encode()
    head = {
        "format": FORMAT,
        "revision": revision,
        "environment": environment,
        "saved_at": saved_at,
        "sha256": hashlib.sha256(body).hexdigest(),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path):
        old = _header(path)
        if (
            not force
            and old is not None
            and old.get("format") == FORMAT
            and old.get("environment") == environment
            and isinstance(old.get("revision"), int)
            and old["revision"] >= revision
        ):
            return False
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(json.dumps(head, separators=(",", ":")).encode() + b"\n" + body + b"\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        with contextlib.suppress(OSError):
            dfd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
    return True


def load(path: Path, *, environment: str) -> Saved | None:
    """The saved snapshot, or None when there is no file. Raises LkgError when it is corrupt or foreign."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise LkgError(f"cannot read it: {e.strerror or e}") from e
    first, sep, rest = data.partition(b"\n")
    if not sep:
        raise LkgError("truncated: no header line")
    try:
        head = json.loads(first)
    except ValueError as e:
        raise LkgError(f"header line is not JSON ({e})") from e
    if not isinstance(head, dict) or head.get("format") != FORMAT:
        raise LkgError(f"not a {FORMAT} file")
    body = rest.rstrip(b"\n")
    if hashlib.sha256(body).hexdigest() != head.get("sha256"):
        raise LkgError("checksum mismatch (truncated or edited)")
    if head.get("environment") != environment:
        raise LkgError(f"it is for environment {head.get('environment')!r}, not {environment!r}")
    try:
        snap = json.loads(body)
    except ValueError as e:  # pragma: no cover - the checksum matched, so this was written like this
        raise LkgError(f"body is not JSON ({e})") from e
    if not isinstance(snap, dict) or not isinstance(snap.get("revision"), int):
        raise LkgError("body is not a snapshot")
    saved_at = head.get("saved_at")
    return Saved(
        snapshot=snap,
        revision=int(snap["revision"]),
        environment=environment,
        saved_at=float(saved_at) if isinstance(saved_at, int | float) else 0.0,
    )
