"""Incident logic as plain functions over a write session: open, triage, roles, lifecycle, milestones, and the
HMAC-chained timeline that is the single source of truth for what happened.

Every function here runs inside the caller's transaction (``rt.db.write()``); hooks fire inside it too.
"""

from __future__ import annotations

import re
import typing
from typing import Any

import orjson
from sqlalchemy import String, Table, bindparam, cast, insert, select, update
from sqlalchemy.orm import Session, joinedload, selectinload
from sqlalchemy.orm.util import identity_key

from codeblue.auth.service import person_by_handle
from codeblue.errors import Conflict, Invalid, NotFound
from codeblue.hooks import hooks
from codeblue.incidents import chain, lifecycle
from codeblue.incidents.model import (
    FAILURE_TYPES,
    MILESTONES,
    OPEN_STATUSES,
    ROLES,
    SEVERITIES,
    STATUSES,
    Incident,
    IncidentRole,
    TimelineEntry,
)
from codeblue.runtime import Runtime

__all__ = [
    "FAILURE_TYPES",
    "MILESTONES",
    "OPEN_STATUSES",
    "ROLES",
    "SEVERITIES",
    "STATUSES",
    "Incident",
    "IncidentRole",
    "TimelineEntry",
    "acknowledge",
    "append_entry",
    "assign_role",
    "find_open_incident",
    "get_incident",
    "list_incidents",
    "open_incident",
    "record_user_report",
    "set_milestone",
    "set_status",
    "timeline",
    "update_triage",
    "verify_timeline",
]

MAX_TEXT = 20_000
WORKFLOW_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$")
HARM_KEYS = ("requests", "subjects", "workflows", "started_at", "growing")


# ----- validation -----------------------------------------------------------------------------------------


def _choice(value: str, allowed: tuple[str, ...], field: str) -> str:
    if value not in allowed:
        raise Invalid(f"{field} must be one of {', '.join(allowed)}; got {value!r}", field=field, allowed=list(allowed))
    return value


def _workflows(values: list[str] | tuple[str, ...] | None, field: str = "workflows") -> list[str]:
    out: list[str] = []
    for i, w in enumerate(values or []):
        if not isinstance(w, str) or not WORKFLOW_RE.match(w):
            raise Invalid(
                f"workflow {w!r} is not a valid name (letters, digits, . _ : / -, up to 128 characters)",
                field=f"{field}[{i}]",
            )
        if w not in out:
            out.append(w)
    return out


def _harm(harm: dict[str, Any] | None) -> dict[str, Any] | None:
    if harm is None:
        return None
    if not isinstance(harm, dict):
        raise Invalid("harm must be an object", field="harm")
    out = dict(harm)
    for key in ("requests", "subjects"):
        v = out.get(key, 0)
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise Invalid(f"harm.{key} must be a non-negative integer", field=f"harm.{key}")
        out[key] = v
    out["workflows"] = _workflows(out.get("workflows"), "harm.workflows")
    started = out.get("started_at")
    if started is not None and (isinstance(started, bool) or not isinstance(started, (int, float))):
        raise Invalid("harm.started_at must be unix seconds", field="harm.started_at")
    out["started_at"] = float(started) if started is not None else None
    out["growing"] = bool(out.get("growing", False))
    return chain.normalise_data(out)


def _suspects(suspects: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i, sus in enumerate(suspects or []):
        if not isinstance(sus, dict):
            raise Invalid("a suspect must be an object", field=f"suspects[{i}]")
        out.append(chain.normalise_data(sus))
    return out


def _text(value: str, field: str, *, required: bool = False) -> str:
    if not isinstance(value, str):
        raise Invalid(f"{field} must be a string", field=field)
    if required and not value.strip():
        raise Invalid(f"{field} must not be empty", field=field)
    if len(value) > MAX_TEXT:
        raise Invalid(f"{field} is longer than {MAX_TEXT} characters", field=field)
    return value


# ----- reading --------------------------------------------------------------------------------------------


def get_incident(s: Session, incident_id: int, *, for_update: bool = False) -> Incident:
    """The incident, or NotFound. With `for_update` the row is locked until commit (PostgreSQL)."""
    if for_update:
        locked: set[int] = s.info.setdefault("incidents.locked", set())
        if incident_id in locked:
            held = s.get(Incident, incident_id)
            if held is not None:
                return held
        inc = s.get(Incident, incident_id, with_for_update=True, populate_existing=True)
        if inc is not None:
            locked.add(incident_id)
    else:
        inc = s.get(Incident, incident_id)
    if inc is None:
        raise NotFound(f"no incident {incident_id}", field="incident_id")
    return inc


def find_open_incident(s: Session, *, workflow: str, failure_type: str) -> Incident | None:
    """The most recent open incident of `failure_type` that covers `workflow` (alert grouping)."""
    q = (
        select(Incident)
        .where(Incident.status.in_(OPEN_STATUSES), Incident.failure_type == failure_type)
        .order_by(Incident.id.desc())
    )
    for inc in s.scalars(q):
        if workflow in (inc.workflows or []):
            return inc
    return None


def list_incidents(
    s: Session,
    *,
    statuses: list[str] | None = None,
    open_only: bool = False,
    workflow: str | None = None,
    severity: list[str] | None = None,
    limit: int = 100,
    before_id: int | None = None,
) -> list[Incident]:
    """Incidents, newest first."""
    q = select(Incident).options(selectinload(Incident.role_rows)).order_by(Incident.id.desc())
    if statuses:
        for i, st in enumerate(statuses):
            _choice(st, STATUSES, f"status[{i}]" if len(statuses) > 1 else "status")
        q = q.where(Incident.status.in_(statuses))
    if open_only:
        q = q.where(Incident.status.in_(OPEN_STATUSES))
    if severity:
        q = q.where(Incident.severity.in_(severity))
    if before_id is not None:
        q = q.where(Incident.id < before_id)
    if workflow is not None:
        _workflows([workflow], "workflow")
        # Workflow names cannot contain quotes, so the quoted name matches one whole JSON array element; the
        # exact check below removes LIKE wildcard look-alikes.
        pattern = '%"' + workflow.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + '"%'
        q = q.where(cast(Incident.workflows, String).like(pattern, escape="\\"))
    out: list[Incident] = []
    for inc in s.scalars(q.limit(limit * 4 if workflow else limit)):
        if workflow is None or workflow in (inc.workflows or []):
            out.append(inc)
            if len(out) >= limit:
                break
    return out


def timeline(s: Session, *, incident_id: int, after_seq: int = 0, limit: int = 200) -> list[TimelineEntry]:
    get_incident(s, incident_id)
    q = (
        select(TimelineEntry)
        .where(TimelineEntry.incident_id == incident_id, TimelineEntry.seq > after_seq)
        .order_by(TimelineEntry.seq)
        .limit(limit)
    )
    return list(s.scalars(q))


# ----- the timeline ---------------------------------------------------------------------------------------


def append_entry(
    s: Session, rt: Runtime, *, incident_id: int, kind: str, text: str, actor: str,
    data: dict[str, Any] | None = None,
) -> TimelineEntry:
    """Append one entry to the incident's timeline: the only way an entry is ever written.

    Locks the incident row (PostgreSQL; SQLite write transactions are already exclusive), chains the entry's
    MAC onto the stored head, inserts it and moves the head, all in the caller's transaction.
    """
    _check_entry(kind, text, actor)
    body = chain.normalise_data(data)
    now = float(rt.clock.now())
    locked: set[int] = s.info.setdefault("incidents.locked", set())
    if incident_id in locked:
        return _append_orm(s, rt, incident_id=incident_id, kind=kind, text=text, actor=actor, body=body, now=now)
    return _append_core(s, rt, incident_id=incident_id, kind=kind, text=text, actor=actor, body=body, now=now)


def _check_entry(kind: str, text: str, actor: str) -> None:
    if not kind or len(kind) > 64:
        raise Invalid("kind must be 1–64 characters", field="kind")
    _text(text, "text")
    if not actor or len(actor) > 100:
        raise Invalid("actor must be 1–100 characters", field="actor")


def _next(rt: Runtime, incident_id: int, count: int, head: str, *, kind: str, text: str, actor: str,
          body: dict[str, Any], now: float) -> tuple[int, str, str]:
    seq = count + 1
    mac = chain.entry_mac(
        rt.server_key, head,
        chain.canonical(incident_id=incident_id, seq=seq, time=now, actor=actor, kind=kind, text=text, data=body),
    )
    return seq, mac, chain.seal(rt.server_key, incident_id, seq, mac)


def _append_orm(s: Session, rt: Runtime, *, incident_id: int, kind: str, text: str, actor: str,
                body: dict[str, Any], now: float) -> TimelineEntry:
    """Append when the caller already holds the incident row as an object (status moves, triage, roles)."""
    _held_heads(s).pop(incident_id, None)
    inc = get_incident(s, incident_id, for_update=True)
    seq, mac, seal = _next(rt, inc.id, inc.chain_count, inc.chain_head, kind=kind, text=text, actor=actor,
                           body=body, now=now)
    entry = TimelineEntry(incident_id=inc.id, seq=seq, time=now, actor=actor, kind=kind, text=text, data=body,
                          mac=mac)
    s.add(entry)
    inc.chain_count, inc.chain_head, inc.chain_seal = seq, mac, seal
    inc.updated_at = max(inc.updated_at or now, now)
    s.flush()
    hooks.emit("timeline.appended", s=s, rt=rt, incident=inc, entry=entry)
    return entry


def _held_heads(s: Session) -> dict[int, tuple[int, str, float]]:
    """Chain heads this session's current transaction wrote with the statements below: {incident: (count,
    head, updated_at)}. A later append to the same incident in the same transaction (group commit puts many in
    one) holds the row already and knows its head, so it skips the read. Valid only for the innermost
    transaction that wrote them: a savepoint that ends, a commit or a rollback leaves a new innermost
    transaction and so an empty cache, and the next append reads the head again."""
    txn = s.get_nested_transaction() or s.get_transaction()
    held = s.info.get("incidents.heads")
    if held is None or held[0] is not txn:
        held = (txn, {})
        s.info["incidents.heads"] = held
    return typing.cast(dict[int, tuple[int, str, float]], held[1])


_INC = typing.cast(Table, Incident.__table__)
_ENTRIES = typing.cast(Table, TimelineEntry.__table__)
_CHAIN_COLS = ["chain_count", "chain_head", "chain_seal", "updated_at"]
# Built once: statement construction and cache-key generation dominate a short append otherwise.
_HEAD_FOR_UPDATE = (
    select(_INC.c.chain_count, _INC.c.chain_head, _INC.c.updated_at)
    .where(_INC.c.id == bindparam("iid"))
    .with_for_update()
)
_INSERT_ENTRY = insert(_ENTRIES).returning(_ENTRIES.c.id)
_MOVE_HEAD = (
    update(_INC)
    .where(_INC.c.id == bindparam("iid"))
    .values(chain_count=bindparam("cc"), chain_head=bindparam("ch"), chain_seal=bindparam("cs"),
            updated_at=bindparam("ua"))
)


_RAW_SQL: dict[str, tuple[str, str, str]] = {
    # (lock and read the head, insert the entry, move the head — or "" when the insert moves it too) per
    # dialect, run on the driver's cursor:
    # SQLAlchemy's per-statement machinery costs several times what the database does for these.
    "sqlite": (
        "SELECT chain_count, chain_head, updated_at FROM incidents WHERE id = ?",
        "INSERT INTO timeline_entries (incident_id, seq, time, actor, kind, text, data, mac) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        "UPDATE incidents SET chain_count = ?, chain_head = ?, chain_seal = ?, updated_at = ? WHERE id = ?",
    ),
    "postgresql": (
        "SELECT chain_count, chain_head, updated_at FROM incidents WHERE id = %s FOR UPDATE",
        # one round trip for both writes (the row lock is held until commit: fewer round trips, shorter hold)
        "WITH entry AS (INSERT INTO timeline_entries (incident_id, seq, time, actor, kind, text, data, mac) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING id) "
        "UPDATE incidents SET chain_count = %s, chain_head = %s, chain_seal = %s, updated_at = %s WHERE id = %s "
        "RETURNING (SELECT id FROM entry)",
        "",
    ),
}


def _append_core(s: Session, rt: Runtime, *, incident_id: int, kind: str, text: str, actor: str,
                 body: dict[str, Any], now: float) -> TimelineEntry:
    """The hot path (notes, reports, entries from other domains): three short statements on the driver's cursor
    in the session's transaction (the row lock on PostgreSQL; SQLite write transactions are exclusive)."""
    if s.new or s.dirty:
        s.flush()  # these statements do not autoflush: an incident added in this session must be visible
    conn = s.connection()
    sql = _RAW_SQL.get(conn.dialect.name)
    if sql is None:
        return _append_core_portable(s, rt, incident_id=incident_id, kind=kind, text=text, actor=actor,
                                     body=body, now=now)
    head_sql, insert_sql, move_sql = sql
    heads = _held_heads(s)
    cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        held = heads.get(incident_id)
        if held is not None:  # this transaction holds the row (lock) and moved the head itself: no read needed
            count, head, updated = held
        else:
            cur.execute(head_sql, (incident_id,))
            row = cur.fetchone()
            if row is None:
                raise NotFound(f"no incident {incident_id}", field="incident_id")
            count, head, updated = row
        seq, mac, seal = _next(rt, incident_id, count, head, kind=kind, text=text, actor=actor, body=body,
                               now=now)
        params = (incident_id, seq, now, actor, kind, text, orjson.dumps(body).decode(), mac)
        move = (seq, mac, seal, max(updated or now, now), incident_id)
        if move_sql:
            cur.execute(insert_sql, params)
            entry_id = int(cur.lastrowid)
            cur.execute(move_sql, move)
        else:  # insert and move in one statement
            cur.execute(insert_sql, params + move)
            got = cur.fetchone()
            assert got is not None
            entry_id = int(got[0])
    except BaseException:
        heads.clear()
        raise
    finally:
        cur.close()
    heads[incident_id] = (seq, mac, move[3])
    return _appended(s, rt, entry_id=entry_id, incident_id=incident_id, seq=seq, now=now, actor=actor, kind=kind,
                     text=text, body=body, mac=mac)


class NoteIn(typing.NamedTuple):
    """One append of a batch (`append_batch`)."""

    incident_id: int
    kind: str
    text: str
    actor: str


_PG_HEADS = ("SELECT id, chain_count, chain_head, updated_at FROM incidents WHERE id = ANY(%s) "
             "ORDER BY id FOR UPDATE")


def append_batch(s: Session, rt: Runtime, items: list[NoteIn]) -> list[TimelineEntry | NotFound]:
    """Append many entries (several per incident, in order) in the caller's transaction; for group commit.

    Each result is the entry, or NotFound for an item whose incident does not exist — such an item wrote
    nothing, and the others are appended as if it had not been there. On PostgreSQL the whole batch costs two
    round trips whatever its size: the heads of all its incidents are locked and read in one statement (in id
    order, so two batches never deadlock), and the inserts are pipelined. Elsewhere it is `append_entry` per
    item. Other exceptions propagate, leaving the transaction to be rolled back.
    """
    conn = s.connection()
    locked: set[int] = s.info.get("incidents.locked", set())
    if conn.dialect.name != "postgresql" or len(items) < 2 or any(it.incident_id in locked for it in items):
        # one by one (also when the caller holds one of these incidents as an object and moves its head itself)
        return [_one(s, rt, it) for it in items]
    for it in items:
        _check_entry(it.kind, it.text, it.actor)
    if s.new or s.dirty:
        s.flush()
    heads_cache = _held_heads(s)
    _, insert_sql, _ = _RAW_SQL["postgresql"]
    cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        want = sorted({it.incident_id for it in items} - heads_cache.keys())
        heads: dict[int, tuple[int, str, float]] = dict(heads_cache)
        if want:
            cur.execute(_PG_HEADS, (want,))
            for iid, count, head, updated in cur.fetchall():
                heads[int(iid)] = (int(count), str(head), float(updated or 0.0))
        body = chain.normalise_data(None)  # a note carries no structured data
        body_json = orjson.dumps(body).decode()
        results: list[TimelineEntry | NotFound | None] = []
        planned: list[tuple[int, NoteIn, int, float, str]] = []  # (slot, item, seq, time, mac)
        params: list[tuple[Any, ...]] = []
        for it in items:
            h = heads.get(it.incident_id)
            if h is None:
                results.append(NotFound(f"no incident {it.incident_id}", field="incident_id"))
                continue
            count, head, updated = h
            now = float(rt.clock.now())
            seq, mac, seal = _next(rt, it.incident_id, count, head, kind=it.kind, text=it.text, actor=it.actor,
                                   body=body, now=now)
            moved = max(updated or now, now)
            params.append((it.incident_id, seq, now, it.actor, it.kind, it.text, body_json, mac,
                           seq, mac, seal, moved, it.incident_id))
            heads[it.incident_id] = (seq, mac, moved)
            planned.append((len(results), it, seq, now, mac))
            results.append(None)
        entry_ids: list[int] = []
        if params:
            cur.executemany(insert_sql, params, returning=True)
            while True:
                got = cur.fetchone()
                assert got is not None
                entry_ids.append(int(got[0]))
                if not cur.nextset():
                    break
    except BaseException:
        heads_cache.clear()
        raise
    finally:
        cur.close()
    if len(entry_ids) != len(planned):
        raise RuntimeError(f"batch append: {len(planned)} inserts but {len(entry_ids)} ids returned")
    for (slot, it, seq, now, mac), entry_id in zip(planned, entry_ids, strict=True):
        results[slot] = _appended(s, rt, entry_id=entry_id, incident_id=it.incident_id, seq=seq, now=now,
                                  actor=it.actor, kind=it.kind, text=it.text, body=dict(body), mac=mac)
    heads_cache.update(heads)
    done = [r for r in results if r is not None]
    assert len(done) == len(items)
    return done


def _one(s: Session, rt: Runtime, it: NoteIn) -> TimelineEntry | NotFound:
    try:  # NotFound is raised before anything was written
        return append_entry(s, rt, incident_id=it.incident_id, kind=it.kind, text=it.text, actor=it.actor)
    except NotFound as exc:
        return exc


def _append_core_portable(s: Session, rt: Runtime, *, incident_id: int, kind: str, text: str, actor: str,
                          body: dict[str, Any], now: float) -> TimelineEntry:
    """The same three statements through SQLAlchemy Core, for a database without a hand-written variant."""
    row = s.execute(_HEAD_FOR_UPDATE, {"iid": incident_id}).first()
    if row is None:
        raise NotFound(f"no incident {incident_id}", field="incident_id")
    count, head, updated = row
    seq, mac, seal = _next(rt, incident_id, count, head, kind=kind, text=text, actor=actor, body=body, now=now)
    entry_id = s.execute(_INSERT_ENTRY, {"incident_id": incident_id, "seq": seq, "time": now, "actor": actor,
                                         "kind": kind, "text": text, "data": body, "mac": mac}).scalar_one()
    s.execute(_MOVE_HEAD, {"iid": incident_id, "cc": seq, "ch": mac, "cs": seal,
                           "ua": max(updated or now, now)})
    return _appended(s, rt, entry_id=entry_id, incident_id=incident_id, seq=seq, now=now, actor=actor, kind=kind,
                     text=text, body=body, mac=mac)


def _appended(s: Session, rt: Runtime, *, entry_id: int, incident_id: int, seq: int, now: float, actor: str,
              kind: str, text: str, body: dict[str, Any], mac: str) -> TimelineEntry:
    """After the statements: the entry object, the session's copy of the incident expired, the hook."""
    entry = TimelineEntry(id=entry_id, incident_id=incident_id, seq=seq, time=now, actor=actor, kind=kind, text=text,
                          data=body, mac=mac)
    held = s.identity_map.get(identity_key(Incident, incident_id))
    if held is not None:
        s.expire(held, _CHAIN_COLS)  # the object in the session must not keep the old head
    if hooks_subscribed("timeline.appended"):
        # Subscribers mostly look at the entry only: the incident is loaded when one first reads it.
        inc: Any = held if held is not None else LazyIncident(s, incident_id)
        hooks.emit("timeline.appended", s=s, rt=rt, incident=inc, entry=entry)
    return entry


class LazyIncident:
    """Stands for an `Incident` in `timeline.appended` from the hot path: `id` is known; reading anything else
    loads the incident (with its roles, one query) from the session of the append and forwards to it."""

    __slots__ = ("_loaded", "_session", "id")

    def __init__(self, s: Session, incident_id: int) -> None:
        self.id = incident_id
        self._session = s
        self._loaded: Incident | None = None

    def load(self) -> Incident:
        if self._loaded is None:
            inc = self._session.get(Incident, self.id, options=[joinedload(Incident.role_rows)])
            if inc is None:
                raise NotFound(f"no incident {self.id}", field="incident_id")
            self._loaded = inc
        return self._loaded

    def __getattr__(self, name: str) -> Any:
        return getattr(self.load(), name)

    def __repr__(self) -> str:
        return f"<LazyIncident {self.id}>"


def hooks_subscribed(topic: str) -> bool:
    """Whether anything listens to `topic` (so the hot path loads the incident object only when needed)."""
    subs: dict[str, list[Any]] | None = getattr(hooks, "_subs", None)
    return True if subs is None else bool(subs.get(topic))


def verify_timeline(s: Session, rt: Runtime, *, incident_id: int) -> dict[str, Any]:
    """Recompute the chain: any edit, insertion, deletion or reordering made behind the API shows up here.

    Returns ``{"ok", "entries", "problems": [{"seq", "problem", "detail"}], "head": {...}}``.
    """
    inc = get_incident(s, incident_id)
    s.refresh(inc)
    problems: list[dict[str, Any]] = []

    def bad(seq: int | None, problem: str, detail: str) -> None:
        problems.append({"seq": seq, "problem": problem, "detail": detail})

    key = rt.server_key
    prev = ""
    expected_seq = 1
    n = 0
    q = (
        select(TimelineEntry)
        .where(TimelineEntry.incident_id == incident_id)
        .order_by(TimelineEntry.seq, TimelineEntry.id)
        .execution_options(populate_existing=True)
    )
    for e in s.scalars(q):
        n += 1
        if e.seq != expected_seq:
            if e.seq < expected_seq:
                bad(e.seq, "duplicate", f"entry {e.seq} appears more than once")
            else:
                bad(e.seq, "gap", f"entries {expected_seq}–{e.seq - 1} are missing before entry {e.seq}")
        body = chain.canonical(
            incident_id=e.incident_id, seq=e.seq, time=e.time, actor=e.actor, kind=e.kind, text=e.text,
            data=e.data if isinstance(e.data, dict) else {"<not an object>": e.data},
        )
        want = chain.entry_mac(key, prev, body)
        if not chain.same(want, e.mac or ""):
            bad(e.seq, "mac_mismatch",
                f"entry {e.seq} does not match its MAC: it was edited, inserted or moved outside the API")
        prev = e.mac or ""
        expected_seq = e.seq + 1
    if inc.chain_count != n:
        bad(None, "count_mismatch",
            f"the incident's chain head says {inc.chain_count} entries but {n} are stored")
    if not chain.same(inc.chain_head or "", prev):
        bad(None, "head_mismatch", "the newest stored entry is not the chain head recorded on the incident")
    if not chain.same(inc.chain_seal or "", chain.seal(key, inc.id, inc.chain_count, inc.chain_head or "")):
        bad(None, "seal_mismatch", "the chain head on the incident was altered outside the API")
    return {
        "ok": not problems,
        "incident_id": inc.id,
        "entries": n,
        "problems": problems,
        "head": {"count": inc.chain_count, "head": inc.chain_head},
        "verified_at": rt.clock.now(),
    }


# ----- lifecycle ------------------------------------------------------------------------------------------


def open_incident(
    s: Session,
    rt: Runtime,
    *,
    title: str,
    workflows: list[str],
    severity: str = "SEV3",
    failure_type: str = "other",
    summary: str = "",
    harm: dict[str, Any] | None = None,
    suspects: list[dict[str, Any]] | None = None,
    source: str = "manual",
    actor: str,
    detected_at: float | None = None,
    data: dict[str, Any] | None = None,
) -> Incident:
    """Open an incident in `triggered`: writes the "opened" entry and the detected milestone."""
    title = _text(title, "title", required=True).strip()
    if len(title) > 200:
        raise Invalid("title is longer than 200 characters", field="title")
    _choice(severity, SEVERITIES, "severity")
    _choice(failure_type, FAILURE_TYPES, "failure_type")
    _text(summary, "summary")
    wf = _workflows(workflows)
    harm_v = _harm(harm)
    sus = _suspects(suspects)
    if not source or len(source) > 64:
        raise Invalid("source must be 1–64 characters", field="source")
    now = float(rt.clock.now())
    inc = Incident(
        title=title, summary=summary, workflows=wf, severity=severity, failure_type=failure_type, harm=harm_v,
        suspects=sus, status="triggered", source=source, opened_by=actor, opened_at=now, updated_at=now,
        data=chain.normalise_data(data), chain_count=0, chain_head="", chain_seal="",
    )
    s.add(inc)
    s.flush()
    append_entry(
        s, rt, incident_id=inc.id, kind="opened", actor=actor,
        text=f"{severity} {failure_type} incident opened: {title}",
        data={"title": title, "severity": severity, "failure_type": failure_type, "workflows": wf,
              "summary": summary, "harm": harm_v, "suspects": sus, "source": source},
    )
    set_milestone(s, rt, incident_id=inc.id, name="detected", actor=actor,
                  at=float(detected_at) if detected_at is not None else now)
    hooks.emit("incident.opened", s=s, rt=rt, incident=inc)
    return inc


def set_status(s: Session, rt: Runtime, *, incident_id: int, to: str, actor: str, note: str = "") -> Incident:
    """Move the incident along the transition table; Conflict (409) on an illegal move."""
    _choice(to, STATUSES, "to")
    _text(note, "note")
    inc = get_incident(s, incident_id, for_update=True)
    old = inc.status
    if not lifecycle.is_allowed(old, to):
        allowed = list(lifecycle.allowed_moves(old))
        moves = ", ".join(allowed) if allowed else "none (closed is final)"
        raise Conflict(
            f"incident {inc.id} cannot move from {old} to {to}; allowed from {old}: {moves}",
            field="to", **{"from": old, "to": to, "allowed": allowed},
        )
    reopen = lifecycle.is_reopen(old, to)
    now = float(rt.clock.now())
    inc.status = to
    if to == "closed":
        inc.closed_at = now
    verb = "reopened" if reopen else "moved"
    text = f"status {old} → {to}" if not reopen else f"reopened: {old} → {to}"
    if note:
        text += f": {note}"
    append_entry(s, rt, incident_id=inc.id, kind="status", actor=actor, text=text,
                 data={"from": old, "to": to, "note": note, "action": verb})
    for m in lifecycle.MILESTONES_ON_ENTRY[to]:
        set_milestone(s, rt, incident_id=inc.id, name=m, actor=actor, at=now)
    hooks.emit("incident.status", s=s, rt=rt, incident=inc, old=old, new=to)
    return inc


def set_milestone(
    s: Session, rt: Runtime, *, incident_id: int, name: str, actor: str, at: float | None = None,
    data: dict[str, Any] | None = None,
) -> bool:
    """Record a milestone once. Returns False (and changes nothing) when it is already set.

    ``mitigation_chosen`` takes ``data={"path": "..."}``, the mitigation path chosen.
    """
    _choice(name, MILESTONES, "name")
    body = chain.normalise_data(data)
    inc = get_incident(s, incident_id, for_update=True)
    if inc.milestone(name) is not None:
        return False
    when = float(at) if at is not None else float(rt.clock.now())
    path: str | None = None
    if name == "mitigation_chosen":
        raw = body.get("path")
        if not isinstance(raw, str) or not raw.strip():
            raise Invalid("mitigation_chosen needs data.path: the mitigation path chosen", field="data.path")
        path = _text(raw.strip(), "data.path")
        inc.mitigation_path = path
    setattr(inc, f"{name}_at", when)
    if name == "acknowledged":
        inc.acknowledged_by = actor
    label = name.replace("_", " ")
    text = f"milestone: {label}" + (f" ({path})" if path else "")
    append_entry(s, rt, incident_id=inc.id, kind="milestone", actor=actor, text=text,
                 data={"name": name, "at": when, **body})
    hooks.emit("incident.milestone", s=s, rt=rt, incident=inc, name=name)
    return True


def acknowledge(s: Session, rt: Runtime, *, incident_id: int, actor: str) -> Incident:
    """Someone has it: set the acknowledged milestone and move a triggered incident to investigating."""
    inc = get_incident(s, incident_id, for_update=True)
    if inc.status == "closed":
        raise Conflict(f"incident {inc.id} is closed; it cannot be acknowledged", field="incident_id")
    set_milestone(s, rt, incident_id=inc.id, name="acknowledged", actor=actor)
    if inc.status == "triggered":
        set_status(s, rt, incident_id=inc.id, to="investigating", actor=actor, note="acknowledged")
    return inc


def assign_role(s: Session, rt: Runtime, *, incident_id: int, role: str, handle: str, actor: str) -> None:
    """Give `role` to the person `handle`; the previous holder, if any, hands over (their row is ended).

    Emits ``incident.role`` (s, rt, incident, role, handle, previous) after the timeline entry.
    """
    _choice(role, ROLES, "role")
    inc = get_incident(s, incident_id, for_update=True)
    if inc.status == "closed":
        raise Conflict(f"incident {inc.id} is closed; roles cannot change", field="incident_id")
    person = person_by_handle(s, handle)
    now = float(rt.clock.now())
    current = [r for r in inc.role_rows if r.role == role and r.ended_at is None]
    if any(r.person_id == person.id for r in current):
        return
    previous = current[0].handle if current else None
    for r in current:
        r.ended_at = now
    row = IncidentRole(incident_id=inc.id, role=role, person_id=person.id, handle=person.handle,
                       assigned_at=now, assigned_by=actor)
    s.add(row)
    inc.role_rows.append(row)
    label = role.replace("_", " ")
    if previous:
        text, kind = f"{label} handed over from {previous} to {person.handle}", "role_handover"
    else:
        text, kind = f"{person.handle} is {label}", "role_assigned"
    append_entry(s, rt, incident_id=inc.id, kind=kind, actor=actor, text=text,
                 data={"role": role, "handle": person.handle, "previous": previous})
    hooks.emit("incident.role", s=s, rt=rt, incident=inc, role=role, handle=person.handle, previous=previous)


def update_triage(
    s: Session,
    rt: Runtime,
    *,
    incident_id: int,
    actor: str,
    severity: str | None = None,
    failure_type: str | None = None,
    harm: dict[str, Any] | None = None,
    suspects: list[dict[str, Any]] | None = None,
    workflows: list[str] | None = None,
    summary: str | None = None,
    title: str | None = None,
    eta: float | None = None,
) -> Incident:
    """Change triage facts; each field that actually changes gets its own timeline entry.

    Emits ``incident.updated`` (s, rt, incident, changes={field: {"from", "to"}}) when anything changed.
    """
    changes_in: dict[str, Any] = {}
    if severity is not None:
        changes_in["severity"] = _choice(severity, SEVERITIES, "severity")
    if failure_type is not None:
        changes_in["failure_type"] = _choice(failure_type, FAILURE_TYPES, "failure_type")
    if harm is not None:
        changes_in["harm"] = _harm(harm)
    if suspects is not None:
        changes_in["suspects"] = _suspects(suspects)
    if workflows is not None:
        changes_in["workflows"] = _workflows(workflows)
    if summary is not None:
        changes_in["summary"] = _text(summary, "summary")
    if title is not None:
        t = _text(title, "title", required=True).strip()
        if len(t) > 200:
            raise Invalid("title is longer than 200 characters", field="title")
        changes_in["title"] = t
    if eta is not None:
        if isinstance(eta, bool) or not isinstance(eta, (int, float)) or eta != eta:
            raise Invalid("eta must be unix seconds", field="eta")
        changes_in["eta"] = float(eta)
    inc = get_incident(s, incident_id, for_update=True)
    if inc.status == "closed":
        raise Conflict(f"incident {inc.id} is closed; its triage can no longer change", field="incident_id")
    changed: dict[str, dict[str, Any]] = {}
    for field, new in changes_in.items():
        old = getattr(inc, field)
        if old == new:
            continue
        setattr(inc, field, new)
        changed[field] = {"from": old, "to": new}
        append_entry(s, rt, incident_id=inc.id, kind=_TRIAGE_KIND.get(field, "triage"), actor=actor,
                     text=_describe_change(field, old, new), data={"field": field, "from": old, "to": new})
    if changed:
        hooks.emit("incident.updated", s=s, rt=rt, incident=inc, changes=changed)
    return inc


_TRIAGE_KIND = {"eta": "eta", "summary": "summary", "title": "title"}


def _describe_change(field: str, old: Any, new: Any) -> str:
    if field in ("severity", "failure_type"):
        return f"{field.replace('_', ' ')} {old} → {new}"
    if field == "eta":
        return "ETA set" if old is None else "ETA updated"
    if field == "harm":
        h = new or {}
        return f"harm scope: {h.get('requests', 0)} requests, {h.get('subjects', 0)} subjects"
    if field == "suspects":
        names = [f"{x.get('kind', '?')}/{x.get('name', '?')}" for x in (new or [])[:3]]
        return "suspects: " + (", ".join(names) if names else "none")
    if field == "workflows":
        return "workflows: " + ", ".join(new or [])
    return f"{field} updated"


def record_user_report(
    s: Session, rt: Runtime, *, incident_id: int, text: str, actor: str, subject: str | None = None,
    channel: str | None = None,
) -> TimelineEntry:
    """The support liaison feeds real user impact back in: a `user_report` entry and the
    ``incident.user_report`` hook (s, rt, incident, text, subject, channel), so signals can count a complaint."""
    _text(text, "text", required=True)
    for name, v in (("subject", subject), ("channel", channel)):
        if v is not None and (not isinstance(v, str) or len(v) > 200):
            raise Invalid(f"{name} must be a string of at most 200 characters", field=name)
    inc = get_incident(s, incident_id, for_update=True)
    entry = append_entry(s, rt, incident_id=inc.id, kind="user_report", actor=actor, text=text,
                         data={"subject": subject, "channel": channel})
    hooks.emit("incident.user_report", s=s, rt=rt, incident=inc, text=text, subject=subject, channel=channel)
    return entry
