"""The audit of served answers: which of the answers and actions served during an incident need a human
look first, and what the reviewers found.

Selection: the incident's workflows, plus — for suspects that name a recorded change — the other workflows that
change touched, of which only the events served by a suspect version are kept.

The queue is materialised once per incident (when the audit is first opened, when a runbook `audit` step ran,
or on an explicit refresh) into ``audit_items``: the stored events of the incident's workflows from the
estimated onset to containment, read through the ``(workflow, time)`` index with a bound on how many are
scanned, classified, weighed and ranked by one ``INSERT … SELECT`` in the database (JSON functions of SQLite
or jsonb on PostgreSQL, ``ROW_NUMBER()`` for the rank) — no event travels to Python to be ranked. Paging is then an index range on
``(incident_id, rank)``, so the first page costs the same whatever the size of the event store, and review
states stay attached to stable ranks. A refresh keeps every review already made.

Ranking, riskiest first (the leading tier of the score): wrong-entity actions, other side-effecting actions,
tool calls with invalid arguments, ungrounded answers, refusals, errors, then plain answers. Within a tier
numeric attributes (``amount`` by default, `review_amount_fields`) weigh in logarithmically, events served by
a suspect version and traces a user complained about rise.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from typing import Any

import orjson
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.orm import Session

from codeblue.errors import Invalid, NotFound
from codeblue.incidents import service as incidents
from codeblue.incidents.model import Incident
from codeblue.review.model import CATEGORIES, REVIEW_STATES, TIERS, AuditItem, AuditQueue
from codeblue.runtime import Runtime
from codeblue.signals.model import EventVersion

MAX_PAGE = 500
MAX_NOTE = 20_000
EXPORT_COLUMNS = ("rank", "score", "category", "reasons", "state", "reviewer", "note", "reviewed_at", "time",
                  "workflow", "kind", "subject", "trace_id", "amount", "action", "target", "status", "refusal",
                  "grounded", "versions", "input", "output")


# ----- scoring ---------------------------------------------------------------------------------------------


def classify(ev: dict[str, Any]) -> tuple[str, list[str]]:
    """The audit category of one event (the riskiest that applies) and why."""
    kind = ev.get("kind")
    reasons: list[str] = []
    if kind == "action":
        target = ev.get("target")
        if target and target != ev.get("subject") and target not in (ev.get("authorized_targets") or []):
            reasons.append(f"action {ev.get('action') or '?'} touched {target}, not the session's subject "
                           f"{ev.get('subject')!r} nor an authorised target")
            return "wrong_entity", reasons
        reasons.append(f"side-effecting action {ev.get('action') or '?'}")
        return "action", reasons
    if kind == "tool_call":
        if ev.get("args_valid") is False:
            reasons.append(f"tool {ev.get('tool') or '?'} called with arguments that break its contract")
            return "tool_error", reasons
        return "answer", reasons
    status = ev.get("status")
    err = isinstance(status, int) and not isinstance(status, bool) and status >= 500
    if ev.get("grounded") is False:
        reasons.append("answer not supported by its cited sources")
        return "ungrounded", reasons
    if ev.get("refusal") is True and not err:
        reasons.append("answer refused")
        return "refusal", reasons
    if err:
        reasons.append(f"error status {status}")
        return "error", reasons
    return "answer", reasons


# ----- the window ------------------------------------------------------------------------------------------


def window(inc: Incident, rt: Runtime, now: float) -> tuple[float, float]:
    """From the estimated onset (harm.started_at; else the look-back before detection) to containment (else now)."""
    harm = inc.harm or {}
    started = harm.get("started_at")
    detected = inc.detected_at or inc.opened_at
    since = float(started) if isinstance(started, (int, float)) else detected - rt.settings.review_audit_lookback_s
    until = float(inc.contained_at) if inc.contained_at is not None else now
    return since, max(until, since)


def suspect_versions(inc: Incident) -> dict[str, str]:
    out: dict[str, str] = {}
    for sus in inc.suspects or []:
        if not isinstance(sus, dict):
            continue
        kind, name, version = sus.get("kind"), sus.get("name"), sus.get("version")
        if isinstance(kind, str) and isinstance(name, str) and isinstance(version, str) and kind and name:
            out.setdefault(f"{kind}/{name}", version)
    return out


def suspect_workflows(s: Session, inc: Incident) -> list[str]:
    """Workflows beyond the incident's own that a suspect change touched (from its change record)."""
    from codeblue.changes.model import Change

    out: list[str] = []
    for sus in inc.suspects or []:
        cid = sus.get("change_id") if isinstance(sus, dict) else None
        if isinstance(cid, str) and cid.isdigit():
            cid = int(cid)
        if not isinstance(cid, int) or isinstance(cid, bool):
            continue
        ch = s.get(Change, cid)
        for wf in (ch.workflows or []) if ch is not None else []:
            if wf not in (inc.workflows or []) and wf not in out:
                out.append(wf)
    return out


def _suspect_sets(s: Session, versions: dict[str, str]) -> set[int]:
    out: set[int] = set()
    for key, version in versions.items():
        out.update(int(r) for r in s.scalars(
            select(EventVersion.set_id).where(EventVersion.key == key, EventVersion.version == version)))
    return out


# ----- materialisation -------------------------------------------------------------------------------------


def get_queue(s: Session, incident_id: int) -> AuditQueue | None:
    return s.get(AuditQueue, incident_id)


_FIELD_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
#: Codes stored in `audit_items.reasons` by the SQL ranking; expanded into sentences when an item is shown.
SUSPECT, COMPLAINED = "suspect", "complained"


def _amount_fields(rt: Runtime) -> list[str]:
    fields = [f for f in rt.settings.review_amount_fields if _FIELD_RE.match(f)]
    return fields or ["amount"]


def _sql_parts(dialect: str, fields: list[str]) -> dict[str, str]:
    """Dialect SQL for the classification and weights (mirrors `classify`/`score`), over a row `w` with the
    event columns and its JSON body as text (`w.body`)."""
    if dialect == "postgresql":
        # `w.b` is the body parsed once (jsonb), and only for rows a cheap substring guard selects (see
        # `pg_guard`); NULL elsewhere, where every expression below is then false or NULL.
        b = "w.b"
        tgt = f"({b}->>'target')"
        auth = (f"COALESCE(jsonb_exists(CASE WHEN jsonb_typeof({b}->'authorized_targets') = 'array' "
                f"THEN {b}->'authorized_targets' END, {tgt}), false)")

        def is_bool(path: str, val: str) -> str:
            return f"(jsonb_typeof({b}->'{path}') = 'boolean' AND {b}->>'{path}' = '{val}')"

        def num(expr: str) -> str:
            return f"CASE WHEN jsonb_typeof({expr}) = 'number' THEN abs(({expr})::text::float8) END"

        amounts = [num(f"{b}->'{f}'") for f in fields] + [num(f"{b}->'attributes'->'{f}'") for f in fields]
        fallback = f"COALESCE({b}->>'fallback', '') <> ''"
        log10 = "log"
        least = "LEAST"
    else:
        tgt = "json_extract(w.body, '$.target')"
        auth = f"EXISTS (SELECT 1 FROM json_each(w.body, '$.authorized_targets') j WHERE j.value = {tgt})"

        # Bodies are compact JSON written by intake (orjson: `"key":value`, no spaces; `\\:` is a literal colon in text()), so a LIKE on the key
        # and value is a cheap guard that spares parsing the JSON of the many rows that cannot match; the
        # JSON function then confirms (a nested key of the same name does not count).
        def is_bool(path: str, val: str) -> str:
            return f"(w.body LIKE '%\"{path}\"\\:{val}%' AND json_type(w.body, '$.{path}') = '{val}')"

        def num(expr: str) -> str:
            return (f"CASE WHEN json_type(w.body, '{expr}') IN ('integer', 'real') "
                    f"THEN abs(json_extract(w.body, '{expr}')) END")

        guard = " OR ".join(f"w.body LIKE '%\"{f}\"\\:%'" for f in fields)
        amounts = [f"CASE WHEN {guard} THEN COALESCE("
                   + ", ".join([num(f"$.{f}") for f in fields] + [num(f"$.attributes.{f}") for f in fields])
                   + ") END"]
        fallback = ("(w.body LIKE '%\"fallback\"\\:\"%' AND "
                    "COALESCE(json_extract(w.body, '$.fallback'), '') <> '')")
        log10 = "log10"
        least = "min"
    err = "COALESCE(w.status >= 500, false)"
    wrong = f"({tgt} IS NOT NULL AND {tgt} <> '' AND (w.subject IS NULL OR {tgt} <> w.subject) AND NOT {auth})"
    category = (
        "CASE WHEN w.kind = 'action' THEN (CASE WHEN " + wrong + " THEN 'wrong_entity' ELSE 'action' END)"
        " WHEN w.kind = 'tool_call' THEN (CASE WHEN " + is_bool("args_valid", "false") + " THEN 'tool_error' ELSE 'answer' END)"
        " WHEN " + is_bool("grounded", "false") + " THEN 'ungrounded'"
        " WHEN " + is_bool("refusal", "true") + " AND NOT " + err + " THEN 'refusal'"
        " WHEN " + err + " THEN 'error' ELSE 'answer' END"
    )
    tier = "CASE c.category " + " ".join(f"WHEN '{k}' THEN {v}" for k, v in TIERS.items()) + " ELSE 0 END"
    return {"category": category, "amount": amounts[0] if len(amounts) == 1 else f"COALESCE({', '.join(amounts)})", "fallback": fallback,
            "tier": tier, "log10": log10, "least": least}


def pg_guard(fields: list[str]) -> str:
    """Rows whose body may hold something the ranking reads (bodies are compact JSON, see `_sql_parts`)."""
    keys = ['"grounded"\\:false', '"refusal"\\:true', '"fallback"\\:"'] + [f'"{f}"\\:' for f in fields]
    return "e.kind IN ('action', 'tool_call') OR " + " OR ".join(f"strpos(e.body, '{k}') > 0" for k in keys)


def build(s: Session, rt: Runtime, *, incident_id: int, actor: str) -> AuditQueue:
    """(Re)materialise the incident's audit queue: one INSERT … SELECT that selects the window's events through
    the (workflow, time) index (bounded per workflow), classifies, weighs and ranks them in SQL; reviews already
    recorded are kept (by event)."""
    inc = incidents.get_incident(s, incident_id, for_update=True)
    now = float(rt.clock.now())
    since, until = window(inc, rt, now)
    susp = suspect_versions(inc)
    sets = sorted(_suspect_sets(s, susp))
    own = list(inc.workflows or [])
    # other workflows a suspect change touched contribute only the events the suspect versions served
    extra = suspect_workflows(s, inc) if sets else []
    workflows = own + extra
    cap = max(1, int(rt.settings.review_audit_max_candidates))
    dialect = s.get_bind().dialect.name
    pg = dialect == "postgresql"
    parts = _sql_parts(dialect, _amount_fields(rt))
    set_list = ", ".join(str(int(x)) for x in sets) or "NULL"
    params: dict[str, Any] = {"a": since, "b": until, "cb": until + 3600.0, "n": cap, "iid": incident_id}

    selects: list[str] = []
    scanned = 0
    truncated = False
    count_sql = text("SELECT count(*) FROM (SELECT 1 FROM events WHERE workflow = :w AND time >= :a AND time < :b "
                     "LIMIT :n) x")
    for i, wf in enumerate(workflows):
        params[f"w{i}"] = wf
        n = int(s.execute(count_sql, {"w": wf, "a": since, "b": until, "n": cap + 1}).scalar_one())
        truncated = truncated or n > cap
        scanned += min(n, cap)
        only = "" if wf in own else f" AND version_set IN ({set_list})"
        selects.append("SELECT * FROM (SELECT id, time, workflow, kind, subject, trace_id, status, version_set, body "
                       f"FROM events WHERE workflow = :w{i} AND time >= :a AND time < :b{only} "
                       f"ORDER BY time, id LIMIT :n) e{i}")
    complaint_wfs = ", ".join(f":w{i}" for i in range(len(workflows)))

    kept: dict[int, tuple[str, str | None, str, float | None, Any]] = {}
    for ev_id, state, reviewer, note, at, evidence in s.execute(
        select(AuditItem.event_id, AuditItem.state, AuditItem.reviewer, AuditItem.note, AuditItem.reviewed_at,
               AuditItem.evidence).where(AuditItem.incident_id == incident_id, AuditItem.state != "pending")
    ):
        kept[int(ev_id)] = (state, reviewer, note, at, evidence)
    s.execute(delete(AuditItem).where(AuditItem.incident_id == incident_id))

    items = 0
    if workflows:
        suspect = f"(w.version_set IN ({set_list}))" if sets else "false"
        compl = (f"w.trace_id IN (SELECT trace_id FROM events WHERE workflow IN ({complaint_wfs}) "
                 "AND kind = 'complaint' AND time >= :a AND time < :cb AND trace_id IS NOT NULL)")
        score = (f"({parts['tier']}) * 100.0"
                 f" + CASE WHEN c.amount > 0 THEN {parts['least']}(10.0 * {parts['log10']}(1.0 + c.amount), 60.0)"
                 " ELSE 0 END + CASE WHEN c.suspect THEN 20 ELSE 0 END + CASE WHEN c.complained THEN 15 ELSE 0 END"
                 " - CASE WHEN c.fallback THEN 5 ELSE 0 END")
        reasons = (f"'[' || CASE WHEN x.suspect THEN '\"{SUSPECT}\"' ELSE '' END"
                   " || CASE WHEN x.suspect AND x.complained THEN ',' ELSE '' END"
                   f" || CASE WHEN x.complained THEN '\"{COMPLAINED}\"' ELSE '' END || ']'")
        if pg:
            reasons = f"({reasons})::json"
        # MATERIALIZED: each per-event expression is computed once (a flattened subquery would repeat them
        # wherever the outer query refers to the column).
        union = " UNION ALL ".join(selects)
        if pg:
            head = (f"WITH w AS MATERIALIZED (SELECT e.*, CASE WHEN {pg_guard(_amount_fields(rt))} "
                    f"THEN e.body::jsonb END AS b FROM ({union}) e WHERE e.kind <> 'complaint'), ")
            source = "w"
        else:
            head = "WITH "
            source = f"({union}) w WHERE w.kind <> 'complaint'"
        sql = (
            head + "c AS MATERIALIZED ("
            "SELECT w.id, w.time, w.workflow, w.kind, w.subject, w.trace_id, "
            f"{parts['category']} AS category, {parts['amount']} AS amount, {parts['fallback']} AS fallback, "
            f"{compl} AS complained, {suspect} AS suspect "
            f"FROM {source}), "
            f"x AS MATERIALIZED (SELECT c.*, {score} AS score FROM c) "
            "INSERT INTO audit_items (incident_id, rank, event_id, score, category, reasons, time, workflow, kind, "
            "subject, trace_id, amount, state, reviewer, note, reviewed_at, evidence) "
            "SELECT :iid, ROW_NUMBER() OVER (ORDER BY x.score DESC, x.time, x.id), x.id, x.score, x.category, "
            f"{reasons}, x.time, x.workflow, x.kind, x.subject, x.trace_id, x.amount, 'pending', NULL, '', NULL, NULL "
            "FROM x"
        )
        res = s.execute(text(sql), params)
        items = int(getattr(res, "rowcount", 0) or 0)
    for ev_id, (state, reviewer, note, at, evidence) in kept.items():
        s.execute(update(AuditItem).where(AuditItem.incident_id == incident_id, AuditItem.event_id == ev_id)
                  .values(state=state, reviewer=reviewer, note=note, reviewed_at=at, evidence=evidence))
    if items <= 0 and workflows:
        items = int(s.scalar(select(func.count()).select_from(AuditItem)
                             .where(AuditItem.incident_id == incident_id)) or 0)
    q = s.get(AuditQueue, incident_id)
    if q is None:
        q = AuditQueue(incident_id=incident_id)
        s.add(q)
    q.since, q.until, q.workflows, q.suspect_versions = since, until, workflows, susp
    q.items, q.scanned, q.truncated, q.built_at, q.built_by = items, scanned, truncated, now, actor
    s.flush()
    return q


def ensure(s: Session, rt: Runtime, *, incident_id: int, actor: str) -> AuditQueue:
    q = get_queue(s, incident_id)
    if q is not None:
        return q
    return build(s, rt, incident_id=incident_id, actor=actor)


# ----- reading ---------------------------------------------------------------------------------------------


def _event_bodies(s: Session, ids: list[int]) -> dict[int, dict[str, Any]]:
    out: dict[int, dict[str, Any]] = {}
    if not ids:
        return out
    for i in range(0, len(ids), 900):
        chunk = ids[i:i + 900]
        stmt = text("SELECT id, body FROM events WHERE id IN (" + ",".join(str(int(x)) for x in chunk) + ")")
        for ev_id, body in s.execute(stmt):
            out[int(ev_id)] = orjson.loads(body)
    return out


def reasons_for(item: AuditItem | Any, e: dict[str, Any] | None) -> list[str]:
    """Why an item ranks where it does, in words: its category's reason, the amount, and the stored codes."""
    out: list[str] = classify(e)[1] if e else [f"{item.category.replace('_', ' ')} (event no longer stored)"]
    if item.amount:
        out.append(f"amount {item.amount:g}")
    codes = list(item.reasons or [])
    if SUSPECT in codes:
        out.append("served by a suspect version")
    if COMPLAINED in codes:
        out.append("the user complained about this trace")
    if e and e.get("fallback"):
        out.append(f"served by the fallback {e['fallback']}")
    return out


def item_dict(item: AuditItem | Any, ev: dict[str, Any] | None) -> dict[str, Any]:
    source = ev if ev is not None else (item.evidence or None)
    e = source or {}
    return {
        "id": item.id, "rank": item.rank, "score": round(float(item.score), 3), "category": item.category,
        "reasons": reasons_for(item, source), "event_id": item.event_id, "time": item.time,
        "workflow": item.workflow, "kind": item.kind, "subject": item.subject, "trace_id": item.trace_id,
        "amount": item.amount, "state": item.state, "reviewer": item.reviewer, "note": item.note,
        "reviewed_at": item.reviewed_at,
        "action": e.get("action"), "target": e.get("target"), "tool": e.get("tool"), "status": e.get("status"),
        "refusal": e.get("refusal"), "grounded": e.get("grounded"), "versions": e.get("versions"),
        "segment": e.get("segment"), "fallback": e.get("fallback"),
        "input": e.get("input"), "output": e.get("output"),
        "event_available": source is not None,
    }


def page(s: Session, *, incident_id: int, limit: int = 50, cursor: str | None = None,
         state: str | None = None, category: str | None = None) -> dict[str, Any]:
    """One page of the queue, riskiest first; `next_cursor` continues it."""
    if limit < 1 or limit > MAX_PAGE:
        raise Invalid(f"limit must be between 1 and {MAX_PAGE}", field="limit")
    after = 0
    if cursor:
        if not cursor.isdigit():
            raise Invalid("not a cursor this server issued; pass next_cursor from the previous page", field="cursor")
        after = int(cursor)
    if state is not None and state not in REVIEW_STATES:
        raise Invalid(f"state must be one of {', '.join(REVIEW_STATES)}", field="state")
    if category is not None and category not in CATEGORIES:
        raise Invalid(f"category must be one of {', '.join(CATEGORIES)}", field="category")
    q = select(AuditItem).where(AuditItem.incident_id == incident_id, AuditItem.rank > after)
    if state is not None:
        q = q.where(AuditItem.state == state)
    if category is not None:
        q = q.where(AuditItem.category == category)
    items = list(s.scalars(q.order_by(AuditItem.rank).limit(limit + 1)))
    more = len(items) > limit
    items = items[:limit]
    bodies = _event_bodies(s, [it.event_id for it in items])
    return {"items": [item_dict(it, bodies.get(it.event_id)) for it in items],
            "next_cursor": str(items[-1].rank) if more and items else None}


def progress(s: Session, *, incident_id: int) -> dict[str, Any]:
    """Review progress: items per state (and confirmed harm per category) plus the queue's window."""
    incidents.get_incident(s, incident_id)
    q = get_queue(s, incident_id)
    counts = dict.fromkeys(REVIEW_STATES, 0)
    harmful_by: dict[str, int] = {}
    if q is not None:
        for st, cat, n in s.execute(
            select(AuditItem.state, AuditItem.category, func.count())
            .where(AuditItem.incident_id == incident_id).group_by(AuditItem.state, AuditItem.category)
        ):
            counts[st] = counts.get(st, 0) + int(n)
            if st in ("harmful", "remediated"):
                harmful_by[cat] = harmful_by.get(cat, 0) + int(n)
    total = sum(counts.values())
    reviewed = total - counts["pending"]
    return {"incident_id": incident_id, "materialised": q is not None, "queue": q.as_dict() if q else None,
            "total": total, "reviewed": reviewed, "percent": round(100.0 * reviewed / total, 1) if total else 0.0,
            "states": counts, "confirmed_harm": counts["harmful"] + counts["remediated"],
            "confirmed_harm_by_category": harmful_by}


def confirmed_harm(s: Session, *, incident_id: int) -> dict[str, Any]:
    """Items reviewers confirmed harmful (or remediated): count, distinct subjects, total amount."""
    n = subjects = 0
    amount = 0.0
    subj: set[str] = set()
    for subject, amt in s.execute(select(AuditItem.subject, AuditItem.amount).where(
            AuditItem.incident_id == incident_id, AuditItem.state.in_(("harmful", "remediated")))):
        n += 1
        if subject:
            subj.add(subject)
        if amt:
            amount += float(amt)
    subjects = len(subj)
    return {"items": n, "subjects": subjects, "amount": round(amount, 2)}


def review(s: Session, rt: Runtime, *, incident_id: int, item_id: int, state: str, note: str, reviewer: str
           ) -> dict[str, Any]:
    if state not in REVIEW_STATES:
        raise Invalid(f"state must be one of {', '.join(REVIEW_STATES)}; got {state!r}", field="state")
    if not isinstance(note, str) or len(note) > MAX_NOTE:
        raise Invalid(f"note must be a string of at most {MAX_NOTE} characters", field="note")
    incidents.get_incident(s, incident_id)
    item = s.get(AuditItem, item_id)
    if item is None or item.incident_id != incident_id:
        raise NotFound(f"incident {incident_id} has no audit item {item_id}", field="item_id")
    old = item.state
    now = float(rt.clock.now())
    item.state = state
    item.note = note
    item.reviewer = None if state == "pending" else reviewer
    item.reviewed_at = None if state == "pending" else now
    if state != "pending" and item.evidence is None:
        body = _event_bodies(s, [item.event_id]).get(item.event_id)
        if body is not None:
            item.evidence = body
    if state in ("harmful", "remediated") and old not in ("harmful", "remediated"):
        incidents.append_entry(
            s, rt, incident_id=incident_id, kind="audit.harm_confirmed", actor=reviewer,
            text=f"audit: {item.category.replace('_', ' ')} at rank {item.rank} confirmed {state}"
                 + (f" ({note[:200]})" if note else ""),
            data={"item_id": item.id, "rank": item.rank, "event_id": item.event_id, "trace_id": item.trace_id,
                  "category": item.category, "state": state},
        )
    s.flush()
    return item_dict(item, item.evidence)


def reset_states(s: Session, *, incident_id: int) -> None:
    s.execute(update(AuditItem).where(AuditItem.incident_id == incident_id).values(state="pending"))


# ----- export ----------------------------------------------------------------------------------------------


def iter_items(rt: Runtime, incident_id: int, chunk: int = 2000) -> Iterator[dict[str, Any]]:
    """Every item in rank order, joined with its event, a chunk per short read transaction."""
    after = 0
    while True:
        with rt.db.read() as s:
            items = list(s.scalars(select(AuditItem).where(AuditItem.incident_id == incident_id,
                                                           AuditItem.rank > after)
                                   .order_by(AuditItem.rank).limit(chunk)))
            if not items:
                return
            bodies = _event_bodies(s, [it.event_id for it in items])
            out = [item_dict(it, bodies.get(it.event_id)) for it in items]
            after = items[-1].rank
        yield from out


def _csv_cell(v: Any) -> Any:
    if isinstance(v, (list, dict)):
        return orjson.dumps(v).decode()
    if v is None:
        return ""
    if isinstance(v, str) and v[:1] in ("=", "+", "-", "@"):
        return "'" + v  # no formula injection when the file is opened in a spreadsheet
    return v


def export_csv(rt: Runtime, incident_id: int) -> Iterator[bytes]:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(EXPORT_COLUMNS)
    for n, item in enumerate(iter_items(rt, incident_id), 1):
        w.writerow([_csv_cell(item.get(c)) for c in EXPORT_COLUMNS])
        if n % 500 == 0:
            yield buf.getvalue().encode()
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue().encode()


def export_json(rt: Runtime, incident_id: int) -> Iterator[bytes]:
    yield b"["
    first = True
    for item in iter_items(rt, incident_id):
        yield (b"" if first else b",\n") + orjson.dumps(item)
        first = False
    yield b"]\n"
