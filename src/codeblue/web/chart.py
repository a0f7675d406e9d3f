"""The incident's signals chart: indicators of the affected workflows over time from stored events, drawn
server-side as SVG, with the onset, detection, every change, containment and rollback marked, and the
per-version breakdown of the top suspect's config that convicts (or clears) it.

Indicator values come from `codeblue.runbooks.measure` (DESIGN.md's definitions), never recomputed here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import escape

from sqlalchemy import select
from sqlalchemy.orm import Session

from codeblue.incidents.model import Incident, TimelineEntry
from codeblue.runtime import Runtime
from codeblue.web.views import hm, indicator_value

BUCKETS = 24
#: A per-version point needs this many events in its bucket (a 10 % rollout is thin; 1 of 2 is no rate).
MIN_POINT_EVENTS = 5
MAX_EVENTS = 60_000
PALETTE = ("#1f5fbf", "#c2410c", "#047857", "#7c3aed", "#b91c1c", "#0e7490")
MARK_COLOURS = {"onset": "#b91c1c", "detected": "#9a3412", "change": "#4b5563", "rollback": "#047857",
                "containment": "#1d4ed8"}


@dataclass
class Series:
    label: str
    points: list[tuple[float, float | None]]
    colour: str
    dashed: bool = False


@dataclass
class Mark:
    t: float
    kind: str
    label: str


@dataclass
class WorkflowChart:
    workflow: str
    indicator: str
    since: float
    until: float
    series: list[Series] = field(default_factory=list)
    marks: list[Mark] = field(default_factory=list)
    breakdown: list[dict[str, Any]] = field(default_factory=list)
    suspect_key: str | None = None
    events: int = 0
    truncated: bool = False
    svg: str = ""


def _window(inc: Incident, now: float) -> tuple[float, float]:
    harm = inc.harm or {}
    onset = harm.get("started_at") if isinstance(harm.get("started_at"), int | float) else None
    start = min(x for x in (onset, inc.detected_at, inc.opened_at) if x is not None)
    end = inc.closed_at or now
    span = max(end - start, 300.0)
    return start - span * 0.6, end + 1.0


def build(s: Session, rt: Runtime, inc: Incident) -> list[WorkflowChart]:
    from codeblue.changes import service as changes
    from codeblue.runbooks import measure

    now = rt.clock.now()
    since, until = _window(inc, now)
    indicator = measure.indicator_for(inc.failure_type, inc.data)
    top = next((x for x in inc.suspects or [] if x.get("kind") and x.get("name") and x.get("kind") != "deploy"), None)
    suspect_key = f"{top['kind']}/{top['name']}" if top else None
    harm = inc.harm or {}
    onset = harm.get("started_at") if isinstance(harm.get("started_at"), int | float) else None

    shared: list[Mark] = []
    if onset is not None:
        shared.append(Mark(float(onset), "onset", "onset"))
    if inc.detected_at is not None:
        shared.append(Mark(inc.detected_at, "detected", "detected"))
    q = (select(TimelineEntry.time, TimelineEntry.kind, TimelineEntry.data)
         .where(TimelineEntry.incident_id == inc.id, TimelineEntry.kind == "control.set").order_by(TimelineEntry.seq))
    for t, _kind, data in s.execute(q):
        d = data or {}
        shared.append(Mark(float(t), "containment", f"{str(d.get('type', 'control')).replace('_', ' ')}"))

    out: list[WorkflowChart] = []
    for wf in inc.workflows or []:
        chart = WorkflowChart(workflow=wf, indicator=indicator, since=since, until=until, suspect_key=suspect_key)
        chart.marks = list(shared)
        for ch in changes.list_changes(s, since=since, until=until, workflow=wf, limit=200):
            kind = "rollback" if ch.type == "rollback" else "change"
            chart.marks.append(Mark(ch.time, kind, f"{ch.kind}/{ch.name} {ch.from_version or '?'}→{ch.to_version or '?'}"))
        events = measure.load_events(s, workflow=wf, since=since, until=until, cap=MAX_EVENTS)
        chart.events = len(events)
        chart.truncated = len(events) >= MAX_EVENTS
        step = (until - since) / BUCKETS
        buckets: list[list[dict[str, Any]]] = [[] for _ in range(BUCKETS)]
        for e in events:
            i = min(BUCKETS - 1, max(0, int((float(e["time"]) - since) / step)))
            buckets[i].append(e)
        mid = [since + step * (i + 0.5) for i in range(BUCKETS)]
        chart.series.append(Series(f"{wf} (all)", [(mid[i], measure.measure(b, indicator).value)
                                                   for i, b in enumerate(buckets)], PALETTE[0]))
        if suspect_key:
            versions = sorted({str((e.get("versions") or {}).get(suspect_key)) for e in events
                               if (e.get("versions") or {}).get(suspect_key)})
            for n, v in enumerate(versions[:5]):
                pts = []
                for i, b in enumerate(buckets):
                    m = measure.measure([e for e in b if (e.get("versions") or {}).get(suspect_key) == v], indicator)
                    pts.append((mid[i], m.value if m.denominator >= MIN_POINT_EVENTS else None))
                chart.series.append(Series(f"{suspect_key} {v}", pts, PALETTE[(n + 1) % len(PALETTE)], dashed=True))
            from_t = float(onset) if onset is not None else inc.opened_at - 900.0
            recent = [e for e in events if float(e["time"]) >= from_t]
            for v in versions:
                m = measure.measure([e for e in recent if (e.get("versions") or {}).get(suspect_key) == v], indicator)
                chart.breakdown.append({"version": v, "value": m.value, "shown": indicator_value(indicator, m.value),
                                        "numerator": m.numerator, "denominator": m.denominator,
                                        "suspect": bool(top and str(top.get("version")) == v)})
            rest = [e for e in recent if not (e.get("versions") or {}).get(suspect_key)]
            if rest:
                m = measure.measure(rest, indicator)
                chart.breakdown.append({"version": "(not served by it)", "value": m.value,
                                        "shown": indicator_value(indicator, m.value), "numerator": m.numerator,
                                        "denominator": m.denominator, "suspect": False})
        chart.svg = render_svg(chart)
        out.append(chart)
    return out


def _nice_max(v: float) -> float:
    if v <= 0:
        return 1.0
    exp = 10 ** math.floor(math.log10(v))
    for m in (1, 2, 2.5, 5, 10):
        if v <= m * exp:
            return float(m * exp)
    return float(10 * exp)


def render_svg(chart: WorkflowChart, *, width: int = 760, height: int = 240) -> str:
    left, right, top, bottom = 56, 12, 10, 26
    pw, ph = width - left - right, height - top - bottom
    values = [v for sr in chart.series for _t, v in sr.points if v is not None]
    top_value = max(values) if values else 0.0
    vmax = _nice_max(top_value * 1.1)
    if not chart.indicator.endswith(("_ms", "_s")) and top_value <= 1.0:
        vmax = min(vmax, 1.0)  # a rate never exceeds 100 %
    span = max(chart.until - chart.since, 1.0)

    def x(t: float) -> float:
        return left + (t - chart.since) / span * pw

    def y(v: float) -> float:
        return top + ph - (v / vmax) * ph

    label = chart.indicator.replace("_", " ")
    title = f"{label} for {chart.workflow}"
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img" '
        f'aria-labelledby="t-{escape(chart.workflow)}" class="chart">',
        f'<title id="t-{escape(chart.workflow)}">{escape(title)}</title>',
        f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" class="plot"/>',
    ]
    for i in range(5):
        v = vmax * i / 4
        yy = y(v)
        parts.append(f'<line x1="{left}" x2="{left + pw}" y1="{yy:.1f}" y2="{yy:.1f}" class="grid"/>')
        parts.append(f'<text x="{left - 6}" y="{yy + 4:.1f}" class="tick" text-anchor="end">'
                     f'{escape(indicator_value(chart.indicator, v))}</text>')
    for i in range(5):
        t = chart.since + span * i / 4
        parts.append(f'<text x="{x(t):.1f}" y="{height - 10}" class="tick" text-anchor="middle">{hm(t)}</text>')
    for m in sorted(chart.marks, key=lambda m: m.t):
        if not chart.since <= m.t <= chart.until:
            continue
        xx = x(m.t)
        colour = MARK_COLOURS.get(m.kind, "#4b5563")
        dash = ' stroke-dasharray="4 3"' if m.kind in ("change", "detected") else ""
        parts.append(f'<line x1="{xx:.1f}" x2="{xx:.1f}" y1="{top}" y2="{top + ph}" stroke="{colour}" '
                     f'stroke-width="1.5"{dash} class="mark mark-{m.kind}"><title>{escape(m.kind)}: '
                     f'{escape(m.label)} at {hm(m.t)}</title></line>')
    for sr in chart.series:
        segs: list[list[str]] = [[]]
        for pt, pv in sr.points:
            if pv is None:
                if segs[-1]:
                    segs.append([])
                continue
            segs[-1].append(f"{x(pt):.1f},{y(pv):.1f}")
        dash = ' stroke-dasharray="6 3"' if sr.dashed else ""
        for seg in segs:
            if len(seg) == 1:
                cx, cy = seg[0].split(",")
                parts.append(f'<circle cx="{cx}" cy="{cy}" r="2.5" fill="{sr.colour}"/>')
            elif seg:
                parts.append(f'<polyline points="{" ".join(seg)}" fill="none" stroke="{sr.colour}" '
                             f'stroke-width="2"{dash}><title>{escape(sr.label)}</title></polyline>')
    parts.append("</svg>")
    return "".join(p for p in parts if p)
