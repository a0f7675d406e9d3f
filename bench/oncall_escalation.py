"""Escalation at scale: the cost of filling roles + paging on open, and how long one escalation sweep takes.

In process (build_runtime + ManualClock, the real incidents service and comms outbox), on SQLite (and
PostgreSQL with --pg):

1. opens N incidents with the on-call map wired (each fills 4 roles, pages 4 people through the outbox and
   starts an escalation policy) and, in the same run, N incidents with the on-call hooks removed — the
   difference is what on-call adds to opening an incident;
2. moves the clock past the first timeout and times one run of the escalation job over N due escalations
   (each pages the next level): the figure is escalations advanced per second, and whether one sweep fits
   inside the job's tick (5 s), i.e. whether a level fires within one tick of being due.

    .venv/bin/python bench/oncall_escalation.py [--incidents 300] [--pg postgresql+psycopg://...]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import func, select
from tests.support import make_settings, postgres_database

from codeblue.app import build_runtime
from codeblue.clock import ManualClock
from codeblue.comms.model import OutboxMessage
from codeblue.hooks import hooks
from codeblue.incidents import service as incidents
from codeblue.oncall import wiring
from codeblue.oncall.model import Escalation

CONFIG = """\
people: [{handle: fay, email: fay@x.test}, {handle: fin, email: fin@x.test}, {handle: ian, email: ian@x.test},
         {handle: ivo, email: ivo@x.test}, {handle: oli, email: oli@x.test}, {handle: cat, email: cat@x.test}]
schedules:
  - {name: feature, domain: feature, timezone: America/New_York,
     layers: [{rotation: weekly, handoff: "09:00", start: 2026-03-02, members: [fay, fin]}]}
  - {name: infra, domain: infra, timezone: UTC, layers: [{rotation: daily, handoff: "00:00", start: 2026-03-02, members: [ian, ivo]}]}
  - {name: ops, domain: ops, timezone: UTC, layers: [{rotation: weekly, start: 2026-03-02, members: [oli]}]}
  - {name: ops-rota, domain: ops, workflow: comms, timezone: UTC, layers: [{rotation: weekly, start: 2026-03-02, members: [cat]}]}
policies:
  - {name: default, repeat: 1, levels: [{target: feature, timeout_minutes: 5}, {target: infra, timeout_minutes: 10}]}
"""
T0 = 1_773_154_800.0  # 2026-03-10 15:00 UTC


@contextlib.contextmanager
def backend(kind: str, pg: str | None, tmp: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{tmp}/bench.db"
    else:
        os.environ["CODEBLUE_TEST_POSTGRES_URL"] = pg or ""
        with postgres_database() as url:
            yield url


def open_many(rt: object, n: int, tag: str) -> float:
    t0 = time.perf_counter()
    for i in range(n):
        with rt.db.write() as s:  # type: ignore[attr-defined]
            incidents.open_incident(s, rt, title=f"{tag} {i}", workflows=["support-chat"], severity="SEV2",  # type: ignore[arg-type]
                                    failure_type="answer_quality", actor="bench")
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--incidents", type=int, default=300)
    ap.add_argument("--pg", default=None)
    args = ap.parse_args()
    n = args.incidents
    for kind in ["sqlite"] + (["postgres"] if args.pg else []):
        with tempfile.TemporaryDirectory() as tmp, backend(kind, args.pg, Path(tmp)) as url:
            cfg = Path(tmp) / "oncall.yaml"
            cfg.write_text(CONFIG)
            clock = ManualClock(T0)
            rt = build_runtime(make_settings(url, Path(tmp), oncall_config=cfg, workers=False), clock)
            print(f"-- {kind}: {n} incidents")
            with_oncall = open_many(rt, n, "with")
            with rt.db.read() as s:
                pages = s.scalar(select(func.count()).select_from(OutboxMessage).where(OutboxMessage.kind == "page"))
                active = s.scalar(select(func.count()).select_from(Escalation).where(Escalation.state == "active"))
            assert pages == 4 * n and active == n, (pages, active)
            saved = dict(hooks._subs)
            for topic in ("incident.opened", "incident.milestone", "incident.status"):
                hooks._subs[topic] = [h for h in hooks._subs.get(topic, []) if h.__module__ != wiring.__name__]
            without = open_many(rt, n, "without")
            hooks._subs.clear()
            hooks._subs.update(saved)
            print(f"open incident with on-call (4 roles, 4 pages, escalation)  {n / with_oncall:7.0f}/s  "
                  f"({with_oncall / n * 1000:.1f} ms each)")
            print(f"open incident without on-call (same run, hooks removed)     {n / without:7.0f}/s  "
                  f"({without / n * 1000:.1f} ms each)")
            clock.advance(300)
            t0 = time.perf_counter()
            wiring.escalate(rt)  # what the job runs each tick
            sweep = time.perf_counter() - t0
            looked = n
            with rt.db.read() as s:
                esc_pages = s.scalar(select(func.count()).select_from(OutboxMessage)
                                     .where(OutboxMessage.dedup_key.like("%:escalation:%")))
            assert esc_pages == n, esc_pages
            fits = "fits" if sweep < rt.settings.oncall_tick else "does NOT fit"
            print(f"escalation job run: {looked} due escalations advanced (each pages its next level) in "
                  f"{sweep * 1000:.0f} ms ({looked / sweep:.0f}/s); {fits} in one {rt.settings.oncall_tick:g} s tick")
            rt.db.dispose()


if __name__ == "__main__":
    main()
