"""Figure: the audit of served answers — selection and risk ranking of an incident's served events over a
store of 10 million events, first page returned in ≤ 200 ms, on SQLite and on PostgreSQL.

    .venv/bin/python bench/review_audit_first_page.py [--events 10000000] [--backend sqlite|postgres|both]
        [--pg-url postgresql+psycopg://postgres@127.0.0.1:5432/test] [--window-h 4] [--keep DIR]
        [--sqlite-file FILE] [--pg-db NAME]

The store is generated directly (no HTTP intake): 10 workflows over 14 days in time order, written with
batched driver executemany on SQLite and COPY on PostgreSQL into the real `events` table (its one secondary
index, (workflow, time), in place), so generation time is reported too. Events are a realistic mix: responses
(4 % ungrounded, 2 % refusals, 0.5 % errors), side-effecting actions with amounts (0.2 % wrong-entity), tool
calls, complaints; a suspect prompt version serves the incident's workflow from its onset.

What is timed (in-process, the same service call GET /v1/incidents/{id}/audit makes on a first open,
`audit.open_first_page`):
- first open: select the window's events through the index, classify, weigh and rank them in SQL into a
  temporary table, write page 1's items into `audit_items` and answer page 1 (50 items joined with their
  events) — the figure; a worker thread then writes the rest of the queue in the same transaction and
  commits, timed too (to the commit). Wall and CPU time (this process plus, on PostgreSQL, the server
  backends of the bench database, read from /proc — on a shared, loaded machine wall time mostly measures
  the run queue). Once right after generation (or on opening a kept store), then for 5 more incidents over
  the same window (window pages cached); the page served is checked against the committed queue;
- warm: page 1 again, and a page deep in the queue (cursor), each the median of 20 runs.
A store can be kept and reused between runs (--sqlite-file, --pg-db): generation is then skipped.
No peer exists for this figure; for scale the script also times `SELECT count(*)` of the window (the
cheapest possible look at the same rows).
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from sqlalchemy import text

from codeblue.app import build_runtime
from codeblue.clock import ManualClock
from codeblue.incidents import service as incidents
from codeblue.review import audit
from codeblue.settings import Settings

DAY = 86400.0
T_START = 1_790_000_000.0
DAYS = 14
WORKFLOWS = [f"wf-{i:02d}" for i in range(10)]
INCIDENT_WF = "wf-03"
COLUMNS = ("time", "received_at", "workflow", "kind", "subject", "session_id", "trace_id", "status",
           "version_set", "body")


def rows(n: int, onset: float, rng: random.Random) -> Any:
    """Yield row tuples in time order."""
    span = DAYS * DAY
    step = span / n
    dumps = orjson.dumps
    for i in range(n):
        t = T_START + i * step
        wf = WORKFLOWS[i % len(WORKFLOWS)]
        r = rng.random()
        subject = f"cust-{rng.randrange(200_000)}"
        trace = f"{i:032x}"
        suspect = wf == INCIDENT_WF and t >= onset
        versions = {"prompt/assistant": "v42" if suspect else "v41", "model_alias/main": "gpt-x"}
        vset = 2 if suspect else 1
        status = None
        if r < 0.70:
            kind = "response"
            status = 503 if rng.random() < 0.005 else 200
            bad = 0.30 if suspect else 0.04
            ev: dict[str, Any] = {"time": t, "workflow": wf, "kind": kind, "trace_id": trace, "session_id": f"s{i // 4}",
                                  "subject": subject, "versions": versions, "status": status,
                                  "latency_ms": round(rng.uniform(80, 900), 1), "refusal": rng.random() < 0.02,
                                  "grounded": rng.random() > bad}
            if i % 8 == 0:
                ev["input"] = f"Can I get a refund for order {i}?"
                ev["output"] = "Refunds over 100 need a manager's approval within 30 days."
        elif r < 0.90:
            kind = "action"
            wrong = rng.random() < (0.01 if suspect else 0.002)
            ev = {"time": t, "workflow": wf, "kind": kind, "trace_id": trace, "session_id": f"s{i // 4}",
                  "subject": subject, "versions": versions, "action": "issue_refund",
                  "target": f"cust-{rng.randrange(200_000)}" if wrong else subject, "authorized_targets": [subject],
                  "attributes": {"amount": round(rng.lognormvariate(4.0, 0.8), 2)}}
        elif r < 0.98:
            kind = "tool_call"
            ev = {"time": t, "workflow": wf, "kind": kind, "trace_id": trace, "subject": subject, "versions": versions,
                  "tool": "lookup_order", "args_valid": rng.random() > 0.01, "arguments": {"order": i}}
        else:
            kind = "complaint"
            ev = {"time": t, "workflow": wf, "kind": kind, "trace_id": trace, "subject": subject, "versions": versions,
                  "text": "the bot refunded the wrong account", "channel": "chat"}
        yield (t, t, wf, kind, subject, ev.get("session_id"), trace, status, vset, dumps(ev).decode())


def version_sets(conn: Any) -> None:
    for sid, v in ((1, "v41"), (2, "v42")):
        vers = {"prompt/assistant": v, "model_alias/main": "gpt-x"}
        conn.execute(text("INSERT INTO event_version_sets (id, digest, versions) VALUES (:i, :d, :v)"),
                     {"i": sid, "d": f"bench-{sid}", "v": orjson.dumps(vers).decode()})
        for k, val in vers.items():
            conn.execute(text("INSERT INTO event_versions (key, version, set_id) VALUES (:k, :v, :s)"),
                         {"k": k, "v": val, "s": sid})


def generate(rt: Any, n: int, onset: float) -> float:
    rng = random.Random(42)
    t0 = time.perf_counter()
    engine = rt.db.engine
    with engine.begin() as conn:
        version_sets(conn)
    batch = 100_000
    it = rows(n, onset, rng)
    done = 0
    if engine.dialect.name == "postgresql":
        raw = engine.raw_connection()
        try:
            cur = raw.cursor()
            with cur.copy(f"COPY events ({', '.join(COLUMNS)}) FROM STDIN") as cp:  # type: ignore[attr-defined]
                for row in it:
                    cp.write_row(row)
                    done += 1
                    if done % 1_000_000 == 0:
                        print(f"  … {done:,} rows ({time.perf_counter() - t0:.0f} s)", flush=True)
            raw.commit()
            # a long-lived table has been vacuumed (hint bits, visibility map); a fresh COPY has not
            driver = raw.driver_connection
            driver.autocommit = True  # type: ignore[union-attr]
            driver.execute("VACUUM ANALYZE events")  # type: ignore[union-attr]
            driver.autocommit = False  # type: ignore[union-attr]
        finally:
            raw.close()
    else:
        sql = f"INSERT INTO events ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
        while done < n:
            chunk = [r for _, r in zip(range(batch), it, strict=False)]
            if not chunk:
                break
            with engine.begin() as conn:
                conn.exec_driver_sql(sql, chunk)
            done += len(chunk)
            if done % 1_000_000 == 0:
                print(f"  … {done:,} rows ({time.perf_counter() - t0:.0f} s)", flush=True)
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
    return time.perf_counter() - t0


def backend_cpu(pid: int | None) -> float:
    """CPU ms used so far by a (local) PostgreSQL backend process, from /proc; 0 when unknown."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) * 1000.0 / os.sysconf("SC_CLK_TCK")


def median_ms(fn: Any, runs: int = 20) -> float:
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return statistics.median(out)


def stored_events(rt: Any) -> int:
    """Events a previous run of this bench generated into the same store (0 for a fresh one)."""
    with rt.db.engine.connect() as conn:
        if not conn.execute(text("SELECT 1 FROM event_version_sets WHERE digest = 'bench-1'")).first():
            return 0
        return int(conn.execute(text("SELECT max(id) FROM events")).scalar_one() or 0)


def run(url: str, n: int, window_h: float, data_dir: Path) -> dict[str, Any]:
    onset = T_START + (DAYS - 1) * DAY + 10 * 3600
    clock = ManualClock(onset - 3600)
    rt = build_runtime(Settings(database_url=url, data_dir=data_dir, workers=False), clock)
    backend = rt.db.engine.dialect.name
    have = stored_events(rt)
    gen_s = 0.0
    if have:  # a store kept from an earlier run (--sqlite-file / --pg-db): reuse it
        print(f"[{backend}] reusing the {have:,} events already stored", flush=True)
        n = have
    else:
        print(f"[{backend}] generating {n:,} events …", flush=True)
        gen_s = generate(rt, n, onset)
        print(f"[{backend}] generated in {gen_s:.1f} s ({n / gen_s:,.0f} rows/s)", flush=True)
    with rt.db.write() as s:
        clock.set(onset + 15 * 60)
        inc = incidents.open_incident(s, rt, title="refunds to the wrong account", workflows=[INCIDENT_WF],
                                      failure_type="account_action", actor="bench",
                                      harm={"started_at": onset, "requests": 0, "subjects": 0},
                                      suspects=[{"kind": "prompt", "name": "assistant", "version": "v42"}])
        iid = inc.id
    clock.set(onset + window_h * 3600)
    with rt.db.write() as s:
        incidents.set_status(s, rt, incident_id=iid, to="contained", actor="bench")
    with rt.db.read() as s:
        window_count_ms = median_ms(lambda: s.execute(text(
            "SELECT count(*) FROM events WHERE workflow = :w AND time >= :a AND time < :b"),
            {"w": INCIDENT_WF, "a": onset, "b": onset + window_h * 3600}).scalar(), runs=5)

    def backends() -> list[int]:
        """PostgreSQL server processes serving this database (the build runs on a pooled connection of its own)."""
        if backend != "postgresql":
            return []
        with rt.db.read() as s:
            return [int(p) for p in s.execute(text(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database()")).scalars()]

    def cpu_now(pids: list[int]) -> float:
        return time.process_time() * 1000 + sum(backend_cpu(p) for p in pids)

    def first_open(incident_id: int) -> dict[str, Any]:
        """What GET …/audit does on the first open of an incident's audit: rank the window in SQL, write and
        answer page 1 (`audit.open_first_page`); the rest of the queue is written by a worker thread in the same
        transaction. Wall and CPU (this process + the PostgreSQL backends) to page 1, and to the commit."""
        pids = backends()
        done = threading.Event()
        t = time.perf_counter()
        c0 = cpu_now(pids)
        first = audit.open_first_page(rt, incident_id=incident_id, actor="bench", limit=50, done=done)
        wall = (time.perf_counter() - t) * 1000
        cpu = cpu_now(pids) - c0
        done.wait()
        total_wall = (time.perf_counter() - t) * 1000
        total_cpu = cpu_now(backends()) - c0  # a backend started meanwhile counts whole
        assert first is not None
        with rt.db.read() as s:
            q = audit.get_queue(s, incident_id)
            assert q is not None and q.items == first["queue"]["items"]
            n_items, n_scanned = q.items, q.scanned
            again = audit.page(s, incident_id=incident_id, limit=50)
        assert [it["id"] for it in again["items"]] == [it["id"] for it in first["items"]]  # committed as served
        return {"wall": wall, "cpu": cpu, "total_wall": total_wall, "total_cpu": total_cpu, "items": n_items,
                "scanned": n_scanned, "first": first}

    cold = first_open(iid)
    items, scanned, first = cold["items"], cold["scanned"], cold["first"]
    # more incidents over the same window: first opens with the window's pages in cache
    more = []
    for _ in range(5):
        with rt.db.write() as s:
            inc2 = incidents.open_incident(s, rt, title="same window", workflows=[INCIDENT_WF],
                                           failure_type="account_action", actor="bench",
                                           harm={"started_at": onset, "requests": 0, "subjects": 0},
                                           suspects=[{"kind": "prompt", "name": "assistant", "version": "v42"}])
            incidents.set_status(s, rt, incident_id=inc2.id, to="contained", actor="bench")
            other = inc2.id
        more.append(first_open(other))

    def med(key: str) -> float:
        return float(statistics.median(m[key] for m in more))

    def warm() -> None:
        with rt.db.read() as s:
            audit.page(s, incident_id=iid, limit=50)

    def deep() -> None:
        with rt.db.read() as s:
            audit.page(s, incident_id=iid, limit=50, cursor=str(items // 2))

    warm_ms = median_ms(warm)
    deep_ms = median_ms(deep)
    top = first["items"][0]
    rt.db.dispose()
    load = os.getloadavg()
    res = {"backend": backend, "events": n, "generate_s": round(gen_s, 1), "window_events": scanned,
           "queue_items": items,
           "first_page_ms": round(cold["wall"], 1), "first_page_cpu_ms": round(cold["cpu"], 1),
           "queue_committed_ms": round(cold["total_wall"], 1), "queue_cpu_ms": round(cold["total_cpu"], 1),
           "cached_first_page_ms": round(med("wall"), 1), "cached_first_page_cpu_ms": round(med("cpu"), 1),
           "cached_queue_committed_ms": round(med("total_wall"), 1), "cached_queue_cpu_ms": round(med("total_cpu"), 1),
           "load_avg_1_5": [round(load[0], 2), round(load[1], 2)], "warm_first_page_ms": round(warm_ms, 2),
           "deep_page_ms": round(deep_ms, 2), "window_count_ms": round(window_count_ms, 1),
           "top_item": {"category": top["category"], "amount": top["amount"]}}
    print(orjson.dumps(res).decode(), flush=True)
    print(f"[{backend}] first open of an audit (rank {scanned:,} window events of {n:,}, answer page 1): "
          f"{cold['wall']:.0f} ms wall / {cold['cpu']:.0f} ms CPU to page 1, queue of {items:,} committed after "
          f"{cold['total_wall']:.0f} ms / {cold['total_cpu']:.0f} ms CPU; with the window cached (median of 5 incidents): "
          f"{med('wall'):.0f} ms wall / {med('cpu'):.0f} ms CPU to page 1, committed after {med('total_wall'):.0f} ms / "
          f"{med('total_cpu'):.0f} ms CPU (goal: page 1 ≤ 200 ms; load average {load[0]:.1f} / {load[1]:.1f} (1/5 min) "
          f"on {os.cpu_count()} cores); page 1 once materialised {warm_ms:.1f} ms; deep page {deep_ms:.1f} ms; "
          f"bare count(*) of the window {window_count_ms:.1f} ms", flush=True)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    ap.add_argument("--pg-url", default=os.environ.get("CODEBLUE_TEST_POSTGRES_URL",
                                                       "postgresql+psycopg://postgres@127.0.0.1:5432/test"))
    ap.add_argument("--window-h", type=float, default=4.0, help="hours from onset to containment")
    ap.add_argument("--keep", type=Path, default=None, help="keep the SQLite file in this directory")
    ap.add_argument("--sqlite-file", type=Path, default=None,
                    help="use (and keep) this SQLite file; generated only when it holds no bench events yet")
    ap.add_argument("--pg-db", default=None,
                    help="use (and keep) this PostgreSQL database; created and generated only when it is new")
    a = ap.parse_args()
    results = []
    if a.backend in ("sqlite", "both") and a.sqlite_file is not None:
        a.sqlite_file.parent.mkdir(parents=True, exist_ok=True)
        results.append(run(f"sqlite:///{a.sqlite_file}", a.events, a.window_h, a.sqlite_file.parent / "data"))
    elif a.backend in ("sqlite", "both"):
        with tempfile.TemporaryDirectory(prefix="cb-bench-review-") as tmp:
            d = a.keep or Path(tmp)
            d.mkdir(parents=True, exist_ok=True)
            db = d / f"audit-{secrets.token_hex(3)}.db"
            try:
                results.append(run(f"sqlite:///{db}", a.events, a.window_h, d / "data"))
            finally:
                if a.keep is None:
                    for suffix in ("", "-wal", "-shm"):
                        Path(f"{db}{suffix}").unlink(missing_ok=True)
    if a.backend in ("postgres", "both") and a.pg_db:
        import psycopg

        admin = a.pg_url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(admin, autocommit=True) as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (a.pg_db,)).fetchone() is None:
                conn.execute(f'CREATE DATABASE "{a.pg_db}"')
        with tempfile.TemporaryDirectory(prefix="cb-bench-review-") as tmp:
            results.append(run(f"{a.pg_url.rsplit('/', 1)[0]}/{a.pg_db}", a.events, a.window_h, Path(tmp) / "data"))
    elif a.backend in ("postgres", "both"):
        import psycopg

        name = "cb_bench_review_" + secrets.token_hex(3)
        admin = a.pg_url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        try:
            base = a.pg_url.rsplit("/", 1)[0]
            with tempfile.TemporaryDirectory(prefix="cb-bench-review-") as tmp:
                results.append(run(f"{base}/{name}", a.events, a.window_h, Path(tmp) / "data"))
        finally:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print(orjson.dumps(results, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
