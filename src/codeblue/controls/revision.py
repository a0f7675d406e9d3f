"""The global revision: bumped in the same transaction as every control/config change, with a revision-log row.

Every writer takes the row lock on ``controls_revision`` (``SELECT … FOR UPDATE`` on PostgreSQL; SQLite write
transactions are already ``BEGIN IMMEDIATE``), so revisions are strictly increasing *and* commit in order:
a reader that has seen revision r has seen every revision below it. The in-process broadcaster is told about
each new revision right after the commit (never before: a stream must not announce what could roll back).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import delete, event, func, select, update
from sqlalchemy.orm import Session

from codeblue.controls.model import ControlsRevision, RevisionLogEntry
from codeblue.hooks import hooks
from codeblue.runtime import Runtime

BROADCASTER_KEY = "controls.broadcaster"
_PENDING = "controls.pending"
#: ``session.info`` key: the last revision this session's transaction wrote.
LAST_REVISION = "controls.last_revision"


@dataclass(frozen=True, slots=True)
class StreamEntry:
    """One revision of one environment, with its Server-Sent Events frame rendered once for every subscriber."""

    revision: int
    prev: int
    environment: str
    frame: bytes


def sse_frame(event_name: str, revision: int, data: dict[str, Any]) -> bytes:
    return b"event: %s\nid: %d\ndata: %s\n\n" % (event_name.encode(), revision, orjson.dumps(data))


def entry_from_row(row: RevisionLogEntry) -> StreamEntry:
    return StreamEntry(row.revision, row.prev, row.environment, sse_frame("patch", row.revision, row.patch))


def lock_revision(s: Session) -> int:
    """Take the revision row lock (held until commit) and return the current revision."""
    return int(s.execute(select(ControlsRevision.revision).where(ControlsRevision.id == 1).with_for_update()).scalar_one())


def written_revision(s: Session) -> int:
    """The last revision written in this session's transaction (else the current one)."""
    rev = s.info.get(LAST_REVISION)
    return int(rev) if rev is not None else current_revision(s)


def current_revision(s: Session) -> int:
    """The latest global revision (every environment)."""
    return int(s.scalar(select(ControlsRevision.revision).where(ControlsRevision.id == 1)) or 0)


def environment_head(s: Session, environment: str) -> int:
    """The latest revision that changed `environment` (0 if none): the revision of its snapshot."""
    return int(
        s.scalar(select(func.max(RevisionLogEntry.revision)).where(RevisionLogEntry.environment == environment)) or 0
    )


def bump_revision(
    s: Session,
    rt: Runtime,
    *,
    environment: str,
    controls_upsert: Iterable[dict[str, Any]] = (),
    controls_remove: Iterable[int] = (),
    configs: dict[str, dict[str, Any] | None] | None = None,
) -> int:
    """Record one revision of `environment`'s snapshot in the caller's transaction; return it."""
    revision = int(
        s.execute(
            update(ControlsRevision)
            .where(ControlsRevision.id == 1)
            .values(revision=ControlsRevision.revision + 1)
            .returning(ControlsRevision.revision)
            .execution_options(synchronize_session=False)
        ).scalar_one()
    )
    prev = environment_head(s, environment)
    patch: dict[str, Any] = {
        "revision": revision,
        "prev": prev,
        "controls_upsert": list(controls_upsert),
        "controls_remove": list(controls_remove),
        "configs": dict(configs or {}),
    }
    s.add(RevisionLogEntry(revision=revision, environment=environment, prev=prev, created_at=rt.clock.now(), patch=patch))
    s.flush()
    s.info[LAST_REVISION] = revision
    hooks.emit("controls.changed", s=s, rt=rt, revision=revision)
    broadcaster = rt.extras.get(BROADCASTER_KEY)
    if broadcaster is not None:
        _after_commit(s, broadcaster, StreamEntry(revision, prev, environment, sse_frame("patch", revision, patch)))
    return revision


def _after_commit(s: Session, broadcaster: Any, entry: StreamEntry) -> None:
    pending: list[StreamEntry] | None = s.info.get(_PENDING)
    if pending is None:
        pending = s.info[_PENDING] = []
        if not s.info.get(_PENDING + ".listening"):
            s.info[_PENDING + ".listening"] = True

            def flush(session: Session) -> None:
                entries = session.info.pop(_PENDING, None)
                if entries:
                    broadcaster.publish(entries)

            def discard(session: Session) -> None:
                session.info.pop(_PENDING, None)

            event.listen(s, "after_commit", flush)
            event.listen(s, "after_rollback", discard)
    pending.append(entry)


def log_since(s: Session, *, environment: str, after: int, limit: int) -> list[RevisionLogEntry]:
    """Revision-log rows of `environment` newer than `after`, oldest first."""
    return list(
        s.scalars(
            select(RevisionLogEntry)
            .where(RevisionLogEntry.environment == environment, RevisionLogEntry.revision > after)
            .order_by(RevisionLogEntry.revision)
            .limit(limit)
        )
    )


def trim_log(s: Session, *, keep: int) -> int:
    """Drop log rows older than the newest `keep` revisions, always keeping each environment's head."""
    top = current_revision(s)
    cutoff = top - keep
    if cutoff <= 0:
        return 0
    heads = select(func.max(RevisionLogEntry.revision)).group_by(RevisionLogEntry.environment)
    res = s.execute(
        delete(RevisionLogEntry)
        .where(RevisionLogEntry.revision <= cutoff, RevisionLogEntry.revision.not_in(heads))
        .execution_options(synchronize_session=False)
    )
    return int(getattr(res, "rowcount", 0) or 0)
