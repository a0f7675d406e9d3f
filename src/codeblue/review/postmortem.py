"""Post-mortems: a Markdown draft computed from the hash-verified timeline and the stored signals, then
edited and saved as versions (each save a new row with its author), and completed once it commits to at
least one technical and one operational corrective action. The final version is pinned on the incident and
its digest written to the incident's timeline.

The draft asks why the vitals monitor was late, not only what broke: for each indicator of the affected
workflows it finds when the indicator first left its baseline versus when the incident opened, and backtests
stricter rules over the stored history (up to 30 days; the span used is stated) for how much earlier they
would have fired and how many false alarms they would have raised.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from codeblue.errors import Conflict, Invalid
from codeblue.incidents import service as incidents
from codeblue.incidents.model import TimelineEntry
from codeblue.review import analysis, audit
from codeblue.review.model import ACTION_KINDS, CorrectiveAction, Postmortem, PostmortemVersion
from codeblue.runtime import Runtime

MAX_MARKDOWN = 1_000_000
TIMELINE_MAX = 1000


def ts(t: float | None) -> str:
    if t is None:
        return "—"
    return datetime.fromtimestamp(float(t), UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def dur(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    neg = seconds < 0
    s = round(abs(seconds))
    d, rem = divmod(s, 86400)
    h, rem = divmod(rem, 3600)
    m, sec = divmod(rem, 60)
    parts = [f"{d}d"] if d else []
    if h:
        parts.append(f"{h}h")
    if m:
        parts.append(f"{m}m")
    if sec or not parts:
        parts.append(f"{sec}s")
    return ("-" if neg else "") + " ".join(parts)


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.1f}%"


def _val(ind: str, v: float | None) -> str:
    if v is None:
        return "—"
    return f"{v:.0f}" if ind in analysis.P95_INDICATORS else _pct(v)


def _between(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else b - a


# ----- computing the facts ---------------------------------------------------------------------------------


def facts(s: Session, rt: Runtime, *, incident_id: int) -> dict[str, Any]:
    """Everything the draft says, as data (the API returns it beside the Markdown)."""
    inc = incidents.get_incident(s, incident_id)
    now = float(rt.clock.now())
    detected = float(inc.detected_at or inc.opened_at)
    end = min(now, float(inc.resolved_at or inc.contained_at or now) + 900.0)
    end = max(end, detected + analysis.BUCKET)
    hist_start = detected - analysis.HISTORY_MAX_S
    events_by_wf: dict[str, list[dict[str, Any]]] = {}
    spans: dict[str, dict[str, Any]] = {}
    for wf in inc.workflows or []:
        evs, covered = analysis.load(s, workflow=wf, since=hist_start, until=end,
                                     cap=analysis.HISTORY_CAP + analysis.WINDOW_CAP)
        first = float(evs[0]["time"]) if evs else detected
        start = max(covered, first) if evs else detected
        events_by_wf[wf] = evs
        spans[wf] = {"from": start, "to": detected, "days": max(detected - start, 0.0) / 86400.0,
                     "events": len(evs), "capped": covered > hist_start}

    harm = inc.harm or {}
    onset_src = "harm.started_at (triage)"
    onset = harm.get("started_at")
    series: dict[str, analysis.Series] = {}
    for wf, evs in events_by_wf.items():
        start = spans[wf]["from"]
        start = start - (start % analysis.BUCKET)
        series[wf] = analysis.build_series(wf, evs, start, end)
    main = analysis.main_indicator(inc)
    if not isinstance(onset, (int, float)):
        guess = [f.first_deviation - analysis.BUCKET for wf, ser in series.items()
                 for f in analysis.indicator_findings(ser, onset=detected - 7200.0, opened=detected)
                 if f.indicator == main and f.first_deviation is not None]
        onset = min(guess) if guess else detected
        onset_src = "first deviation of " + main if guess else "detection (no earlier deviation found)"
    onset = float(onset)

    findings = [f for ser in series.values() for f in analysis.indicator_findings(ser, onset=onset, opened=detected)]
    contained = inc.contained_at
    contain_end = float(contained) if contained is not None else now
    all_events = sorted((e for evs in events_by_wf.values() for e in evs), key=lambda e: float(e["time"]))
    harm_before = analysis.harm_between(all_events, inc.failure_type, onset, contain_end)
    harm_total = analysis.harm_between(all_events, inc.failure_type, onset,
                                       float(inc.resolved_at) if inc.resolved_at else now)
    confirmed = audit.confirmed_harm(s, incident_id=incident_id)
    prog = audit.progress(s, incident_id=incident_id)
    triggers = analysis.trigger_candidates(s, inc, events_by_wf, onset=onset, until=contain_end)

    verification = incidents.verify_timeline(s, rt, incident_id=incident_id)
    entries = [e.as_dict() for e in s.scalars(
        select(TimelineEntry).where(TimelineEntry.incident_id == incident_id).order_by(TimelineEntry.seq))]
    steps = analysis.judge_steps(entries, all_events, main) if verification["ok"] else []

    milestones = inc.milestones()
    containment = {
        "onset": onset, "onset_source": onset_src, "detected": detected,
        "time_to_detect_s": detected - onset,
        "time_to_acknowledge_s": _between(detected, milestones["acknowledged"]),
        "time_to_contain_s": _between(detected, milestones["contained"]),
        "time_to_mitigate_s": _between(detected, milestones["mitigated"]),
        "time_to_resolve_s": _between(detected, milestones["resolved"]),
        "onset_to_contain_s": _between(onset, milestones["contained"]),
        "harm_before_containment": harm_before["harmful"],
        "subjects_before_containment": harm_before["subjects"],
    }
    actions = [a.as_dict(now=now) for a in s.scalars(
        select(CorrectiveAction).where(CorrectiveAction.incident_id == incident_id).order_by(CorrectiveAction.id))]
    return {
        "incident": inc.as_dict(), "generated_at": now, "indicator": main, "spans": spans,
        "verification": verification, "entries": entries if verification["ok"] else [],
        "findings": [f.as_dict() for f in findings], "containment": containment,
        "impact": {"harm_before_containment": harm_before, "harm_until_resolved": harm_total,
                   "confirmed_by_audit": confirmed, "audit_progress": {k: prog[k] for k in ("total", "reviewed",
                                                                                           "percent", "states")},
                   "duration_s": _between(onset, milestones["resolved"] or milestones["contained"])},
        "trigger": triggers[0] if triggers and triggers[0]["evidence"] else None,
        "trigger_candidates": triggers[:5], "steps": steps, "actions": actions,
    }


# ----- rendering -------------------------------------------------------------------------------------------


def render(f: dict[str, Any]) -> str:
    inc = f["incident"]
    c = f["containment"]
    imp = f["impact"]
    L: list[str] = []
    add = L.append
    add(f"# Post-mortem: incident #{inc['id']} — {inc['title']}")
    add("")
    add(f"_Draft generated {ts(f['generated_at'])} from the incident's timeline and the stored signals. "
        "Edit it; each save is a new version._")
    add("")
    add("## Summary")
    add("")
    trig = f["trigger"]
    wfs = ", ".join(inc["workflows"]) or "no workflow"
    cause = (f"after {trig['key']} changed to {trig['version']} ({ts(trig['change']['time'])})" if trig
             else "with no recorded change that the served-version evidence points at")
    add(f"A {inc['severity']} {inc['failure_type'].replace('_', ' ')} incident in {wfs}: the "
        f"`{f['indicator']}` indicator left its baseline at about {ts(c['onset'])}, {cause}. It was detected "
        f"{dur(c['time_to_detect_s'])} after the onset and contained "
        f"{dur(c['onset_to_contain_s']) + ' after the onset' if c['onset_to_contain_s'] is not None else 'not yet'}; "
        f"{imp['harm_before_containment']['harmful']} harmful requests "
        f"({imp['harm_before_containment']['subjects']} subjects) were served before containment.")
    if inc.get("summary"):
        add("")
        add(inc["summary"])
    add("")

    add("## Timeline")
    add("")
    v = f["verification"]
    if not v["ok"]:
        add(f"**The timeline failed hash verification, so this section is not rendered from it.** "
            f"{len(v['problems'])} problem(s) were found:")
        add("")
        for p in v["problems"][:20]:
            add(f"- {('entry ' + str(p['seq'])) if p.get('seq') is not None else 'chain head'}: "
                f"{p['problem']} — {p['detail']}")
        add("")
        add("Restore the timeline from a backup or investigate who edited it before relying on any time below.")
    else:
        add(f"Verified: {v['entries']} entries, chain intact (checked {ts(v['verified_at'])}).")
        add("")
        add("| time (UTC) | actor | what |")
        add("|---|---|---|")
        for e in f["entries"][:TIMELINE_MAX]:
            txt = str(e["text"]).replace("|", "\\|").replace("\n", " ")[:300]
            add(f"| {ts(e['time'])} | {e['actor']} | {txt} |")
        if len(f["entries"]) > TIMELINE_MAX:
            add(f"| … | | {len(f['entries']) - TIMELINE_MAX} more entries |")
    add("")

    add("## Impact")
    add("")
    hb, ht, conf = imp["harm_before_containment"], imp["harm_until_resolved"], imp["confirmed_by_audit"]
    add(f"- Harmful requests before containment: **{hb['harmful']}** of {hb['served']} served "
        f"({hb['subjects']} distinct subjects), {ts(hb['since'])} → {ts(hb['until'])}.")
    add(f"- Harmful requests from onset to resolution (or now): {ht['harmful']} ({ht['subjects']} subjects).")
    ap = imp["audit_progress"]
    add(f"- Confirmed by the audit of served answers: **{conf['items']}** items harmful or remediated "
        f"({conf['subjects']} subjects" + (f", amount {conf['amount']:g}" if conf["amount"] else "") + "); "
        f"{ap['reviewed']} of {ap['total']} queued items reviewed ({ap['percent']}%).")
    add(f"- Duration: {dur(imp['duration_s'])} from onset to "
        f"{'resolution' if inc['milestones'].get('resolved') else 'containment'}.")
    add("")

    add("## Trigger")
    add("")
    if trig:
        ch = trig["change"]
        add(f"**{trig['key']} {ch.get('from') or '?'} → {trig['version']}** ({ch['type']}, change {ch['id']}, "
            f"by {ch.get('actor') or '?'} at {ts(ch['time'])}, {dur(trig['before_onset_s'])} before the onset).")
        add("")
        add(f"Served-version evidence: of {trig['served']} requests served by {trig['version']} since the onset, "
            f"{trig['harmful']} were harmful ({_pct(trig['rate_with'])}); of {trig['served_other']} served by "
            f"other versions, {trig['harmful_other']} ({_pct(trig['rate_without'])}); in the hour before the "
            f"change, {trig['harmful_before']} of {trig['served_before']} ({_pct(trig['rate_before'])}).")
    else:
        add("No recorded change is supported by the served-version evidence: ask what else changed "
            "(an upstream model, data, traffic mix) and record it.")
    others = [t for t in f["trigger_candidates"] if t is not trig][:4]
    if others:
        add("")
        add("Other changes in the day before the onset:")
        add("")
        for t in others:
            served = (f"harmful {_pct(t['rate_with'])} of {t['served']} it served since the onset"
                      if t["served"] else "served none of the requests since the onset")
            add(f"- {t['key']} → {t['version']} at {ts(t['change']['time'])}: {served} "
                f"(the rest: {_pct(t['rate_without'])}; the hour before it: {_pct(t['rate_before'])})")
    add("")

    add("## Missed signals")
    add("")
    spans = f["spans"]
    for wf, sp in spans.items():
        add(f"- History analysed for {wf}: {ts(sp['from'])} → {ts(sp['to'])} ({sp['days']:.2f} days, "
            f"{sp['events']} events" + ("; capped at the newest events" if sp["capped"] else "") + ").")
    add("")
    add(f"Incident opened (detected) at {ts(c['detected'])}; onset {ts(c['onset'])} ({c['onset_source']}).")
    add("")
    add("| workflow | indicator | baseline | peak | first deviated | before detection | "
        "stricter rule would fire | false alarms in history |")
    add("|---|---|---|---|---|---|---|---|")
    missed = []
    for fd in f["findings"]:
        bt = fd["backtests"][0]
        earlier = ("never in window" if bt["fires_at"] is None
                   else f"{ts(bt['fires_at'])} ({dur(bt['earlier_by_s'])} earlier)")
        add(f"| {fd['workflow']} | {fd['indicator']} | {_val(fd['indicator'], fd['baseline'])} | "
            f"{_val(fd['indicator'], fd['peak'])} | {ts(fd['first_deviation'])} | "
            f"{dur(fd['lead_s']) if fd['lead_s'] is not None else '—'} | {earlier} | {bt['false_alarms']} |")
        if fd["missed"]:
            missed.append(fd)
    add("")
    if missed:
        add("Signals that moved before the incident opened:")
        add("")
        for fd in missed:
            add(f"- **{fd['workflow']} {fd['indicator']}** left its baseline ({_val(fd['indicator'], fd['baseline'])}) "
                f"at {ts(fd['first_deviation'])}, {dur(fd['lead_s'])} before the incident opened.")
            for bt in fd["backtests"]:
                if bt["fires_at"] is None:
                    add(f"  - Backtest, {bt['rule']}: would not have fired before detection.")
                else:
                    add(f"  - Backtest, {bt['rule']}: would have fired {dur(bt['earlier_by_s'])} earlier, with "
                        f"{bt['false_alarms']} false alarm(s) over the {bt['span_days']:.2f} days of history before "
                        "the onset.")
    else:
        add("No indicator left its baseline more than one 5-minute bucket before the incident opened.")
    add("")
    add("### Why did the vitals monitor not notice sooner?")
    add("")
    for q in _why(f, missed):
        add(f"- {q}")
    add("")

    add("## Containment quality")
    add("")
    add("| measure | value |")
    add("|---|---|")
    for label, key in (("time to detect (onset → detected)", "time_to_detect_s"),
                       ("time to acknowledge", "time_to_acknowledge_s"),
                       ("time to contain", "time_to_contain_s"), ("time to mitigate", "time_to_mitigate_s"),
                       ("time to resolve", "time_to_resolve_s"), ("onset → contained", "onset_to_contain_s")):
        add(f"| {label} | {dur(c[key])} |")
    add(f"| harm accumulated before containment | {c['harm_before_containment']} requests, "
        f"{c['subjects_before_containment']} subjects |")
    add("")

    add("## What worked")
    add("")
    steps = f["steps"]
    if not v["ok"]:
        add("Not judged: the steps come from the timeline, which failed hash verification (see Timeline).")
    elif not steps:
        add("No containment step, change or control is recorded on the timeline.")
    else:
        ind = f["indicator"]
        worked = [x for x in steps if x["verdict"] == "fell"]
        nothing = [x for x in steps if x["verdict"] != "fell"]
        if worked:
            add(f"Steps after which `{ind}` fell:")
            add("")
            for x in worked:
                add(f"- {ts(x['time'])} {x['text']} — {_val(ind, x['before']['value'])} → "
                    f"{_val(ind, x['after']['value'])} (15 min before/after)")
            add("")
        if nothing:
            add(f"Steps after which `{ind}` did not fall:")
            add("")
            for x in nothing:
                add(f"- {ts(x['time'])} {x['text']} — {_val(ind, x['before']['value'])} → "
                    f"{_val(ind, x['after']['value'])}: {x['verdict']}")
    add("")

    add("## Corrective actions")
    add("")
    acts = f["actions"]
    if acts:
        add("| # | kind | action | owner | due | status | link |")
        add("|---|---|---|---|---|---|---|")
        for a in acts:
            st = a["status"] + (" (overdue)" if a.get("overdue") else "")
            add(f"| {a['id']} | {a['kind']} | {a['title']} | @{a['owner']} | {ts(a['due_at'])[:10]} | {st} | "
                f"{a['link'] or ''} |")
    kinds = {a["kind"] for a in acts if a["status"] != "wont_do"}
    missing = [k for k in ACTION_KINDS if k not in kinds]
    if missing:
        add("")
        add(f"Still needed before this post-mortem can be completed: at least one **{' and one '.join(missing)}** "
            "corrective action (fix the technical cause and the operational one).")
    add("")
    return "\n".join(L)


def _why(f: dict[str, Any], missed: list[dict[str, Any]]) -> list[str]:
    out: list[str] = []
    c = f["containment"]
    main = f["indicator"]
    main_f = [x for x in f["findings"] if x["indicator"] == main]
    if not main_f:
        out.append(f"The incident's indicator `{main}` has no data in the stored events: the application does not "
                   "report the field it needs, so no rule could have seen this. Instrument it.")
    for fd in missed:
        best = min((b for b in fd["backtests"] if b["earlier_by_s"] is not None),
                   key=lambda b: b["false_alarms"], default=None)
        if best is not None:
            per_week = best["false_alarms"] / best["span_days"] * 7 if best["span_days"] > 0 else None
            rate = f" (about {per_week:.1f} per week)" if per_week is not None else ""
            out.append(f"`{fd['indicator']}` on {fd['workflow']}: the rule \"{best['rule']}\" would have paged "
                       f"{dur(best['earlier_by_s'])} sooner at the cost of {best['false_alarms']} false alarm(s)"
                       f"{rate} — decide whether that trade is worth it.")
    if c["time_to_detect_s"] is not None and c["time_to_detect_s"] > 900 and not missed:
        out.append("Detection took more than 15 minutes yet no indicator moved clearly earlier: the harm was "
                   "invisible to the indicators we have. Which signal would have shown it (complaints, "
                   "grounding checks, action targets)?")
    if f["trigger"] is not None:
        out.append("The trigger was a recorded change: was it rolled out progressively with a guarded check on "
                   "this indicator, and why did that not stop it?")
    if not out:
        out.append("The monitor noticed within one bucket of the onset; record what made that possible.")
    return out


# ----- drafts, versions, completion -----------------------------------------------------------------------


_CACHE = "review.draft_cache"
CACHE_S = 60.0


def _fingerprint(s: Session, rt: Runtime, incident_id: int) -> tuple[Any, ...]:
    inc = incidents.get_incident(s, incident_id)
    acts = s.execute(select(func.count(), func.max(CorrectiveAction.updated_at))
                     .where(CorrectiveAction.incident_id == incident_id)).one()
    prog = audit.progress(s, incident_id=incident_id)
    # verified on every call: an edit made behind the API changes no counter, and must never hide behind the cache
    v = incidents.verify_timeline(s, rt, incident_id=incident_id)
    return (v["ok"], len(v["problems"]), inc.chain_count, inc.chain_head, inc.updated_at, tuple(acts), tuple(sorted(prog["states"].items())),
            int(rt.clock.now() // CACHE_S))


def draft(s: Session, rt: Runtime, *, incident_id: int) -> tuple[str, dict[str, Any]]:
    """The computed draft. Cached per incident for up to a minute while nothing on the incident changes (its
    timeline, its corrective actions, its audit reviews), so a console showing it stays cheap."""
    key = _fingerprint(s, rt, incident_id)
    cache: dict[int, tuple[tuple[Any, ...], str, dict[str, Any]]] = rt.extras.setdefault(_CACHE, {})
    hit = cache.get(incident_id)
    if hit is not None and hit[0] == key:
        return hit[1], hit[2]
    f = facts(s, rt, incident_id=incident_id)
    md = render(f)
    if len(cache) >= 64:
        cache.clear()
    cache[incident_id] = (key, md, f)
    return md, f


def _pm(s: Session, rt: Runtime, incident_id: int) -> Postmortem:
    pm = s.get(Postmortem, incident_id)
    if pm is None:
        pm = Postmortem(incident_id=incident_id, state="draft", latest_version=0, updated_at=float(rt.clock.now()))
        s.add(pm)
        s.flush()
    return pm


def state(s: Session, *, incident_id: int) -> dict[str, Any]:
    pm = s.get(Postmortem, incident_id)
    if pm is None:
        return {"state": "draft", "latest_version": 0, "final_version": None, "completed_at": None,
                "completed_by": None}
    return {"state": pm.state, "latest_version": pm.latest_version, "final_version": pm.final_version,
            "completed_at": pm.completed_at, "completed_by": pm.completed_by}


def save(s: Session, rt: Runtime, *, incident_id: int, markdown: str, author: str, note: str = "",
         base_version: int | None = None, generated: bool = False) -> PostmortemVersion:
    """Save a new version. `base_version` (the version the editor started from) guards against lost edits."""
    if not isinstance(markdown, str) or not markdown.strip():
        raise Invalid("markdown must not be empty", field="markdown")
    if len(markdown) > MAX_MARKDOWN:
        raise Invalid(f"markdown is longer than {MAX_MARKDOWN} characters", field="markdown")
    incidents.get_incident(s, incident_id, for_update=True)
    pm = _pm(s, rt, incident_id)
    if pm.state == "complete":
        raise Conflict(f"the post-mortem of incident {incident_id} is complete (final version "
                       f"{pm.final_version}); it can no longer change", field="incident_id")
    if base_version is not None and base_version != pm.latest_version:
        raise Conflict(f"version {pm.latest_version} was saved after version {base_version} you edited; "
                       "merge your edits into the latest version", field="base_version",
                       latest_version=pm.latest_version)
    now = float(rt.clock.now())
    pm.latest_version += 1
    pm.updated_at = now
    row = PostmortemVersion(incident_id=incident_id, version=pm.latest_version, markdown=markdown, author=author,
                            created_at=now, note=note[:2000], generated=generated,
                            digest=hashlib.sha256(markdown.encode()).hexdigest())
    s.add(row)
    s.flush()
    return row


def get_version(s: Session, *, incident_id: int, version: int | None = None) -> PostmortemVersion | None:
    q = select(PostmortemVersion).where(PostmortemVersion.incident_id == incident_id)
    if version is not None:
        q = q.where(PostmortemVersion.version == version)
    return s.scalars(q.order_by(PostmortemVersion.version.desc()).limit(1)).first()


def versions(s: Session, *, incident_id: int) -> list[PostmortemVersion]:
    incidents.get_incident(s, incident_id)
    return list(s.scalars(select(PostmortemVersion).where(PostmortemVersion.incident_id == incident_id)
                          .order_by(PostmortemVersion.version)))


def missing_kinds(s: Session, *, incident_id: int) -> list[str]:
    have = set(s.scalars(select(CorrectiveAction.kind).where(
        CorrectiveAction.incident_id == incident_id, CorrectiveAction.status != "wont_do")
        .group_by(CorrectiveAction.kind)))
    return [k for k in ACTION_KINDS if k not in have]


def complete(s: Session, rt: Runtime, *, incident_id: int, actor: str) -> dict[str, Any]:
    """Mark the post-mortem complete: the latest version (generated now if none was saved) becomes final."""
    inc = incidents.get_incident(s, incident_id, for_update=True)
    missing = missing_kinds(s, incident_id=incident_id)
    if missing:
        raise Conflict(
            f"the post-mortem cannot be completed without at least one {' and one '.join(missing)} corrective "
            f"action (fix both the technical and the operational cause)", field="actions", missing=missing)
    pm = _pm(s, rt, incident_id)
    if pm.state == "complete":
        raise Conflict(f"the post-mortem of incident {incident_id} is already complete", field="incident_id")
    latest = get_version(s, incident_id=incident_id)
    if latest is None:
        md, _f = draft(s, rt, incident_id=incident_id)
        latest = save(s, rt, incident_id=incident_id, markdown=md, author=actor, note="generated draft, completed",
                      generated=True)
    now = float(rt.clock.now())
    pm.state = "complete"
    pm.final_version = latest.version
    pm.completed_at = now
    pm.completed_by = actor
    pm.updated_at = now
    incidents.append_entry(s, rt, incident_id=inc.id, kind="postmortem.completed", actor=actor,
                           text=f"post-mortem completed (version {latest.version})",
                           data={"version": latest.version, "sha256": latest.digest})
    s.flush()
    return {**state(s, incident_id=incident_id), "final": latest.as_dict()}


def count_completed(s: Session) -> int:
    return int(s.scalar(select(func.count()).select_from(Postmortem).where(Postmortem.state == "complete")) or 0)
