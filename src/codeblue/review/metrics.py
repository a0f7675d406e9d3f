"""Response metrics (MTTD, MTTA, MTTC, MTTR by severity, failure type and workflow) and the Prometheus
exposition of codeblue's state (`GET /metrics`).

Definitions, per incident opened in the period:
- MTTD: detected − estimated onset (``harm.started_at``); incidents without an onset are left out of it.
- MTTA: acknowledged − detected. MTTC: contained − detected. MTTR: resolved − detected.
Each mean counts only the incidents that reached the milestone; ``n`` says how many.
"""

from __future__ import annotations

import logging
import statistics
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from codeblue.comms.model import OutboxMessage
from codeblue.configwatch import watched
from codeblue.incidents.model import OPEN_STATUSES, SEVERITIES, STATUSES, Incident
from codeblue.review.model import AuditItem, CorrectiveAction
from codeblue.runtime import Runtime

log = logging.getLogger(__name__)

MEASURES = ("mttd", "mtta", "mttc", "mttr")


def _durations(inc: Incident) -> dict[str, float | None]:
    detected = inc.detected_at or inc.opened_at
    onset = (inc.harm or {}).get("started_at")

    def after(t: float | None, base: float | None) -> float | None:
        return None if t is None or base is None else max(0.0, float(t) - float(base))

    return {
        "mttd": after(detected, onset if isinstance(onset, (int, float)) else None),
        "mtta": after(inc.acknowledged_at, detected),
        "mttc": after(inc.contained_at, detected),
        "mttr": after(inc.resolved_at, detected),
    }


def _summary(rows: list[dict[str, float | None]]) -> dict[str, Any]:
    out: dict[str, Any] = {"incidents": len(rows)}
    for m in MEASURES:
        vals = [float(v) for r in rows if (v := r[m]) is not None]
        out[m] = {"mean_s": statistics.fmean(vals) if vals else None,
                  "median_s": statistics.median(vals) if vals else None, "n": len(vals)}
    return out


def response_metrics(s: Session, *, since: float, until: float) -> dict[str, Any]:
    incs = list(s.scalars(select(Incident).where(Incident.opened_at >= since, Incident.opened_at < until)
                          .order_by(Incident.id)))
    rows = [(inc, _durations(inc)) for inc in incs]
    groups: dict[str, dict[str, list[dict[str, float | None]]]] = {"severity": {}, "failure_type": {},
                                                                      "workflow": {}}
    for inc, d in rows:
        groups["severity"].setdefault(inc.severity, []).append(d)
        groups["failure_type"].setdefault(inc.failure_type, []).append(d)
        for wf in inc.workflows or ["(none)"]:
            groups["workflow"].setdefault(wf, []).append(d)
    return {
        "since": since, "until": until,
        "overall": _summary([d for _i, d in rows]),
        "by": {dim: {k: _summary(v) for k, v in sorted(g.items())} for dim, g in groups.items()},
    }


# ----- Prometheus -------------------------------------------------------------------------------------------


class StateCollector(Collector):
    """Reads the database on each scrape (a handful of aggregate queries) and the live pipeline's indicators."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def collect(self) -> Iterator[Metric]:
        rt = self.rt
        with rt.db.read() as s:
            yield from self._incidents(s)
            yield from self._outbox(s)
            yield from self._review(s, rt)
            yield from self._sdk(s, rt)
        yield from self._indicators(rt)
        yield from self._config_files(rt)

    def _config_files(self, rt: Runtime) -> Iterable[Metric]:
        files = watched(rt)
        if not files:
            return
        ok = GaugeMetricFamily("codeblue_config_last_reload_successful",
                               "1 when the config file's last change was applied; 0 when it was refused and the "
                               "previous version stays in force.", labels=["config", "file"])
        at = GaugeMetricFamily("codeblue_config_last_reload_success_timestamp_seconds",
                               "When the config file was last applied.", labels=["config", "file"])
        for wf in files:
            ok.add_metric([wf.name, str(wf.path)], 1.0 if wf.ok else 0.0)
            at.add_metric([wf.name, str(wf.path)], wf.last_success)
        yield ok
        yield at

    def _incidents(self, s: Session) -> Iterable[Metric]:
        counts = {(st, sev): 0 for st in STATUSES for sev in SEVERITIES}
        for st, sev, n in s.execute(select(Incident.status, Incident.severity, func.count())
                                    .group_by(Incident.status, Incident.severity)):
            counts[(st, sev)] = int(n)
        g = GaugeMetricFamily("codeblue_incidents", "Incidents by status and severity.",
                              labels=["status", "severity"])
        for (st, sev), n in counts.items():
            g.add_metric([st, sev], n)
        yield g
        open_total = sum(n for (st, _sev), n in counts.items() if st in OPEN_STATUSES)
        yield GaugeMetricFamily("codeblue_incidents_open", "Incidents that still need people "
                                "(triggered, investigating, contained, monitoring).", value=open_total)
        by = GaugeMetricFamily("codeblue_incidents_open_by_severity", "Open incidents by severity.",
                               labels=["severity"])
        for sev in SEVERITIES:
            by.add_metric([sev], sum(n for (st, sv), n in counts.items() if st in OPEN_STATUSES and sv == sev))
        yield by

    def _outbox(self, s: Session) -> Iterable[Metric]:
        g = GaugeMetricFamily("codeblue_outbox_messages", "Outbox messages by delivery state.", labels=["state"])
        backlog = 0
        for st, n in s.execute(select(OutboxMessage.state, func.count()).group_by(OutboxMessage.state)):
            g.add_metric([str(st)], int(n))
            if st == "pending":
                backlog = int(n)
        yield g
        yield GaugeMetricFamily("codeblue_outbox_backlog", "Outbox messages waiting to be delivered.", value=backlog)

    def _review(self, s: Session, rt: Runtime) -> Iterable[Metric]:
        now = rt.clock.now()
        overdue = s.scalar(select(func.count()).select_from(CorrectiveAction).where(
            CorrectiveAction.status.in_(("open", "in_progress")), CorrectiveAction.due_at < now)) or 0
        yield GaugeMetricFamily("codeblue_corrective_actions_overdue", "Corrective actions past their due date.",
                                value=int(overdue))
        g = GaugeMetricFamily("codeblue_audit_items", "Audit items of served answers by review state.",
                              labels=["state"])
        for st, n in s.execute(select(AuditItem.state, func.count()).group_by(AuditItem.state)):
            g.add_metric([str(st)], int(n))
        yield g

    def _sdk(self, s: Session, rt: Runtime) -> Iterable[Metric]:
        try:
            from codeblue.controls.clients.service import list_clients

            clients = list_clients(s, rt, limit=100_000)
        except Exception:  # the SDK clients domain is optional; /metrics must still answer
            log.exception("metrics: cannot list SDK clients")
            return
        by: dict[str, int] = {}
        streaming = 0
        for c in clients:
            by[str(c.get("status"))] = by.get(str(c.get("status")), 0) + 1
            if c.get("connected"):
                streaming += 1
        g = GaugeMetricFamily("codeblue_sdk_clients", "SDK Guards by status.", labels=["status"])
        for st, n in sorted(by.items()):
            g.add_metric([st], n)
        yield g
        yield GaugeMetricFamily("codeblue_sdk_stream_clients", "SDK Guards connected to the controls stream.",
                                value=streaming)

    def _indicators(self, rt: Runtime) -> Iterable[Metric]:
        pipe = rt.extras.get("signals.pipeline")
        if pipe is None or not hasattr(pipe, "indicator_snapshot"):
            return
        value = GaugeMetricFamily("codeblue_indicator_value", "Indicator value over the last 5 minutes "
                                  "(rates as fractions, p95 in their unit).", labels=["workflow", "indicator"])
        base = GaugeMetricFamily("codeblue_indicator_baseline", "The indicator's learned baseline.",
                                 labels=["workflow", "indicator"])
        firing = GaugeMetricFamily("codeblue_indicator_firing", "1 when the indicator's detector is firing.",
                                   labels=["workflow", "indicator"])
        for wf in sorted(list(getattr(pipe, "workflows", {}) or {})):
            try:
                snap = pipe.indicator_snapshot(wf)
            except Exception:
                log.exception("metrics: indicator snapshot of %s failed", wf)
                continue
            for ind, v in ((snap.get("series") or {}).get("*") or {}).items():
                if v.get("rate") is not None:
                    value.add_metric([wf, ind], float(v["rate"]))
                if v.get("baseline") is not None:
                    base.add_metric([wf, ind], float(v["baseline"]))
                firing.add_metric([wf, ind], 1.0 if v.get("firing") else 0.0)
        yield value
        yield base
        yield firing
