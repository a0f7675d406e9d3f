"""The audit of served answers: which of the answers and actions served during an incident need a human
look first, and what the reviewers found.

Selection: the incident's workflows, plus — for suspects that name a recorded change — the other workflows that
change touched, of which only the events served by a suspect version are kept.

The queue is materialised once per incident (when the audit is first opened, when a runbook `audit` step ran,
or on an explicit refresh) into ``audit_items``: the stored events of the incident's workflows from the
estimated onset to containment, read through the ``(workflow, time)`` index with a bound on how many are
scanned, classified, weighed and ranked by one ``INSERT … SELECT`` in the database (JSON functions of SQLite,
``json_to_record`` on PostgreSQL, ``ROW_NUMBER()`` for the rank) — no event travels to Python to be ranked.
Paging is then an index range on ``(incident_id, rank)``, so a page costs the same whatever the size of the
event store, and review states stay attached to stable ranks. A refresh keeps every review already made.

The first open of an audit (`open_first_page`) does not wait for the whole queue: the first page is ranked
from the events whose best possible score can reach it (bounds from the columns and substring guards, see
`_bounds`), written and answered; a worker thread then ranks the whole window and writes the other items,
numbered on from the page, in the same transaction. Whoever needs the queue meanwhile locks the incident and
so waits for that commit.

Ranking, riskiest first (the leading tier of the score): wrong-entity actions, other side-effecting actions,
tool calls with invalid arguments, ungrounded answers, refusals, errors, then plain answers. Within a tier
numeric attributes (``amount`` by default, `review_amount_fields`) weigh in logarithmically, events served by
a suspect version and traces a user complained about rise.
"""

from __future__ import annotations

import csv
import io
import logging
import re
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

import orjson
from sqlalchemy import delete, func, insert, select, text, update
from sqlalchemy.orm import Session

from codeblue.errors import Invalid, NotFound
from codeblue.incidents import service as incidents
from codeblue.incidents.model import Incident
from codeblue.review.model import CATEGORIES, REVIEW_STATES, TIERS, AuditItem, AuditQueue
from codeblue.runtime import Runtime
from codeblue.signals.model import EventVersion

log = logging.getLogger(__name__)

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
    event columns and its JSON body as text (`w.body`); on PostgreSQL also `j`, the body's top-level values
    (see `pg_record`)."""
    if dialect == "postgresql":
        # `j` holds the body's top-level values as json, parsed once with `json_to_record` and only for rows a
        # cheap substring guard selects (see `pg_guard`); its columns are NULL elsewhere, where every
        # expression below is then false or NULL. (json_to_record is about twice as cheap as a jsonb parse,
        # and the json processing functions take the last of duplicate keys, as jsonb does.)
        tgt = "(j.target #>> '{}')"
        auth = ("COALESCE(json_typeof(j.authorized_targets) = 'array' AND EXISTS (SELECT 1 FROM "
                f"json_array_elements(j.authorized_targets) t WHERE json_typeof(t) = 'string' AND t #>> '{{}}' = {tgt}), "
                "false)")

        def is_bool(path: str, val: str) -> str:
            return f"(json_typeof({_pg_col(path)}) = 'boolean' AND {_pg_col(path)}::text = '{val}')"

        def num(expr: str) -> str:
            return f"CASE WHEN json_typeof({expr}) = 'number' THEN abs(({expr})::text::float8) END"

        amounts = ([num(_pg_col(f)) for f in fields]
                   + [f"CASE WHEN json_typeof(j.attributes) = 'object' THEN {num(f'(j.attributes -> {_sql_str(f)})')} END"
                      for f in fields])
        fallback = "COALESCE(json_typeof(j.fallback) = 'string' AND j.fallback #>> '{}' <> '', false)"
        log10 = "log"
        least = "LEAST"
    else:
        tgt = "json_extract(w.body, '$.target')"
        auth = f"EXISTS (SELECT 1 FROM json_each(w.body, '$.authorized_targets') j WHERE j.value = {tgt})"

        # Bodies are compact JSON written by intake (orjson: `"key":value`, no spaces; `\\:` is a literal colon in
        # text()), so finding the key and value is a cheap guard that spares parsing the JSON of the many rows
        # that cannot match; the JSON function then confirms (a nested key of the same name does not count).
        def is_bool(path: str, val: str) -> str:
            return f"(instr(w.body, '\"{path}\"\\:{val}') > 0 AND json_type(w.body, '$.{path}') = '{val}')"

        def num(expr: str) -> str:
            return (f"CASE WHEN json_type(w.body, '{expr}') IN ('integer', 'real') "
                    f"THEN abs(json_extract(w.body, '{expr}')) END")

        guard = " OR ".join(f"instr(w.body, '\"{f}\"\\:') > 0" for f in fields)
        amounts = [f"CASE WHEN {guard} THEN COALESCE("
                   + ", ".join([num(f"$.{f}") for f in fields] + [num(f"$.attributes.{f}") for f in fields])
                   + ") END"]
        fallback = ("(instr(w.body, '\"fallback\"\\:\"') > 0 AND "
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


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _pg_col(key: str) -> str:
    return f'j."{key}"'


def pg_record(fields: list[str]) -> str:
    """The column list of `json_to_record` for the keys the ranking reads (all as json, so types stay visible)."""
    keys = list(dict.fromkeys(["target", "authorized_targets", "args_valid", "grounded", "refusal", "fallback",
                               *fields, "attributes"]))
    return ", ".join(f'"{k}" json' for k in keys)


def pg_guard(fields: list[str], row: str = "e") -> str:
    """Rows whose body may hold something the ranking reads (bodies are compact JSON, see `_sql_parts`)."""
    keys = ['"args_valid"\\:false', '"grounded"\\:false', '"refusal"\\:true', '"fallback"\\:"'] + [f'"{f}"\\:' for f in fields]
    return f"{row}.kind = 'action' OR " + " OR ".join(f"strpos({row}.body, '{k}') > 0" for k in keys)


# where `first` narrows the ranking and adds the queue's size, and where the events' bodies are read: with the
# window (the whole ranking parses nearly every body), or on SQLite by id for the few events `first` classifies
_ONLY, _TOTAL, _BODY, _JOIN = "/*only*/", "/*total*/", "/*body*/", "/*join*/"
_ITEM_COLUMNS = ("incident_id, rank, event_id, score, category, reasons, time, workflow, kind, subject, trace_id, "
                 "amount, state, reviewer, note, reviewed_at, evidence")


class _Build:
    """One materialisation in progress, inside one transaction.

    `prepare` locks the incident and settles the window; `finish` ranks the whole window and writes it into
    `audit_items`, in one INSERT … SELECT. Before it, `first(k)` may write the top k items straight away,
    ranked from the few events that can reach the top (see `_bounds`)."""

    def __init__(self, s: Session, rt: Runtime, incident_id: int, actor: str) -> None:
        self.s, self.rt, self.incident_id, self.actor = s, rt, incident_id, actor
        self.pg = s.get_bind().dialect.name == "postgresql"
        self.written = 0  # items in audit_items, ranks 1..written
        self.items = 0
        self.kept: dict[int, tuple[str, str | None, str, float | None, Any]] = {}
        self.q: AuditQueue | None = None
        self.sql = ""
        self.params: dict[str, Any] = {}

    def prepare(self) -> None:
        s, rt, incident_id = self.s, self.rt, self.incident_id
        inc = incidents.get_incident(s, incident_id, for_update=True)
        now = float(rt.clock.now())
        self.now = now
        since, until = window(inc, rt, now)
        susp = suspect_versions(inc)
        sets = sorted(_suspect_sets(s, susp))
        own = list(inc.workflows or [])
        # other workflows a suspect change touched contribute only the events the suspect versions served
        extra = suspect_workflows(s, inc) if sets else []
        workflows = own + extra
        cap = max(1, int(rt.settings.review_audit_max_candidates))
        fields = _amount_fields(rt)
        set_list = ", ".join(str(int(x)) for x in sets) or "NULL"
        params: dict[str, Any] = {"a": since, "b": until, "cb": until + 3600.0, "n": cap, "iid": incident_id}

        selects: list[str] = []
        scanned = 0
        truncated = False
        whole: list[str] = []  # own workflows whose whole window is in `e` (complaints included)
        rest: list[str] = []
        count_sql = text("SELECT count(*) FROM (SELECT 1 FROM events WHERE workflow = :w AND time >= :a "
                         "AND time < :b LIMIT :n) x")
        for i, wf in enumerate(workflows):
            params[f"w{i}"] = wf
            n = int(s.execute(count_sql, {"w": wf, "a": since, "b": until, "n": cap + 1}).scalar_one())
            truncated = truncated or n > cap
            scanned += min(n, cap)
            only = "" if wf in own else f" AND version_set IN ({set_list})"
            # under the bound the whole window is taken, in any order; over it, the earliest `cap` events
            bound = " ORDER BY time, id LIMIT :n" if n > cap else ""
            selects.append("SELECT * FROM (SELECT id, time, workflow, kind, subject, trace_id, status, version_set"
                           f"{_BODY} FROM events WHERE workflow = :w{i} AND time >= :a AND time < :b{only}{bound}) e{i}")
            (whole if wf in own and n <= cap else rest).append(f":w{i}")

        for ev_id, state, reviewer, note, at, evidence in s.execute(
            select(AuditItem.event_id, AuditItem.state, AuditItem.reviewer, AuditItem.note, AuditItem.reviewed_at,
                   AuditItem.evidence).where(AuditItem.incident_id == incident_id, AuditItem.state != "pending")
        ):
            self.kept[int(ev_id)] = (state, reviewer, note, at, evidence)
        s.execute(delete(AuditItem).where(AuditItem.incident_id == incident_id))
        self.meta = (since, until, workflows, susp, scanned, truncated)
        self.params = params
        if not workflows:
            return
        parts = _sql_parts("postgresql" if self.pg else "sqlite", fields)
        suspect = f"(w.version_set IN ({set_list}))" if sets else "false"
        # complaints about the window's traces: those inside the window come with it; beyond it (up to an hour
        # after), or for workflows not wholly in `e`, they are looked up through the index
        compl: list[str] = []
        if whole:
            compl.append(f"SELECT trace_id FROM e WHERE kind = 'complaint' AND workflow IN ({', '.join(whole)})")
            compl.append(f"SELECT trace_id FROM events WHERE workflow IN ({', '.join(whole)}) "
                         "AND kind = 'complaint' AND time >= :b AND time < :cb")
        if rest:
            compl.append(f"SELECT trace_id FROM events WHERE workflow IN ({', '.join(rest)}) "
                         "AND kind = 'complaint' AND time >= :a AND time < :cb")
        score = (f"({parts['tier']}) * 100.0"
                 f" + CASE WHEN c.amount > 0 THEN {parts['least']}(10.0 * {parts['log10']}(1.0 + c.amount), 60.0)"
                 " ELSE 0 END + CASE WHEN c.suspect THEN 20 ELSE 0 END + CASE WHEN c.complained THEN 15 ELSE 0 END"
                 " - CASE WHEN c.fallback THEN 5 ELSE 0 END")
        if self.pg:
            source = (f"e w{_JOIN} LEFT JOIN LATERAL json_to_record(CASE WHEN {pg_guard(fields, 'w')} "
                      f"THEN w.body::json END) AS j({pg_record(fields)}) ON true")
        else:
            source = f"e w{_JOIN}"
        # MATERIALIZED: each per-event expression is computed once (a flattened subquery would repeat them
        # wherever the outer query refers to the column). `{only}` narrows the events classified (see `first`).
        self.sql = (
            f"WITH e AS MATERIALIZED ({' UNION ALL '.join(selects)}), "
            f"cm AS MATERIALIZED (SELECT trace_id FROM ({' UNION ALL '.join(compl)}) k WHERE trace_id IS NOT NULL), "
            "c AS MATERIALIZED ("
            "SELECT w.id, w.time, w.workflow, w.kind, w.subject, w.trace_id, "
            f"{parts['category']} AS category, {parts['amount']} AS amount, {parts['fallback']} AS fallback, "
            f"w.trace_id IN (SELECT trace_id FROM cm) AS complained, {suspect} AS suspect "
            f"FROM {source} WHERE w.kind <> 'complaint'{_ONLY}), "
            f"x AS MATERIALIZED (SELECT c.*, {score} AS score FROM c) "
            "SELECT ROW_NUMBER() OVER (ORDER BY x.score DESC, x.time, x.id) AS rank, x.id, x.score, x.category, "
            f"x.suspect, x.complained, x.time, x.workflow, x.kind, x.subject, x.trace_id, x.amount{_TOTAL} FROM x"
        )
        self.fields = fields
        if self.pg:
            # a few thousand rows: parallel workers cost more to start than they save on a busy machine
            s.execute(text("SET LOCAL max_parallel_workers_per_gather = 0"))
            # the window's rows (bodies included) are materialised once; in memory, not spilled to disk
            s.execute(text("SET LOCAL work_mem = '64MB'"))

    def _insert(self, source: str, rank: str = "r.rank") -> str:
        reasons = (f"'[' || CASE WHEN r.suspect THEN '\"{SUSPECT}\"' ELSE '' END"
                   " || CASE WHEN r.suspect AND r.complained THEN ',' ELSE '' END"
                   f" || CASE WHEN r.complained THEN '\"{COMPLAINED}\"' ELSE '' END || ']'")
        if self.pg:
            reasons = f"({reasons})::json"
        return (f"INSERT INTO audit_items ({_ITEM_COLUMNS}) "
                f"SELECT :iid, {rank}, r.id, r.score, r.category, {reasons}, r.time, r.workflow, r.kind, r.subject, "
                f"r.trace_id, r.amount, 'pending', NULL, '', NULL, NULL FROM {source}")

    def first(self, k: int) -> None:
        """Write the top `k` items (ranks 1..k) now, classifying only the events that can rank that high: those
        whose best possible score reaches the k-th best of the scores every event is sure of (`_bounds`).
        The ranks are the ones the whole ranking gives (same score and order, on the same rows)."""
        if not self.sql or self.written:
            return
        lo, hi = _bounds(self.pg, self.fields)
        threshold = (f"(SELECT lb FROM (SELECT {lo} AS lb FROM e w WHERE w.kind <> 'complaint') t "
                     "ORDER BY lb DESC LIMIT 1 OFFSET :k0)")
        # the kind alone bounds the tier (an action 6, a tool call 4, anything else 3): when the threshold is
        # above that, the body of the event is not even searched
        by_kind = "(CASE w.kind WHEN 'action' THEN 695 WHEN 'tool_call' THEN 495 ELSE 395 END)"
        sql = (self.sql.replace(_ONLY, f" AND {by_kind} >= COALESCE({threshold}, -1000)"
                                       f" AND {hi} >= COALESCE({threshold}, -1000)")
               .replace(_TOTAL, ", (SELECT count(*) FROM e WHERE kind <> 'complaint') AS total"))
        if self.pg:  # PostgreSQL keeps the window in memory, bodies included, cheaper than a lookup per event
            sql = sql.replace(_BODY, ", body").replace(_JOIN, "")
        else:  # SQLite copies less without the bodies, and finds a body by rowid cheaply
            sql = sql.replace(_BODY, "").replace(_JOIN, " JOIN events ev ON ev.id = w.id").replace("w.body", "ev.body")
        rows = self.s.execute(text(f"SELECT * FROM ({sql}) r WHERE r.rank <= :k ORDER BY r.rank"),
                              {**self.params, "k": k, "k0": k - 1}).mappings().all()
        if rows:
            self.s.execute(insert(AuditItem), [
                {"incident_id": self.incident_id, "rank": int(r["rank"]), "event_id": int(r["id"]),
                 "score": float(r["score"]), "category": r["category"],
                 "reasons": [c for c, on in ((SUSPECT, r["suspect"]), (COMPLAINED, r["complained"])) if on],
                 "time": r["time"], "workflow": r["workflow"], "kind": r["kind"], "subject": r["subject"],
                 "trace_id": r["trace_id"], "amount": r["amount"], "state": "pending", "reviewer": None, "note": "",
                 "reviewed_at": None, "evidence": None} for r in rows])
        self.written = len(rows)
        self.items = int(rows[0]["total"]) if rows else 0

    def finish(self) -> AuditQueue:
        """Rank the whole window and write the items not written yet, restore the reviews already made (by
        event), record the queue."""
        s = self.s
        if self.sql:
            ranked = f"({self.sql.replace(_ONLY, '').replace(_TOTAL, '').replace(_BODY, ', body').replace(_JOIN, '')}) r"
            if not self.written:
                res = s.execute(text(self._insert(ranked)), self.params)
            else:
                # after the first items: the others in the order of the whole ranking, numbered on from them
                # (the same ranks when nothing reached the window in between, as on SQLite by construction)
                res = s.execute(text(self._insert(
                    f"{ranked} WHERE r.id NOT IN (SELECT event_id FROM audit_items WHERE incident_id = :iid)",
                    rank=":w + ROW_NUMBER() OVER (ORDER BY r.rank)")), {**self.params, "w": self.written})
            self.items = self.written + int(getattr(res, "rowcount", 0) or 0)
        for ev_id, (state, reviewer, note, at, evidence) in self.kept.items():
            s.execute(update(AuditItem).where(AuditItem.incident_id == self.incident_id, AuditItem.event_id == ev_id)
                      .values(state=state, reviewer=reviewer, note=note, reviewed_at=at, evidence=evidence))
        q = self.queue()
        s.flush()
        return q

    def queue(self) -> AuditQueue:
        """The queue's record (complete once `finish` has run; it flushes it)."""
        s = self.s
        q = self.q or s.get(AuditQueue, self.incident_id)
        if q is None:
            q = AuditQueue(incident_id=self.incident_id)
            s.add(q)
        self.q = q
        since, until, workflows, susp, scanned, truncated = self.meta
        q.since, q.until, q.workflows, q.suspect_versions = since, until, workflows, susp
        q.items, q.scanned, q.truncated, q.built_at, q.built_by = self.items, scanned, truncated, self.now, self.actor
        return q


def _bounds(pg: bool, fields: list[str]) -> tuple[str, str]:
    """SQL for the lowest and the highest score an event `w` can have, from its columns and cheap substring
    guards alone (no JSON parsed). A score is its tier x 100 plus -5..+95 (amount <= 60, suspect 20, complaint
    15, fallback -5); the tier, bounded: an action is a side-effecting action (5) or wrong-entity (6); a tool call
    is a tool error (4) only if its body holds `"args_valid":false`, else a plain answer (0); any other event is
    ungrounded (3) only if its body holds `"grounded":false`, a refusal (2) only with `"refusal":true`, and an
    error (1) or above if its status is >= 500."""
    def has(key: str, value: str) -> str:  # `\\:` is a literal colon in text()
        needle = f'"{key}"\\:{value}'
        return f"strpos(w.body, '{needle}') > 0" if pg else f"instr(w.body, '{needle}') > 0"

    err = "COALESCE(w.status >= 500, false)"
    low = f"CASE WHEN w.kind = 'action' THEN 5 WHEN w.kind = 'tool_call' THEN 0 WHEN {err} THEN 1 ELSE 0 END"
    high = (f"CASE WHEN w.kind = 'action' THEN 6 WHEN w.kind = 'tool_call' THEN "
            f"(CASE WHEN {has('args_valid', 'false')} THEN 4 ELSE 0 END) "
            f"WHEN {has('grounded', 'false')} THEN 3 "
            f"WHEN {has('refusal', 'true')} THEN 2 WHEN {err} THEN 1 ELSE 0 END")
    return f"(({low}) * 100 - 5)", f"(({high}) * 100 + 95)"


def build(s: Session, rt: Runtime, *, incident_id: int, actor: str) -> AuditQueue:
    """(Re)materialise the incident's audit queue: select the window's events through the (workflow, time) index
    (bounded per workflow), classify, weigh and rank them in SQL, write the ranked items; reviews already
    recorded are kept (by event)."""
    b = _Build(s, rt, incident_id, actor)
    b.prepare()
    return b.finish()


def ensure(s: Session, rt: Runtime, *, incident_id: int, actor: str) -> AuditQueue:
    """The incident's queue, materialised now unless it is already. The incident is locked before the queue is
    looked for, so a build that another transaction is finishing is waited for, not repeated."""
    q = get_queue(s, incident_id)
    if q is not None:
        return q
    incidents.get_incident(s, incident_id, for_update=True)
    q = get_queue(s, incident_id)
    if q is not None:
        return q
    return build(s, rt, incident_id=incident_id, actor=actor)


def open_first_page(rt: Runtime, *, incident_id: int, actor: str, limit: int = 50, timeout: float = 300.0,
                    done: threading.Event | None = None) -> dict[str, Any] | None:
    """First open of an audit that has no queue yet: rank the window, write the first page's items, and return
    that page (with the queue's record) while the rest of the queue is written, in the same transaction, by
    a worker thread. Returns None when the queue was materialised meanwhile (read it as usual).

    Nothing else sees the queue before that transaction commits: another open or a review of the incident
    locks the incident first (`ensure`, `review`), so it waits for the commit; the ids and ranks of the items
    on the page returned are those committed, so the next page (cursor = rank) continues it exactly. `done`,
    when given, is set once the worker has finished (committed or failed).
    """
    if limit < 1 or limit > MAX_PAGE:
        raise Invalid(f"limit must be between 1 and {MAX_PAGE}", field="limit")
    handed: Future[dict[str, Any] | None] = Future()

    def work() -> None:
        try:
            with rt.db.write() as s:
                incidents.get_incident(s, incident_id, for_update=True)
                if get_queue(s, incident_id) is not None:
                    handed.set_result(None)
                    return
                b = _Build(s, rt, incident_id, actor)
                b.prepare()
                b.first(limit + 1)  # one more than the page: the page knows whether there is a next one
                out = page(s, incident_id=incident_id, limit=limit)
                out["queue"] = b.queue().as_dict()
                handed.set_result(out)
                b.finish()
        except BaseException as exc:
            if not handed.done():
                handed.set_exception(exc)
            else:
                log.exception("audit: the queue of incident %s could not be written after its first page was "
                              "served; the next open builds it again", incident_id)
        finally:
            if done is not None:
                done.set()

    threading.Thread(target=work, name=f"audit-build-{incident_id}", daemon=True).start()
    return handed.result(timeout=timeout)


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
    # locked: a review waits for a queue that is still being written (see `open_first_page`)
    incidents.get_incident(s, incident_id, for_update=True)
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
