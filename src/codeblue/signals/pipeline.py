"""The detection pipeline: events → bucketed counters → baselines and tests → grouped alerts with triage.

One class, used identically by the server (a job ticks it on the server clock) and by `codeblue replay`
(ticked in stream time). Stages, each a small function: accumulate (per batch, per bucket and breakdown
key), flush (into the rings of the workflow and each breakdown), close (fold finished buckets into the
baselines), evaluate (tests per series × indicator, plus objectives), group (same workflow + failure type
→ one incident), triage (onset, harm, severity, suspects), resolve (after a quiet period).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from itertools import compress, count
from typing import Any

import numpy as np

from codeblue.errors import Invalid
from codeblue.signals import kernels
from codeblue.signals.clusters import ClusterSignal, ComplaintClusterer
from codeblue.signals.decode import WireEvent
from codeblue.signals.detect import (
    DetectConfig,
    Finding,
    baseline_rate,
    close_block,
    onset_search,
    still_elevated,
    test_block,
)
from codeblue.signals.events import KINDS, Event, EventError, parse_event, parse_time
from codeblue.signals.indicators import (
    BIT_COMPL,
    BIT_ERR,
    BIT_GFAIL,
    BIT_LAT,
    BIT_RAGE,
    BIT_REF,
    BIT_TOOL,
    BIT_WRONG,
    C_LATN,
    C_LATX,
    C_RSET,
    C_RX,
    INDEX,
    INDICATORS,
    NC,
    percent,
)
from codeblue.signals.objectives import Objectives
from codeblue.signals.triage import Harm, Triage, rank_suspects, refine_failure_type, severity_for, worst
from codeblue.signals.windows import (
    COARSE_N,
    COARSE_PER_FINE,
    COARSE_S,
    FINE_N,
    FINE_S,
    Block,
    DecayingHistogram,
    IntArray,
    Series,
    SeriesStore,
    WorkflowState,
    fine_bucket,
    hist_bins,
    scatter_add,
)

_KINDS = frozenset(KINDS)
#: Samples binned per call when the percentile histograms are folded.
_FOLD_GROUP = 4096
_NUMS = (int, float)


@dataclass
class Alert:
    """One series × indicator that fired: what, where, how surprising, since when."""

    workflow: str
    indicator: str
    failure_type: str
    breakdown: str
    evidence: str
    onset: float
    fired_at: float
    method: str
    pvalue: float
    stats: dict[str, float]
    severity: str | None = None
    cluster: dict[str, Any] | None = None  # complaint_cluster alerts: the ClusterSignal (terms, representatives)

    def as_dict(self) -> dict[str, Any]:
        d = {"workflow": self.workflow, "indicator": self.indicator, "failure_type": self.failure_type,
             "breakdown": self.breakdown, "evidence": self.evidence, "onset": self.onset,
             "fired_at": self.fired_at, "method": self.method, "pvalue": self.pvalue, "stats": self.stats}
        if self.cluster is not None:
            d["cluster"] = self.cluster
        return d


@dataclass
class AlertUpdate:
    """What `tick` reports: an incident to open, evidence to append, a triage update, or a resolution."""

    kind: str  # "opened" | "evidence" | "updated" | "resolved"
    group: int
    workflow: str
    failure_type: str
    at: float
    alert: Alert
    triage: Triage
    text: str

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "group": self.group, "workflow": self.workflow, "failure_type": self.failure_type,
                "at": self.at, "alert": self.alert.as_dict(), "triage": self.triage.as_dict(), "text": self.text}


@dataclass
class Group:
    """Alerts of one workflow and failure type: one incident."""

    id: int
    workflow: str
    failure_type: str
    opened_at: float
    onset: float
    primary: int  # indicator index of the first alert
    base_type: str  # the failure type the group is keyed by (from its first indicator)
    alerts: list[Alert] = field(default_factory=list)
    members: dict[tuple[str, int], float] = field(default_factory=dict)
    subjects: set[str] = field(default_factory=set)
    seen_bad: int = 0
    requests_closed: int = 0
    counted_b: int = -1
    last_requests: int = 0
    last_elevated: float = 0.0
    resolved_at: float | None = None
    forced: str | None = None
    triage: Triage | None = None
    last_suspects_at: float = 0.0
    incident_id: int | None = None
    clusters: dict[str, dict[str, Any]] = field(default_factory=dict)  # complaint clusters seen, by cluster id

    @property
    def indicators(self) -> list[int]:
        return sorted({i for (_k, i) in self.members})

    @property
    def bits(self) -> int:
        b = 0
        for i in self.indicators:
            b |= INDICATORS[i].bit
        return b


def breakdown_label(key: str) -> str:
    if key == "*":
        return "the whole workflow"
    kind, _, rest = key.partition(":")
    if kind == "v":
        cfg, _, ver = rest.rpartition("=")
        return f"{cfg} {ver}"
    return f"{'segment' if kind == 's' else 'fallback'} {rest}"


#: Indicator a complaint cluster alert counts its harm with (complaints), and its name and member-key prefix.
CLUSTER_INDICATOR = "complaint_cluster"
_I_COMPL = INDEX["complaint_rate"]
_CLUSTER_KEY = "c:"


def _clock(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%H:%M:%S")


#: A route: the workflow, the first block its series are in and their rows there, then any other blocks and rows.
_Route = tuple[WorkflowState, Block, tuple[int, ...], tuple[tuple[Block, tuple[int, ...]], ...]]


class _Acc:
    """Counts of one (bucket, workflow, versions, segment, fallback) within a batch."""

    __slots__ = ("bad", "c", "lat", "lat_subj", "rage", "rage_subj")

    def __init__(self) -> None:
        self.c = [0] * NC
        self.lat: list[float] = []
        self.lat_subj: list[str | None] = []
        self.rage: list[float] = []
        self.rage_subj: list[str | None] = []
        self.bad: list[tuple[float, str | None, int]] = []


def _valid_key(wf: Any, vk: tuple[tuple[Any, Any], ...], seg: Any, fb: Any) -> bool:
    if type(wf) is not str or not wf:
        return False
    if seg is not None and type(seg) is not str:
        return False
    if fb is not None and type(fb) is not str:
        return False
    return all(type(k) is str and "/" in k and type(v) is str for k, v in vk)


class Pipeline:
    """The in-memory detection engine. Thread-safe: intake feeds while the detector job ticks."""

    def __init__(self, config: DetectConfig | None = None, objectives: Objectives | None = None) -> None:
        self.objectives = objectives or Objectives()
        self._base_cfg = replace(config) if config is not None else DetectConfig()
        cfg = self.cfg = self._configured(self.objectives)
        self.workflows: dict[str, WorkflowState] = {}
        self._by_no: list[WorkflowState] = []
        self.store = SeriesStore()
        self.wf_m = np.zeros(64, dtype=np.int64)
        self._ratios = cfg.ratios()
        self.changes: list[dict[str, Any]] = []
        self.groups: dict[tuple[str, str], Group] = {}
        self.recent: dict[tuple[str, str], Group] = {}
        self.history: list[Group] = []
        self.events = 0
        self.now = -math.inf
        self._routes: dict[tuple[str, tuple[tuple[str, str], ...], str | None, str | None], _Route] = {}
        self._acc: dict[tuple[int, str, tuple[tuple[str, str], ...], str | None, str | None], _Acc] = {}
        self._lock = threading.RLock()
        self._gid = 0
        self._ticks = 0
        # Complaint texts wait here (workflow, text, time) until the next tick clusters them. A theme is tested
        # every tick it grows, on every workflow: the same strict budget as the detector's tests (and ≥ 8
        # complaints in the 15-minute window), and it must grow against the workflow's other complaints too.
        self.clusterer = ComplaintClusterer(relative=True, p_threshold=cfg.cluster_alpha,
                                            min_count=cfg.cluster_min_count, horizon=cfg.cluster_horizon_s)
        self._complaints: list[tuple[str, str, float]] = []

    # ------------------------------------------------------------------ intake

    def feed(self, events: Iterable[Event | Mapping[str, Any]]) -> int:
        """Count a batch of events (Event objects or Event v1 dicts). Returns how many were counted; a dict
        that is not valid Event v1 raises `EventError` after the valid ones before it were counted."""
        n = 0
        add = self._add_dict
        with self._lock:
            for i, ev in enumerate(events):
                if type(ev) is dict:
                    add(ev, i)
                elif isinstance(ev, Event):
                    self._add_event(ev)
                else:
                    add(ev, i)
                n += 1
        return n

    def feed_dicts(self, objs: list[Any], first_index: int = 0) -> list[EventError]:
        """Count decoded JSON objects, validating the fields detection reads; returns the rejected ones."""
        errors: list[EventError] = []
        with self._lock:
            for i, o in enumerate(objs):
                try:
                    self._add_dict(o, first_index + i)
                except EventError as exc:
                    errors.append(exc)
        return errors

    def feed_valid(self, events: list[dict[str, Any]]) -> int:
        """Count Event v1 dicts that `parse_event_dict` produced (intake's stored events): the same counts as
        `feed`, without re-checking types the parser already checked. Returns how many were counted."""
        with self._lock:
            accs = self._acc
            complaints = self._complaints
            for o in events:
                get = o.get
                t = o["time"]
                v = get("versions")
                akey = (int(t // FINE_S), o["workflow"], tuple(v.items()) if v else (), get("segment"),
                        get("fallback"))
                acc = accs.get(akey)
                if acc is None:
                    acc = accs[akey] = _Acc()
                c = acc.c
                bits = 0
                kind = o["kind"]
                if kind == "response":
                    c[0] += 1
                    st = get("status")
                    if st is not None and st >= 500:
                        c[1] += 1
                        bits = BIT_ERR
                    else:
                        c[2] += 1
                        if get("refusal"):
                            c[3] += 1
                            bits = BIT_REF
                    g = get("grounded")
                    if g is not None:
                        c[4] += 1
                        if not g:
                            c[5] += 1
                            bits |= BIT_GFAIL
                    lat = get("latency_ms")
                    if lat is not None:
                        acc.lat.append(lat)
                        acc.lat_subj.append(get("subject"))
                    ra = get("retrieval_age_s")
                    if ra is not None:
                        acc.rage.append(ra)
                        acc.rage_subj.append(get("subject"))
                elif kind == "tool_call":
                    c[6] += 1
                    if get("args_valid") is False:
                        c[7] += 1
                        bits = BIT_TOOL
                elif kind == "action":
                    c[8] += 1
                    target = get("target")
                    if target and target != get("subject") and not ((at := get("authorized_targets")) and target in at):
                        c[9] += 1
                        bits = BIT_WRONG
                else:
                    text = get("text")
                    if text:
                        complaints.append((o["workflow"], text, t))
                    c[10] += 1
                    bits = BIT_COMPL
                if bits:
                    acc.bad.append((t, get("subject"), bits))
            self.events += len(events)
        return len(events)

    def _add_dict(self, o: Any, index: int) -> None:
        """The schema-aware fast path: read only what detection needs, with type checks; anything unusual
        goes through the full Event v1 parser (which names the field when it rejects)."""
        if type(o) is not dict:
            raise EventError(index, "", f"expected a JSON object, got {type(o).__name__}")
        get = o.get
        t: Any = get("time")
        kind = get("kind")
        v = get("versions")
        tt = type(t)
        if (tt is not float and tt is not int) or t > 1e11 or type(kind) is not str or kind not in _KINDS or \
                (v is not None and type(v) is not dict):
            self._add_event(parse_event(o, index))
            return
        akey: Any = (int(t // FINE_S), get("workflow"), tuple(v.items()) if v else (), get("segment"),
                     get("fallback"))
        acc = self._acc.get(akey)
        if acc is None:
            _b, wf, vk, seg, fb = akey
            if (wf, vk, seg, fb) not in self._routes and not _valid_key(wf, vk, seg, fb):
                self._add_event(parse_event(o, index))
                return
            acc = self._acc[akey] = _Acc()
        subject = get("subject")
        if subject is not None and type(subject) is not str:
            self._add_event(parse_event(o, index))
            return
        c = acc.c
        bits = 0
        if kind == "response":
            st = get("status")
            ref = get("refusal")
            g = get("grounded")
            lat = get("latency_ms")
            ra = get("retrieval_age_s")
            if (st is not None and type(st) is not int) or (ref is not None and type(ref) is not bool) or \
                    (g is not None and type(g) is not bool) or (lat is not None and (type(lat) not in _NUMS or lat < 0)) \
                    or (ra is not None and (type(ra) not in _NUMS or ra < 0)):
                self._add_event(parse_event(o, index))
                return
            c[0] += 1
            if st is not None and st >= 500:
                c[1] += 1
                bits = BIT_ERR
            else:
                c[2] += 1
                if ref:
                    c[3] += 1
                    bits = BIT_REF
            if g is not None:
                c[4] += 1
                if not g:
                    c[5] += 1
                    bits |= BIT_GFAIL
            if lat is not None:
                acc.lat.append(lat)
                acc.lat_subj.append(subject)
            if ra is not None:
                acc.rage.append(ra)
                acc.rage_subj.append(subject)
        elif kind == "tool_call":
            av = get("args_valid")
            if av is not None and type(av) is not bool:
                self._add_event(parse_event(o, index))
                return
            c[6] += 1
            if av is False:
                c[7] += 1
                bits = BIT_TOOL
        elif kind == "action":
            target = get("target")
            at = get("authorized_targets")
            if (target is not None and type(target) is not str) or (at is not None and type(at) is not list):
                self._add_event(parse_event(o, index))
                return
            c[8] += 1
            if target and target != subject and not (at and target in at):
                c[9] += 1
                bits = BIT_WRONG
        else:
            if kind == "complaint":
                text = get("text")
                if text is not None:
                    if type(text) is not str:
                        self._add_event(parse_event(o, index))
                        return
                    if text:
                        self._complaints.append((str(akey[1]), text, t))
            c[10] += 1
            bits = BIT_COMPL
        if bits:
            acc.bad.append((t, subject, bits))
        self.events += 1

    def _add_wire(self, e: WireEvent | Event, vk: tuple[tuple[str, str], ...]) -> None:
        """Count one valid Event v1 — a struct the decoder accepted (`decode.decode_event`) or a parsed `Event`
        — with its normalised versions key: what `_add_dict` does, read from attributes."""
        t = e.time
        akey = (int(t // FINE_S), e.workflow, vk, e.segment, e.fallback)
        acc = self._acc.get(akey)
        if acc is None:
            acc = self._acc[akey] = _Acc()
        c = acc.c
        bits = 0
        kind = e.kind
        if kind == "response":
            c[0] += 1
            st = e.status
            if st is not None and st >= 500:
                c[1] += 1
                bits = BIT_ERR
            else:
                c[2] += 1
                if e.refusal:
                    c[3] += 1
                    bits = BIT_REF
            g = e.grounded
            if g is not None:
                c[4] += 1
                if not g:
                    c[5] += 1
                    bits |= BIT_GFAIL
            lat = e.latency_ms
            if lat is not None:
                acc.lat.append(lat)
                acc.lat_subj.append(e.subject)
            ra = e.retrieval_age_s
            if ra is not None:
                acc.rage.append(ra)
                acc.rage_subj.append(e.subject)
        elif kind == "tool_call":
            c[6] += 1
            if e.args_valid is False:
                c[7] += 1
                bits = BIT_TOOL
        elif kind == "action":
            c[8] += 1
            target = e.target
            if target and target != e.subject and not ((at := e.authorized_targets) and target in at):
                c[9] += 1
                bits = BIT_WRONG
        else:
            text = e.text
            if text:
                self._complaints.append((e.workflow, text, t))
            c[10] += 1
            bits = BIT_COMPL
        if bits:
            acc.bad.append((t, e.subject, bits))
        self.events += 1

    def _add_event(self, ev: Event) -> None:
        vk = tuple(ev.versions.items())
        if (ev.workflow, vk, ev.segment, ev.fallback) not in self._routes and \
                not _valid_key(ev.workflow, vk, ev.segment, ev.fallback):
            # parse_event already validated; only an empty workflow could get here
            raise EventError(0, "workflow", "required: a non-empty string")
        self._add_wire(ev, vk)  # an Event has the struct's fields, with the same meanings

    def complaint(self, *, workflow: str, time: float, subject: str | None = None, text: str | None = None) -> None:
        """Count a user report (the `incident.user_report` hook) as a complaint event."""
        self.feed([Event(time=time, workflow=workflow, kind="complaint", subject=subject, text=text)])

    def add_change(self, change: Mapping[str, Any]) -> dict[str, Any]:
        """Remember a Change v1 record as a suspect candidate. Raises `Invalid` naming the field."""
        c = dict(change)
        try:
            c["time"] = parse_time(c.get("time"))
        except EventError as exc:
            raise Invalid(f"change: {exc.reason}", field="time") from None
        for f in ("kind", "name"):
            if not isinstance(c.get(f), str) or not c[f]:
                raise Invalid(f"change: {f} is required (a non-empty string)", field=f)
        if c.get("to") is None:
            raise Invalid("change: to is required (the version now served)", field="to")
        wfs = c.get("workflows")
        if wfs is not None and (not isinstance(wfs, list) or not all(isinstance(w, str) for w in wfs)):
            raise Invalid("change: workflows must be a list of workflow names", field="workflows")
        frac = c.get("fraction", 1.0)
        if frac is None:
            frac = 1.0
        if isinstance(frac, bool) or not isinstance(frac, (int, float)) or not 0 <= frac <= 1:
            raise Invalid("change: fraction must be a number between 0 and 1", field="fraction")
        c["fraction"] = float(frac)
        with self._lock:
            if c.get("id") is not None and any(x.get("id") == c["id"] for x in self.changes[-200:]):
                return c
            self.changes.append(c)
            self.changes.sort(key=lambda x: x["time"])
            cutoff = self.now - 2 * 86400.0
            if len(self.changes) > 5000 or (self.changes and self.changes[0]["time"] < cutoff):
                self.changes = [x for x in self.changes if x["time"] >= cutoff][-5000:]
        return c

    # ------------------------------------------------------------------ flush / close

    def _closed_to(self) -> int:
        return fine_bucket(self.now - self.cfg.lateness_s) - 1 if self.now > -math.inf else -1

    def _workflow(self, name: str, t: float) -> WorkflowState:
        ws = self.workflows.get(name)
        if ws is None:
            no = len(self._by_no)
            if no >= self.wf_m.size:
                self.wf_m = np.concatenate([self.wf_m, np.zeros(self.wf_m.size, dtype=np.int64)])
            b = fine_bucket(t)
            testable_b = fine_bucket(t + self.cfg.warmup_s)
            s = self.store.new("*", no, b, testable_b, self._closed_to())
            ws = self.workflows[name] = WorkflowState(name, no, t, s, testable_b)
            self._by_no.append(ws)
            self.wf_m[no] = 1
        return ws

    def _breakdown(self, ws: WorkflowState, key: str, b: int) -> Series | None:
        s = ws.breakdowns.get(key)
        if s is None:
            if len(ws.breakdowns) >= self.cfg.max_breakdowns:
                return None
            s = ws.breakdowns[key] = self.store.new(key, ws.no, b, ws.testable_b, self._closed_to())
            s.inherit(ws.all, self.cfg.inherit_weight, b + int(self.cfg.probation_s / FINE_S))
            self.wf_m[ws.no] = 1 + len(ws.breakdowns)
        return s

    def _route(self, wf: str, vk: tuple[tuple[str, str], ...], seg: str | None, fb: str | None,
               b: int) -> _Route:
        """The workflow and the series (workflow-wide plus each breakdown) one accumulator key feeds, as their
        rows grouped by block (in series order within a block): (workflow, first block, its rows, the other
        blocks and their rows)."""
        key = (wf, vk, seg, fb)
        hit = self._routes.get(key)
        if hit is not None:
            return hit
        ws = self._workflow(wf, b * FINE_S)
        series = [ws.all]
        keys = [f"v:{k}={v}" for k, v in vk]
        if seg is not None:
            keys.append(f"s:{seg}")
        if fb is not None:
            keys.append(f"f:{fb}")
        for k in keys:
            s = self._breakdown(ws, k, b)
            if s is not None:
                series.append(s)
        rows: dict[int, tuple[Block, list[int]]] = {}
        for s in series:
            rows.setdefault(id(s.block), (s.block, []))[1].append(s.row)
        groups = [(blk, tuple(rr)) for blk, rr in rows.values()]
        hit = self._routes[key] = (ws, groups[0][0], groups[0][1], tuple(groups[1:]))
        return hit

    def _flush(self) -> None:
        """Move the batch accumulators into the rings: one vectorised scatter-add per block."""
        acc, self._acc = self._acc, {}
        if not acc:
            return
        kern = kernels.line_path()  # (the compiled kernels, set up for `flush`, or None)
        if kern is not None:  # `_flush_accs`, compiled
            counts, targets, lat_by_ws, rage_by_ws = kern.flush(
                acc, self._routes, self._route, FINE_S, (C_LATX, C_LATN, C_RX, C_RSET), BIT_LAT, BIT_RAGE)
        else:
            counts, targets, lat_by_ws, rage_by_ws = self._flush_accs(acc)
        if kern is not None:  # windows.scatter_add, compiled: straight from these lists
            for blk, rows, bs, ks in targets.values():
                kern.scatter(blk.fine, blk.fine_ids, blk.coarse, blk.coarse_ids, blk.last_b, blk.cap, COARSE_N,
                          COARSE_PER_FINE, rows, bs, ks, counts)
        else:
            mat = np.array(counts, dtype=np.int32)
            for blk, rows, bs, ks in targets.values():
                scatter_add(blk, np.array(rows, dtype=np.int64), np.array(bs, dtype=np.int64), mat[ks])
        for ws, vals, b in lat_by_ws.values():
            ws.lat_pending.extend(vals)
            ws.pending_b = max(ws.pending_b, b)
        for ws, vals, b in rage_by_ws.values():
            ws.rage_pending.extend(vals)
            ws.pending_b = max(ws.pending_b, b)

    def _flush_accs(self, acc: dict[tuple[int, str, tuple[tuple[str, str], ...], str | None, str | None], _Acc]
                    ) -> tuple[list[list[int]], dict[int, tuple[Block, list[int], list[int], list[int]]],
                               dict[int, tuple[WorkflowState, list[float], int]],
                               dict[int, tuple[WorkflowState, list[float], int]]]:
        """The accumulators' counts, bad events and samples handed to their workflows: (count vectors, per block
        the rows / buckets / count indices to scatter, per workflow the latency and retrieval-age samples to
        fold). The compiled `flush` kernel is this loop in C."""
        counts: list[list[int]] = []
        targets: dict[int, tuple[Block, list[int], list[int], list[int]]] = {}
        lat_by_ws: dict[int, tuple[WorkflowState, list[float], int]] = {}
        rage_by_ws: dict[int, tuple[WorkflowState, list[float], int]] = {}
        for (b, wf, vk, seg, fb), a in acc.items():
            ws, blk0, rows0, more = self._route(wf, vk, seg, fb, b)
            c = a.c
            bucket_t = b * FINE_S
            if a.lat:
                thr = ws.lat_thr
                over = [] if thr == math.inf else list(compress(count(), map(thr.__lt__, a.lat)))  # x > thr
                c[C_LATX] = len(over)
                if thr != math.inf:  # no learned p95 yet: the sample is not judged (nor learned as "fine")
                    c[C_LATN] = len(a.lat)
                for j in over:
                    ws.bad.append((bucket_t, a.lat_subj[j], BIT_LAT))
                ws.bad_total += len(over)
                if not ws.all.block.hold[ws.all.row, 1]:
                    prev = lat_by_ws.get(ws.no)
                    if prev is None:
                        lat_by_ws[ws.no] = (ws, list(a.lat), b)
                    else:
                        prev[1].extend(a.lat)
                        lat_by_ws[ws.no] = (ws, prev[1], max(b, prev[2]))
            if a.rage:
                thr = ws.rage_thr
                over = [] if thr == math.inf else list(compress(count(), map(thr.__lt__, a.rage)))
                c[C_RX] = len(over)
                if thr != math.inf:
                    c[C_RSET] = len(a.rage)
                for j in over:
                    ws.bad.append((bucket_t, a.rage_subj[j], BIT_RAGE))
                ws.bad_total += len(over)
                if not ws.all.block.hold[ws.all.row, 7]:
                    prev = rage_by_ws.get(ws.no)
                    if prev is None:
                        rage_by_ws[ws.no] = (ws, list(a.rage), b)
                    else:
                        prev[1].extend(a.rage)
                        rage_by_ws[ws.no] = (ws, prev[1], max(b, prev[2]))
            if a.bad:
                ws.bad.extend(a.bad)
                ws.bad_total += len(a.bad)
            if b > ws.last_b:
                ws.last_b = b
            k = len(counts)
            counts.append(c)
            for blk, rr in ((blk0, rows0), *more):
                t = targets.get(id(blk))
                if t is None:
                    t = targets[id(blk)] = (blk, [], [], [])
                t[1].extend(rr)
                t[2].extend([b] * len(rr))
                t[3].extend([k] * len(rr))
        return counts, targets, lat_by_ws, rage_by_ws

    def _fold_histograms(self) -> None:
        """Fold the latency and retrieval-age samples of the last minute into the percentile histograms."""
        # Many histograms' samples binned in one vectorised call, then counted per histogram; in groups of
        # about _FOLD_GROUP samples, so that a large state's temporaries stay small.
        values: list[float] = []
        parts: list[tuple[DecayingHistogram, int, int]] = []
        for ws in self._by_no:
            if ws.lat_pending:
                parts.append((ws.lat_hist, len(values), ws.pending_b))
                values.extend(ws.lat_pending)
                ws.lat_pending = []
            if ws.rage_pending:
                parts.append((ws.rage_hist, len(values), ws.pending_b))
                values.extend(ws.rage_pending)
                ws.rage_pending = []
            if len(values) >= _FOLD_GROUP:
                self._fold_group(values, parts)
                values, parts = [], []
        if parts:
            self._fold_group(values, parts)

    def _fold_group(self, values: list[float], parts: list[tuple[DecayingHistogram, int, int]]) -> None:
        bins = hist_bins(np.asarray(values, dtype=np.float64))
        ends = [start for _h, start, _b in parts[1:]] + [len(values)]
        for (hist, start, b), end in zip(parts, ends, strict=True):
            hist.add_bins(bins[start:end], b, self.cfg.decay)

    def _window(self, s: Series, rec: IntArray, window_s: float, eval_b: int) -> IntArray:
        k = max(1, math.ceil(window_s / FINE_S))
        if k <= FINE_N:
            return rec[:k].sum(axis=0)  # type: ignore[no-any-return]
        return s.rings.sum_since(eval_b * FINE_S - window_s + FINE_S, eval_b)

    def _objective_findings(self, ws: WorkflowState, rec: IntArray, eval_b: int) -> list[Finding]:
        out: list[Finding] = []
        for lim in self.objectives.limits_for(ws.name):
            i = next(j for j, ind in enumerate(INDICATORS) if ind.name == lim.indicator)
            ind = INDICATORS[i]
            tot = self._window(ws.all, rec, lim.window_s, eval_b)
            x, n = int(tot[ind.num]), int(tot[ind.den])
            hit = (lim.max_count is not None and x > lim.max_count) or (
                lim.max_rate is not None and n >= lim.min_requests and x > lim.max_rate * n)
            if hit:
                bound = f"max {lim.max_count}" if lim.max_count is not None else f"max {percent(lim.max_rate or 0)}"
                out.append(Finding("*", i, 0.0, f"limit ({bound} per {lim.window_s:.0f}s)", lim.window_s, x, n,
                                   baseline_rate(ws.all, i)[0], lim.severity))
        for slo in self.objectives.slos_for(ws.name):
            i = next(j for j, ind in enumerate(INDICATORS) if ind.name == slo.indicator)
            ind = INDICATORS[i]
            budget = 1.0 - slo.objective
            rates = []
            for w in (slo.long_s, slo.short_s):
                tot = self._window(ws.all, rec, w, eval_b)
                x, n = int(tot[ind.num]), int(tot[ind.den])
                rates.append((x, n))
            if all(n >= 20 and x / n >= slo.burn_rate * budget for x, n in rates):
                x, n = rates[1]
                out.append(Finding("*", i, 0.0, f"SLO burn rate ≥ {slo.burn_rate:g}× over {slo.long_s:.0f}s and "
                                   f"{slo.short_s:.0f}s (objective {percent(slo.objective)})", slo.short_s, x, n,
                                   budget, slo.severity))
        return out

    # ------------------------------------------------------------------ tick

    def _configured(self, objectives: Objectives) -> DetectConfig:
        """The detector settings: the base config with the objectives file's `detector` options."""
        cfg = replace(self._base_cfg)
        det = objectives.detector
        if "quiet_period" in det:
            cfg.quiet_s = det["quiet_period"]
        if "group_window" in det:
            cfg.group_window_s = det["group_window"]
        if "warmup" in det:
            cfg.warmup_s = det["warmup"]
        if "alpha" in det:
            cfg.alpha = det["alpha"]
        return cfg

    def set_objectives(self, objectives: Objectives) -> None:
        """Put a new objectives file in force (a reload): limits, SLO rules and the severity matrix from the
        next tick; detector options too (a new warm-up applies to workflows first seen from then on)."""
        with self._lock:
            self.cfg = self._configured(objectives)
            self.objectives = objectives

    def tick(self, now: float) -> list[AlertUpdate]:
        """Advance to `now`: flush, close finished buckets, test, group, triage, resolve."""
        with self._lock:
            if now > self.now:
                self.now = now
            now = self.now
            self._ticks += 1
            self._flush()
            if self._ticks % 6 == 0:
                self._fold_histograms()
            cfg = self.cfg
            close_to = fine_bucket(now - cfg.lateness_s) - 1
            eval_b = fine_bucket(now)
            per_wf: dict[int, list[Finding]] = {}
            for blk in self.store.blocks:
                close_block(blk, close_to, cfg)
                for wf_no, f in test_block(blk, eval_b, cfg, self.wf_m, self._ratios):
                    per_wf.setdefault(wf_no, []).append(f)
            clustered = self._cluster_signals(now)
            has_objectives = bool(self.objectives.limits or self.objectives.slos)
            open_wfs = {wf for (wf, _ft) in self.groups}
            updates: list[AlertUpdate] = []
            for ws in self._by_no:
                if ws.last_b <= eval_b - FINE_N and ws.name not in open_wfs:
                    continue
                if self._ticks % 6 == 0:
                    # percentile baselines move slowly: refresh the exceedance thresholds about once a minute
                    if ws.lat_hist.total >= 200:
                        ws.lat_thr = ws.lat_hist.quantile(0.95)
                    if ws.rage_hist.total >= 200:
                        ws.rage_thr = ws.rage_hist.quantile(0.95)
                findings = per_wf.get(ws.no, [])
                recs: dict[str, IntArray] = {}
                if findings or has_objectives:
                    recs["*"] = ws.all.rings.recent(eval_b)
                if has_objectives:
                    findings.extend(self._objective_findings(ws, recs["*"], eval_b))
                if findings:
                    findings = self._informative(findings, recs["*"])
                    findings.sort(key=lambda f: (f.pvalue, f.series != "*"))
                for f in findings:
                    upd = self._on_finding(ws, f, now, eval_b, close_to)
                    if upd is not None:
                        updates.append(upd)
                sigs = clustered.get(ws.name) if ws.testable_b <= eval_b else None
                for sig in sigs or ():
                    upd = self._on_cluster(ws, sig, now, eval_b, close_to)
                    if upd is not None:
                        updates.append(upd)
                if findings or sigs or (ws.name in open_wfs and self._ticks % 6 == 0):
                    for key in [k for k in self.groups if k[0] == ws.name]:
                        updates.extend(self._maintain(self.groups[key], ws, recs, now, eval_b, close_to))
            if self._ticks % 360 == 0:
                self._prune(eval_b)
            return updates

    def _informative(self, findings: list[Finding], rec_all: IntArray) -> list[Finding]:
        """Drop breakdown findings that carry the workflow's whole traffic (they repeat the workflow's test)."""
        out = []
        cums = np.add.accumulate(rec_all, axis=0)
        for f in findings:
            if f.series != "*":
                k = max(1, min(FINE_N, round(f.window_s / FINE_S)))
                if int(cums[k - 1][INDICATORS[f.indicator].den]) == f.n:
                    continue
            out.append(f)
        return out

    def _series(self, ws: WorkflowState, key: str) -> Series | None:
        return ws.all if key == "*" else ws.breakdowns.get(key)

    def _on_finding(self, ws: WorkflowState, f: Finding, now: float, eval_b: int, close_to: int) -> AlertUpdate | None:
        s = self._series(ws, f.series)
        if s is None:
            return None
        ind = INDICATORS[f.indicator]
        gkey = (ws.name, ind.failure_type)
        if ind.name == "complaint_rate":
            # Complaints are a symptom: they confirm an open incident on the workflow rather than open another.
            gkey = next((k for k in self.groups if k[0] == ws.name), gkey)
        member = (f.series, f.indicator)
        g = self.groups.get(gkey)
        if g is not None and member in g.members:
            return None
        g, kind = self._group_for(ws, gkey, f.indicator, now)
        s.firing[f.indicator] = True
        s.cusum[f.indicator] = 0.0
        onset = self._onset(ws, s, f, eval_b)
        alert = Alert(
            workflow=ws.name, indicator=ind.name, failure_type=ind.failure_type, breakdown=f.series,
            evidence=self._evidence_text(f), onset=onset, fired_at=now, method=f.method, pvalue=f.pvalue,
            stats={"bad": f.x, "total": f.n, "rate": f.x / f.n if f.n else 0.0, "baseline": f.baseline,
                   "window_s": f.window_s},
            severity=f.severity,
        )
        new_indicator = f.indicator not in g.indicators
        g.members[member] = now
        g.alerts.append(alert)
        g.last_elevated = now
        g.forced = worst(f.severity, g.forced) if f.severity else g.forced
        if kind == "opened" or onset < g.onset:
            g.onset = onset
        if kind == "opened" or new_indicator:
            self._recount(g, ws, close_to)
        triage = self._triage(g, ws, now, eval_b, suspects=True)
        text = self._update_text(kind, g, alert, triage)
        return AlertUpdate(kind, g.id, ws.name, g.failure_type, now, alert, triage, text)

    def _group_for(self, ws: WorkflowState, gkey: tuple[str, str], indicator: int, now: float) -> tuple[Group, str]:
        """The open group of `gkey` ("evidence"), a recently resolved one it re-joins, or a new one ("opened")."""
        g = self.groups.get(gkey)
        if g is not None:
            return g, "evidence"
        r = self.recent.get(gkey)
        if r is not None and r.resolved_at is not None and now - r.resolved_at <= self.cfg.group_window_s:
            r.resolved_at = None
            del self.recent[gkey]
            self.groups[gkey] = r
            return r, "evidence"
        self._gid += 1
        g = Group(id=self._gid, workflow=ws.name, failure_type=gkey[1], opened_at=now, onset=now,
                  primary=indicator, base_type=gkey[1])
        self.groups[gkey] = g
        self.history.append(g)
        if len(self.history) > 10000:
            self.history = self.history[-5000:]
        return g, "opened"

    def _cluster_signals(self, now: float) -> dict[str, list[ClusterSignal]]:
        """Cluster the complaint texts that arrived since the last tick; the themes bursting now, by workflow.
        Only workflows that got new complaints are tested, plus all of them (with pruning) every 60 ticks."""
        pending, self._complaints = self._complaints, []
        touched: set[str] = set()
        if pending:
            pending.sort(key=lambda x: x[2])
            for wf, text, t in pending:
                self.clusterer.add(wf, text, t)
                touched.add(wf)
        if self._ticks % 60 == 0:
            sigs = self.clusterer.signals(now)
        elif touched:
            sigs = self.clusterer.signals(now, touched)
        else:
            return {}
        out: dict[str, list[ClusterSignal]] = {}
        for sig in sigs:
            out.setdefault(sig.workflow, []).append(sig)
        return out

    def _on_cluster(self, ws: WorkflowState, sig: ClusterSignal, now: float, eval_b: int,
                    close_to: int) -> AlertUpdate | None:
        """A complaint theme bursting: an alert of its own kind, grouped like a complaint-rate finding."""
        i = _I_COMPL
        # Complaints are a symptom: a theme confirms an open incident of the workflow rather than open another.
        gkey = next((k for k in self.groups if k[0] == ws.name), (ws.name, INDICATORS[i].failure_type))
        member = (_CLUSTER_KEY + sig.cluster_id, i)
        info = sig.as_dict()
        g = self.groups.get(gkey)
        if g is not None and member in g.members:
            g.clusters[sig.cluster_id] = info  # the latest counts and representatives
            return None
        g, kind = self._group_for(ws, gkey, i, now)
        onset = max(sig.burst_start, ws.first_t)
        total = round(sig.count_recent / sig.share) if sig.share else sig.count_recent
        alert = Alert(
            workflow=ws.name, indicator=CLUSTER_INDICATOR, failure_type=INDICATORS[i].failure_type, breakdown="*",
            evidence=self._cluster_evidence(sig), onset=onset, fired_at=now, method="complaint cluster",
            pvalue=sig.p_value,
            stats={"bad": sig.count_recent, "total": total, "rate": sig.share if sig.share is not None else 0.0,
                   "baseline": sig.baseline_rate, "window_s": sig.window_s},
            cluster=info,
        )
        new_indicator = i not in g.indicators
        g.members[member] = now
        g.clusters[sig.cluster_id] = info
        g.alerts.append(alert)
        g.last_elevated = now
        if kind == "opened" or onset < g.onset:
            g.onset = onset
        if kind == "opened" or new_indicator:
            self._recount(g, ws, close_to)
        triage = self._triage(g, ws, now, eval_b, suspects=True)
        text = self._update_text(kind, g, alert, triage)
        return AlertUpdate(kind, g.id, ws.name, g.failure_type, now, alert, triage, text)

    @staticmethod
    def _cluster_evidence(sig: ClusterSignal) -> str:
        terms = ", ".join(t.replace("_", " ") for t in sig.terms[:4])
        share = ""
        if sig.share is not None and sig.baseline_share is not None:
            share = f"; {percent(sig.share)} of the workflow's complaints vs {percent(sig.baseline_share)} before"
        example = f'; e.g. "{sig.representatives[0]}"' if sig.representatives else ""
        return (f"complaint cluster [{terms}]: {sig.count_recent} complaints in {sig.window_s / 60:.0f} min vs "
                f"{sig.baseline_rate:.2f} expected from its baseline{share}; p={sig.p_value:.1e}{example}")

    def _onset(self, ws: WorkflowState, s: Series, f: Finding, eval_b: int) -> float:
        p0 = f.baseline
        p1 = f.x / f.n if f.n else p0 * 2
        rows = s.rings.recent(eval_b)
        end_t = (eval_b + 1) * FINE_S
        onset, k = onset_search(rows, FINE_S, end_t, f.indicator, p0, p1)
        if k >= FINE_N - 1:
            cb = eval_b // COARSE_PER_FINE
            crow = s.rings.recent_coarse(cb)
            onset, _ = onset_search(crow, COARSE_S, (cb + 1) * COARSE_S, f.indicator, p0, p1)
        return max(onset, ws.first_t)

    def _evidence_text(self, f: Finding) -> str:
        ind = INDICATORS[f.indicator]
        rate = f.x / f.n if f.n else 0.0
        what = f"{ind.name} {percent(rate)} ({f.x} {ind.label} of {f.n}"
        if ind.percentile:
            what = f"{ind.name}: {percent(rate)} above the baseline p95 ({f.x} of {f.n}"
        where = breakdown_label(f.series)
        if f.method.startswith("limit") or f.method.startswith("SLO"):
            return f"{what} in {f.window_s:.0f}s) on {where}; {f.method}"
        return f"{what} in {f.window_s:.0f}s) on {where} vs baseline {percent(f.baseline)}; {f.method}, p={f.pvalue:.1e}"

    def _recount(self, g: Group, ws: WorkflowState, close_to: int) -> None:
        tot = ws.all.rings.sum_since(g.onset, close_to)
        g.requests_closed = int(sum(int(tot[INDICATORS[i].num]) for i in g.indicators))
        g.counted_b = close_to
        g.subjects = {subj for (t, subj, b) in ws.bad if t >= g.onset - FINE_S and b & g.bits and subj is not None}
        g.seen_bad = ws.bad_total

    def _harm(self, g: Group, ws: WorkflowState, eval_b: int, close_to: int) -> Harm:
        if close_to > g.counted_b:
            rec = ws.all.rings.recent(close_to)
            span = min(close_to - g.counted_b, FINE_N)
            part = rec[:span].sum(axis=0)
            g.requests_closed += int(sum(int(part[INDICATORS[i].num]) for i in g.indicators))
            g.counted_b = close_to
        new = ws.bad_total - g.seen_bad
        if new > 0:
            bits = g.bits
            tail = list(ws.bad)[-min(new, len(ws.bad)):]
            for t, subj, b in tail:
                if b & bits and subj is not None and t >= g.onset - FINE_S:
                    g.subjects.add(subj)
            g.seen_bad = ws.bad_total
        partial = 0
        if eval_b > close_to:
            rec = ws.all.rings.recent(eval_b)[: eval_b - close_to].sum(axis=0)
            partial = int(sum(int(rec[INDICATORS[i].num]) for i in g.indicators))
        requests = g.requests_closed + partial
        growing = requests > g.last_requests and g.resolved_at is None
        g.last_requests = requests
        return Harm(requests=requests, subjects=len(g.subjects), workflows=[ws.name], started_at=g.onset,
                    growing=growing)

    def _triage(self, g: Group, ws: WorkflowState, now: float, eval_b: int, *, suspects: bool) -> Triage:
        close_to = fine_bucket(now - self.cfg.lateness_s) - 1
        harm = self._harm(g, ws, eval_b, close_to)
        if suspects or g.triage is None:
            sus = rank_suspects(self.changes, ws, i=g.primary, failure_type=g.base_type, onset=g.onset, now=now)
            g.last_suspects_at = now
        else:
            sus = g.triage.suspects
        sev = worst(severity_for(refine_failure_type(g.base_type, INDICATORS[g.primary].name, sus), harm,
                                 self.objectives.severity), g.forced)
        first = g.alerts[0]
        g.failure_type = refine_failure_type(g.base_type, INDICATORS[g.primary].name, sus)
        t = Triage(failure_type=g.failure_type, severity=sev, harm=harm, suspects=sus, workflows=[ws.name],
                   indicator=first.indicator, breakdown=first.breakdown, onset=g.onset,
                   complaint_clusters=list(g.clusters.values()))
        g.triage = t
        return t

    def _update_text(self, kind: str, g: Group, alert: Alert, t: Triage) -> str:
        head = {"opened": "Detector opened this incident", "evidence": "New evidence",
                "updated": "Triage updated", "resolved": "Signals back to baseline"}[kind]
        top = ""
        if t.suspects:
            s0 = t.suspects[0]
            top = f"; top suspect {s0.kind}/{s0.name} {s0.version} (score {s0.score:.2f})"
        harm = t.harm
        return (f"{head}: {alert.evidence}. Triage: {t.failure_type}, {t.severity}; {harm.requests} harmful "
                f"requests, {harm.subjects} subjects since {_clock(harm.started_at)} UTC"
                f"{' and growing' if harm.growing else ''}{top}.")

    def _maintain(
        self, g: Group, ws: WorkflowState, recs: dict[str, IntArray], now: float, eval_b: int, close_to: int
    ) -> list[AlertUpdate]:
        elevated = False
        live: set[str] | None = None
        for key, i in list(g.members):
            if key.startswith(_CLUSTER_KEY):
                if live is None:
                    sigs = self.clusterer.signals(now, [ws.name])
                    live = {sig.cluster_id for sig in sigs}
                    for sig in sigs:
                        if sig.cluster_id in g.clusters:
                            g.clusters[sig.cluster_id] = sig.as_dict()
                if key[len(_CLUSTER_KEY):] in live:
                    elevated = True
                continue
            s = self._series(ws, key)
            if s is None:
                continue
            rec = recs.get(key)
            if rec is None:
                rec = recs[key] = s.rings.recent(eval_b)
            if key == "*" and any(a.method.startswith(("limit", "SLO")) for a in g.alerts) and any(
                f.indicator == i for f in self._objective_findings(ws, rec, eval_b)
            ):
                elevated = True
                continue
            if still_elevated(s, i, rec, self.cfg):
                elevated = True
        if elevated:
            g.last_elevated = now
        prev = g.triage
        last = g.alerts[-1]
        if now - g.last_elevated >= self.cfg.quiet_s:
            for key, i in g.members:
                s = self._series(ws, key)
                if s is not None:
                    s.firing[i] = False
                    s.cusum[i] = 0.0
            g.resolved_at = now
            gkey = (g.workflow, g.base_type)
            del self.groups[gkey]
            g.members.clear()
            self.recent[gkey] = g
            t = self._triage(g, ws, now, eval_b, suspects=False)
            t.harm.growing = False
            return [AlertUpdate("resolved", g.id, g.workflow, g.failure_type, now, last, t,
                                f"Signals back to baseline for {self.cfg.quiet_s / 60:.0f} min "
                                f"({last.indicator} on {breakdown_label(last.breakdown)}); alert resolved "
                                f"({t.harm.requests} harmful requests, {t.harm.subjects} subjects in all).")]
        refresh = now - g.last_suspects_at >= 60.0
        t = self._triage(g, ws, now, eval_b, suspects=refresh)
        changed = prev is not None and (
            t.severity != prev.severity
            or (t.suspects[:1] and (not prev.suspects or (t.suspects[0].change_id, t.suspects[0].version)
                                    != (prev.suspects[0].change_id, prev.suspects[0].version)))
        )
        if changed:
            return [AlertUpdate("updated", g.id, g.workflow, g.failure_type, now, last, t,
                                self._update_text("updated", g, last, t))]
        return []

    def _prune(self, eval_b: int) -> None:
        """Drop breakdown series idle for over an hour (a retired version, a one-off segment)."""
        horizon = eval_b - int(3600 / FINE_S)
        for ws in self.workflows.values():
            stale = [k for k, s in ws.breakdowns.items() if s.last_b < horizon and not s.firing.any()
                     and not any(key == k for (key, _i) in self._members(ws.name))]
            for k in stale:
                self.store.release(ws.breakdowns.pop(k))
            if stale:
                self._routes.clear()
            self.wf_m[ws.no] = 1 + len(ws.breakdowns)

    def _members(self, workflow: str) -> list[tuple[str, int]]:
        return [m for (wf, _ft), g in self.groups.items() if wf == workflow for m in g.members]

    # ------------------------------------------------------------------ reporting

    def incidents(self) -> list[Group]:
        with self._lock:
            return list(self.history)

    def indicator_snapshot(self, workflow: str, *, window_s: float = 300.0) -> dict[str, Any]:
        """Current indicator values of one workflow and its breakdowns over a recent window (for the API/UI)."""
        with self._lock:
            ws = self.workflows.get(workflow)
            if ws is None:
                return {"workflow": workflow, "series": {}}
            eval_b = fine_bucket(self.now)
            out: dict[str, Any] = {}
            for s in ws.series():
                rec = s.rings.recent(eval_b)
                tot = self._window(s, rec, window_s, eval_b)
                vals: dict[str, Any] = {}
                for i, ind in enumerate(INDICATORS):
                    n = int(tot[ind.den])
                    vals[ind.name] = {"bad": int(tot[ind.num]), "total": n,
                                      "rate": (int(tot[ind.num]) / n) if n else None,
                                      "baseline": baseline_rate(s, i)[0], "firing": bool(s.firing[i])}
                vals["latency_p95_ms"]["p95_baseline"] = None if math.isinf(ws.lat_thr) else ws.lat_thr
                vals["retrieval_age_p95_s"]["p95_baseline"] = None if math.isinf(ws.rage_thr) else ws.rage_thr
                out[s.key] = vals
            return {"workflow": workflow, "window_s": window_s, "series": out}
