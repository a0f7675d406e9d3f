"""The stored rows of intake are exactly what they were before the intake was made cheaper (SQLite and PostgreSQL).

`_reference_store_events` is `signals.store.store_events` as it was at commit ce9f273 (row tuples built one by
one, the version-set cache keyed by the items tuple, one `executemany` / COPY). The same varied batches go through
the real validation into two fresh databases, once with the reference and once with the current code, and every
row of `events`, `event_version_sets` and `event_versions` must be equal, column by column, body text included.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from codeblue.app import build_runtime
from codeblue.runtime import Runtime
from codeblue.signals import intake, store
from codeblue.signals.store import _COPY_SQL, _INSERT_SQL, _resolve_version_set, _version_cache
from tests.support import database_url, make_settings

T0 = 1_764_000_000.0


def _reference_store_events(s: Session, rt: Runtime, events: list[dict[str, Any]], *, received_at: float) -> int:
    if not events:
        return 0
    cache = _version_cache(rt)
    pending: dict[Any, int] = s.info.setdefault("signals.version_sets", {})
    dumps = orjson.dumps
    rows: list[tuple[Any, ...]] = []
    append = rows.append
    for ev in events:
        g = ev.get
        vers = g("versions")
        set_id: int | None = None
        if vers:
            key = tuple(vers.items())
            set_id = cache.get(key) or pending.get(key)
            if set_id is None:
                set_id = pending[key] = _resolve_version_set(s, vers, dumps(vers, option=orjson.OPT_SORT_KEYS))
        append((ev["time"], received_at, ev["workflow"], ev["kind"], g("subject"), g("session_id"),
                g("trace_id"), g("status"), set_id, dumps(ev).decode()))
    conn = s.connection()
    cur = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        if conn.dialect.name == "postgresql":
            with cur.copy(_COPY_SQL) as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            cur.executemany(_INSERT_SQL["?" if conn.dialect.paramstyle == "qmark" else "%s"], rows)
    finally:
        cur.close()
    return len(rows)


_SIZES = (240, 301, 1, 517)


def _varied_batches() -> list[bytes]:
    """Bodies as clients send them: optional fields present or not, unicode and escapes, ints and floats, RFC 3339
    times, version sets new and repeated, in another key order, nested arguments and attributes, unknown fields."""
    texts = ["plain", "ünïcødé ✓ 日本語", 'quote " backslash \\ tab \t newline \n', "emoji 🚑 and \u2028",
             "mail jo@example.com card 4242 4242 4242 4242", "", "x" * 3000]
    batches: list[bytes] = []
    for b, size in enumerate(_SIZES):  # sizes that cut into every multi-row INSERT size SQLite gets (256 … 1)
        out: list[dict[str, Any]] = []
        for i in range(size):
            n = b * 1000 + i
            ev: dict[str, Any] = {"time": T0 + n * 0.001 if n % 7 else int(T0) + n, "workflow": f"wf-{n % 5}",
                                  "kind": ("response", "tool_call", "action", "complaint")[n % 4]}
            if n % 3:
                ev["subject"] = f"cust-{n % 11}"
            if n % 5:
                ev["session_id"] = f"s{n // 3}"
            if n % 2:
                ev["trace_id"] = f"{n:032x}"
            if n % 9 == 0:
                ev["time"] = f"2025-11-24T16:{n % 60:02d}:{(n * 7) % 60:02d}.{n % 1000:03d}Z"
            if n % 6 != 5:
                ev["status"] = 500 if n % 13 == 0 else 200
            if n % 8 == 1:
                ev["versions"] = {"model_alias/main": "gpt-x", "prompt/p": f"v{n % 3}"}  # another key order
            elif n % 8 != 0:
                ev["versions"] = {"prompt/p": f"v{n % 3}", "model_alias/main": "gpt-x"}
                if n % 10 == 0:
                    ev["versions"][f"tool_contract/t{b}"] = 3  # a number: normalised to "3"; a new set per batch
            if ev["kind"] == "response":
                ev["latency_ms"] = (n % 900) + 0.25 if n % 4 else n % 900
                ev["refusal"] = n % 17 == 0
                if n % 3 == 0:
                    ev["grounded"] = n % 24 == 0
                if n % 5 == 0:
                    ev["input"] = texts[n % len(texts)]
                    ev["output"] = texts[(n + 3) % len(texts)]
                ev["retrieval_age_s"] = 1e-7 * n if n % 11 == 0 else 3600.5
            elif ev["kind"] == "tool_call":
                ev.update(tool="lookup", args_valid=n % 10 != 0, arguments={"order": n, "nested": {"a": [1, 2.5, None]}})
            elif ev["kind"] == "action":
                ev.update(action="refund", target=f"cust-{n % 13}", authorized_targets=[f"cust-{n % 11}"])
            else:
                ev.update(text=texts[n % len(texts)], channel="chat")
            if n % 12 == 0:
                ev["attributes"] = {"tenant": "t1", "score": 0.1 + n, "deep": {"k": ["v", True]}}
            if n % 15 == 0:
                ev["unknown_field"] = {"kept": "under attributes"}
            if n % 16 == 0:
                ev["fallback"] = None  # nulls are dropped
            out.append(ev)
        batches.append(orjson.dumps(out))
    return batches


def _store_all(rt: Runtime, bodies: list[bytes], *, reference: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as m:
        if reference:
            m.setattr(store, "store_events", _reference_store_events)
        for i, body in enumerate(bodies):
            good, rejected = intake.validate_batch(rt, intake.split_batch(body, "application/json"))
            assert not rejected, rejected
            # The same clock reading for both runs: received_at is a column too.
            m.setattr(rt.clock, "now", lambda i=i: T0 + 10_000.125 + i)
            if i == 2:  # a rolled-back batch leaves nothing behind (and no cached set id) in either run
                with pytest.raises(RuntimeError), rt.db.write() as s:
                    store.store_events(s, rt, good, received_at=1.0)
                    raise RuntimeError("roll back")
                s.info.pop("signals.version_sets", None)
            intake.accept_events(rt, good)


def _dump(rt: Runtime) -> dict[str, list[tuple[Any, ...]]]:
    tables = {
        "events": "SELECT id, time, received_at, workflow, kind, subject, session_id, trace_id, status, version_set,"
                  " body FROM events ORDER BY id",
        "event_version_sets": "SELECT id, digest, versions FROM event_version_sets ORDER BY id",
        "event_versions": "SELECT key, version, set_id FROM event_versions ORDER BY set_id, key, version",
    }
    with rt.db.read() as s:
        return {name: [tuple(r) for r in s.execute(text(sql))] for name, sql in tables.items()}


@pytest.fixture
def two_runtimes(backend: str, tmp_path: Path) -> Iterator[tuple[Runtime, Runtime]]:
    with database_url(backend, tmp_path / "a") as url_a, database_url(backend, tmp_path / "b") as url_b:
        (tmp_path / "a").mkdir(exist_ok=True)
        (tmp_path / "b").mkdir(exist_ok=True)
        rts = (build_runtime(make_settings(url_a, tmp_path / "a")), build_runtime(make_settings(url_b, tmp_path / "b")))
        try:
            yield rts
        finally:
            for rt in rts:
                rt.db.dispose()


def test_stored_rows_are_those_of_the_reference(two_runtimes: tuple[Runtime, Runtime],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    ref_rt, new_rt = two_runtimes
    _store_all(ref_rt, _varied_batches(), reference=True, monkeypatch=monkeypatch)
    _store_all(new_rt, _varied_batches(), reference=False, monkeypatch=monkeypatch)
    ref, new = _dump(ref_rt), _dump(new_rt)
    assert len(ref["events"]) == sum(_SIZES)  # the rolled-back attempt left nothing; its batch was then stored
    assert len({r[9] for r in ref["events"]}) >= 6  # several version sets, some created in a later batch
    assert any(r[9] is None for r in ref["events"]) and any(r[5] is None for r in ref["events"])
    for name in ref:
        assert len(new[name]) == len(ref[name]), name
        for a, b in zip(ref[name], new[name], strict=True):
            assert a == b, (name, a, b)
            assert [type(x) for x in a] == [type(x) for x in b], (name, a, b)
    # the body is the compact JSON text the audit searches (e.g. `"grounded":false`), byte for byte
    bodies = [r[10] for r in new["events"]]
    assert any('"grounded":false' in b for b in bodies) and any("日本語" in b for b in bodies)


def test_idempotency_rows_and_answers_are_those_of_sqlalchemy(db_url: str, tmp_path: Path) -> None:
    """The key's row (the rejected list's JSON text too) is what SQLAlchemy's insert wrote before; `lookup` answers
    what a session's select answered; a second record of a key fails the transaction with IntegrityError."""
    from sqlalchemy import insert, select
    from sqlalchemy.exc import IntegrityError

    from codeblue.signals import idempotency

    rt = build_runtime(make_settings(db_url, tmp_path))
    table = idempotency.batches
    rejected: list[dict[str, Any]] = [
        {"index": 3, "line": 4, "field": "time", "reason": "required"},
        {"index": 7, "field": "versions.noslash", "reason": 'a key is "<kind>/<name>": ünïcødé \\ \n'}]
    try:
        with rt.db.write() as s:
            s.execute(insert(table).values(principal="bot", key="ref", received_at=T0 + 0.5, accepted=12,
                                           rejected=rejected))
            idempotency.record(s, principal="bot", key="new", accepted=12, rejected=rejected, now=T0 + 0.5)
        as_text = "rejected::text" if rt.db.engine.dialect.name == "postgresql" else "rejected"
        with rt.db.read() as s:
            rows = {r[1]: (r[0], *r[2:]) for r in s.execute(text(
                f"SELECT principal, key, received_at, accepted, {as_text} FROM intake_batches"))}
            via_session = s.execute(select(table.c.accepted, table.c.rejected).where(table.c.key == "ref")).one()
        assert rows["new"] == rows["ref"]
        assert idempotency.lookup(rt.db.engine, principal="bot", key="new") == (via_session[0], via_session[1])
        assert idempotency.lookup(rt.db.engine, principal="bot", key="ref") == (12, rejected)
        assert idempotency.lookup(rt.db.engine, principal="other", key="new") is None

        events = [{"time": T0, "workflow": "idem", "kind": "response"}]
        with pytest.raises(IntegrityError):
            intake.accept_events(rt, events, key=("bot", "new"), rejected=[])
        with rt.db.read() as s:
            assert store.count_events(s) == 0  # the failed transaction stored none of its events
    finally:
        rt.db.dispose()
