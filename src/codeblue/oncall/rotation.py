"""Who a schedule puts on call at an instant: rotations, layers, restrictions and overrides.

Pure functions over plain dataclasses; no database. Day-based rotations (daily, weekly, custom lengths in
whole days) hand off at a local wall-clock time in the schedule's IANA zone, so a hand-off at 09:00 stays at
09:00 across daylight-saving changes (that shift is an hour shorter or longer). Custom lengths that are not
whole days run in elapsed time from the first hand-off.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY = 86400.0


@dataclass(frozen=True)
class Restriction:
    """On call only inside this local window on these weekdays; ``end <= start`` runs past midnight."""

    days: frozenset[int]
    start: time
    end: time

    def covers(self, local: datetime) -> bool:
        t = local.time().replace(tzinfo=None)
        wd = local.weekday()
        if self.start < self.end:
            return wd in self.days and self.start <= t < self.end
        return (wd in self.days and t >= self.start) or ((wd - 1) % 7 in self.days and t < self.end)


@dataclass(frozen=True)
class Layer:
    name: str
    members: tuple[str, ...]
    start: date  # local date of the first hand-off
    handoff: time
    length_days: int | None  # whole-day rotations (calendar days in the schedule's zone)
    length_s: float | None  # elapsed-time rotations
    restrictions: tuple[Restriction, ...] = ()
    until: float | None = None


@dataclass(frozen=True)
class Override:
    id: int
    handle: str
    starts_at: float
    ends_at: float


@dataclass(frozen=True)
class OnCall:
    """The answer for one schedule at one instant."""

    handle: str
    source: str  # "override" or "layer"
    layer: str | None
    override_id: int | None
    shift_start: float
    shift_end: float


def handoff_instant(day: date, at: time, tz: ZoneInfo) -> float:
    """The unix time of local `at` on `day`; a time skipped by DST resolves per PEP 495 (fold=0)."""
    return datetime.combine(day, at, tzinfo=tz).timestamp()


def shift_at(layer: Layer, t: float, tz: ZoneInfo) -> tuple[int, float, float] | None:
    """(shift index, start, end) of the layer's rotation at `t`, or None before it starts / after it ends."""
    if layer.until is not None and t >= layer.until:
        return None
    t0 = handoff_instant(layer.start, layer.handoff, tz)
    if t < t0:
        return None
    if layer.length_days is not None:
        n = layer.length_days
        local_day = datetime.fromtimestamp(t, tz).date()
        days = (local_day - layer.start).days
        if t < handoff_instant(local_day, layer.handoff, tz):
            days -= 1
        idx = days // n
        start = handoff_instant(layer.start + timedelta(days=idx * n), layer.handoff, tz)
        end = handoff_instant(layer.start + timedelta(days=(idx + 1) * n), layer.handoff, tz)
    else:
        assert layer.length_s is not None
        idx = math.floor((t - t0) / layer.length_s)
        start = t0 + idx * layer.length_s
        end = start + layer.length_s
    if layer.until is not None:
        end = min(end, layer.until)
    return idx, start, end


def layer_on_call(layer: Layer, t: float, tz: ZoneInfo) -> tuple[str, float, float] | None:
    shift = shift_at(layer, t, tz)
    if shift is None:
        return None
    if layer.restrictions and not any(r.covers(datetime.fromtimestamp(t, tz)) for r in layer.restrictions):
        return None
    idx, start, end = shift
    return layer.members[idx % len(layer.members)], start, end


def on_call(layers: list[Layer], overrides: list[Override], t: float, tz: ZoneInfo) -> OnCall | None:
    """Overrides first (the most recent one wins), then layers from the highest (last) to the base (first)."""
    for o in sorted(overrides, key=lambda o: o.id, reverse=True):
        if o.starts_at <= t < o.ends_at:
            return OnCall(o.handle, "override", None, o.id, o.starts_at, o.ends_at)
    for layer in reversed(layers):
        hit = layer_on_call(layer, t, tz)
        if hit is not None:
            return OnCall(hit[0], "layer", layer.name, None, hit[1], hit[2])
    return None


def _boundaries(layers: list[Layer], overrides: list[Override], since: float, until: float, tz: ZoneInfo) -> list[float]:
    points = {since}
    for o in overrides:
        points.update(x for x in (o.starts_at, o.ends_at) if since < x < until)
    first_day = datetime.fromtimestamp(since, tz).date() - timedelta(days=1)
    last_day = datetime.fromtimestamp(until, tz).date() + timedelta(days=1)
    for layer in layers:
        if layer.until is not None and since < layer.until < until:
            points.add(layer.until)
        t0 = handoff_instant(layer.start, layer.handoff, tz)
        if since < t0 < until:
            points.add(t0)
        t = max(since, t0)
        while t < until:
            shift = shift_at(layer, t, tz)
            if shift is None:
                break
            if shift[2] < until:
                points.add(shift[2])
            t = shift[2]
        if layer.restrictions:
            d = first_day
            while d <= last_day:
                for r in layer.restrictions:
                    for clock_time in (r.start, r.end):
                        x = handoff_instant(d, clock_time, tz)
                        if since < x < until:
                            points.add(x)
                d += timedelta(days=1)
    return sorted(points)


def final_schedule(
    layers: list[Layer], overrides: list[Override], since: float, until: float, tz: ZoneInfo
) -> list[dict[str, object]]:
    """The rendered schedule between `since` and `until`: consecutive segments of one person (or nobody)."""
    out: list[dict[str, object]] = []
    points = _boundaries(layers, overrides, since, until, tz)
    for i, p in enumerate(points):
        end = points[i + 1] if i + 1 < len(points) else until
        hit = on_call(layers, overrides, p, tz)
        handle = hit.handle if hit else None
        source = (hit.layer if hit.source == "layer" else "override") if hit else None
        if out and out[-1]["handle"] == handle and out[-1]["source"] == source:
            out[-1]["end"] = end
        else:
            out.append({"start": p, "end": end, "handle": handle, "source": source})
    return out
