"""The on-call map: schedules and overrides, who is on call, paging, signed acknowledgement links, escalation,
and filling the incident roles when an incident opens.

Functions take the session first and keyword arguments after it (docs/architecture.md); time comes from
``rt.clock``; pages leave through the comms outbox with a dedup key per incident, person and role.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from codeblue.auth.model import Person
from codeblue.auth.service import get_or_create_person
from codeblue.errors import Conflict, Forbidden, Invalid, NotFound
from codeblue.oncall import rotation
from codeblue.oncall.config import (
    DOMAINS,
    LayerIn,
    OncallConfig,
    OverrideIn,
    PolicyIn,
    RoleRuleIn,
    ScheduleIn,
    build_layers,
    default_rules,
)
from codeblue.oncall.model import Escalation, Override, Page, Policy, Schedule
from codeblue.runtime import Runtime

log = logging.getLogger(__name__)

ACTOR = "system:oncall"
RULES_KEY = "oncall.rules"
SWEEP_BATCH = 100  # escalations advanced per transaction

#: What each role does first (the seed's incident-role box and on-call map).
DUTIES: dict[str, str] = {
    "incident_lead": "You own decisions and the timeline. Confirm user harm, choose containment before root cause "
                     "(stop the rollout, open a breaker, switch to a fallback), and keep one timeline.",
    "technical_lead": "You drive diagnosis and mitigation. Ask what changed recently and whether it can be rolled "
                      "back now; contain the blast radius first, collect evidence while you do.",
    "communications_lead": "You update stakeholders and users. Internal update every 10 minutes; status page once user "
                           "impact is confirmed; keep internal diagnosis apart from external promises.",
    "support_liaison": "You feed real user impact back in. Record what users report on the incident and tell the "
                       "incident lead what users are experiencing.",
    "risk_owner": "You decide whether actions are allowed. Review account actions and policy behaviour, and approve "
                  "or refuse risky steps.",
    "infra_owner": "Infra: can the system run? Check serving, dependencies and capacity.",
    "feature_owner": "Feature: is the behaviour correct? Check the answers, prompts and tools of the workflow.",
    "ops_owner": "Ops: what are users experiencing? Watch support queues and complaints.",
    "escalation": "Nobody has acknowledged this incident yet. Acknowledge it if you are taking it.",
}


def role_label(role: str) -> str:
    return role.replace("_", " ")


# ----- persons -------------------------------------------------------------------------------------------


def _known_handles(s: Session, handles: set[str]) -> set[str]:
    if not handles:
        return set()
    return set(s.scalars(select(Person.handle).where(Person.handle.in_(handles))))


def _check_members(s: Session, spec: ScheduleIn, *, where: Any = None) -> None:
    wanted = {h for layer in spec.layers for h in layer.members}
    known = _known_handles(s, wanted)
    for i, layer in enumerate(spec.layers):
        for j, h in enumerate(layer.members):
            if h not in known:
                field = f"layers[{i}].members[{j}]"
                prefix = f"{where(i, j)}: schedule {spec.name}: " if where else ""
                raise Invalid(
                    f"{prefix}{field}: no person with handle {h!r}; create a token for them first "
                    "(or list them under people: in the on-call config)",
                    field=field,
                )


# ----- schedules -----------------------------------------------------------------------------------------


def get_schedule(s: Session, ref: int | str) -> Schedule:
    """A schedule by id or name."""
    if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
        row = s.get(Schedule, int(ref))
    else:
        row = s.scalar(select(Schedule).where(Schedule.name == ref))
    if row is None:
        raise NotFound(f"no on-call schedule {ref!r}", field="schedule")
    return row


def list_schedules(s: Session, *, domain: str | None = None, workflow: str | None = None) -> list[Schedule]:
    q = select(Schedule).order_by(Schedule.id)
    if domain is not None:
        if domain not in DOMAINS:
            raise Invalid(f"unknown domain {domain!r}; one of {', '.join(DOMAINS)}", field="domain")
        q = q.where(Schedule.domain == domain)
    if workflow is not None:
        q = q.where(Schedule.workflow == workflow)
    return list(s.scalars(q))


def _spec_layers(spec: ScheduleIn) -> list[dict[str, Any]]:
    return [layer.model_dump(mode="json") for layer in spec.layers]


def create_schedule(s: Session, rt: Runtime, *, spec: ScheduleIn, actor: str, source: str = "api") -> Schedule:
    if s.scalar(select(Schedule.id).where(Schedule.name == spec.name)) is not None:
        raise Conflict(f"a schedule named {spec.name!r} exists; PUT /v1/oncall/schedules/{spec.name} replaces it",
                       field="name")
    _check_members(s, spec)
    now = rt.clock.now()
    assert spec.domain is not None
    row = Schedule(
        name=spec.name, domain=spec.domain, workflow=spec.workflow, timezone=spec.timezone,
        description=spec.description, layers=_spec_layers(spec), source=source, created_by=actor,
        created_at=now, updated_at=now,
    )
    s.add(row)
    s.flush()
    return row


def replace_schedule(s: Session, rt: Runtime, *, ref: int | str, spec: ScheduleIn, actor: str) -> Schedule:
    row = get_schedule(s, ref)
    if spec.name != row.name and s.scalar(select(Schedule.id).where(Schedule.name == spec.name)) is not None:
        raise Conflict(f"a schedule named {spec.name!r} exists", field="name")
    _check_members(s, spec)
    assert spec.domain is not None
    row.name, row.domain, row.workflow, row.timezone = spec.name, spec.domain, spec.workflow, spec.timezone
    row.description, row.layers, row.updated_at = spec.description, _spec_layers(spec), rt.clock.now()
    row.source = "api"
    return row


def delete_schedule(s: Session, *, ref: int | str) -> None:
    row = get_schedule(s, ref)
    s.execute(delete(Override).where(Override.schedule_id == row.id))
    s.delete(row)


def add_override(s: Session, rt: Runtime, *, ref: int | str, spec: OverrideIn, actor: str) -> Override:
    row = get_schedule(s, ref)
    if not _known_handles(s, {spec.handle}):
        raise Invalid(f"no person with handle {spec.handle!r}", field="handle")
    if spec.end <= rt.clock.now():
        raise Invalid("the override ends in the past", field="end")
    o = Override(schedule_id=row.id, handle=spec.handle, starts_at=spec.start, ends_at=spec.end,
                 reason=spec.reason, created_by=actor, created_at=rt.clock.now())
    s.add(o)
    s.flush()
    return o


def delete_override(s: Session, *, ref: int | str, override_id: int) -> None:
    row = get_schedule(s, ref)
    o = s.get(Override, override_id)
    if o is None or o.schedule_id != row.id:
        raise NotFound(f"schedule {row.name} has no override {override_id}", field="override_id")
    s.delete(o)


def list_overrides(s: Session, *, ref: int | str, since: float | None = None) -> list[Override]:
    row = get_schedule(s, ref)
    q = select(Override).where(Override.schedule_id == row.id).order_by(Override.starts_at, Override.id)
    if since is not None:
        q = q.where(Override.ends_at > since)
    return list(s.scalars(q))


def _overrides_of(s: Session, schedule_ids: list[int], since: float, until: float) -> dict[int, list[rotation.Override]]:
    out: dict[int, list[rotation.Override]] = {i: [] for i in schedule_ids}
    if not schedule_ids:
        return out
    q = select(Override).where(
        Override.schedule_id.in_(schedule_ids), Override.ends_at > since, Override.starts_at <= until
    )
    for o in s.scalars(q):
        out[o.schedule_id].append(rotation.Override(o.id, o.handle, o.starts_at, o.ends_at))
    return out


def on_call_for(s: Session, schedule: Schedule, at: float,
                overrides: list[rotation.Override] | None = None) -> rotation.OnCall | None:
    if overrides is None:
        overrides = _overrides_of(s, [schedule.id], at, at)[schedule.id]
    return rotation.on_call(build_layers(schedule.layers), overrides, at, ZoneInfo(schedule.timezone))


def answer(schedule: Schedule, hit: rotation.OnCall | None) -> dict[str, Any]:
    return {
        "domain": schedule.domain,
        "workflow": schedule.workflow,
        "schedule": schedule.name,
        "handle": hit.handle if hit else None,
        "level": (hit.layer if hit.source == "layer" else "override") if hit else None,
        "source": hit.source if hit else None,
        "override_id": hit.override_id if hit else None,
        "shift_start": hit.shift_start if hit else None,
        "shift_end": hit.shift_end if hit else None,
        "timezone": schedule.timezone,
    }


def who_is_on_call(
    s: Session, rt: Runtime, *, domain: str | None = None, workflow: str | None = None, at: float | None = None
) -> list[dict[str, Any]]:
    """Who each matching schedule puts on call at `at` (default now). With a workflow, its own schedules answer
    and a domain without one falls back to that domain's general schedules. A gap shows as handle None."""
    at = rt.clock.now() if at is None else at
    rows = list_schedules(s, domain=domain)
    if workflow is not None:
        own_domains = {r.domain for r in rows if r.workflow == workflow}
        rows = [r for r in rows if r.workflow == workflow or (r.workflow is None and r.domain not in own_domains)]
    overrides = _overrides_of(s, [r.id for r in rows], at, at)
    order = {d: i for i, d in enumerate(DOMAINS)}
    rows.sort(key=lambda r: (order.get(r.domain, 9), r.workflow is None, r.id))
    return [answer(r, on_call_for(s, r, at, overrides[r.id])) for r in rows]


def schedule_shifts(s: Session, *, ref: int | str, since: float, until: float) -> list[dict[str, Any]]:
    """The final schedule (layers and overrides combined) between two times, as segments."""
    if until <= since:
        raise Invalid("until must be after since", field="until")
    if until - since > 366 * 86400:
        raise Invalid("ask for at most one year of shifts at a time", field="until")
    row = get_schedule(s, ref)
    overrides = _overrides_of(s, [row.id], since, until)[row.id]
    return rotation.final_schedule(build_layers(row.layers), overrides, since, until, ZoneInfo(row.timezone))


# ----- targets: "feature", "schedule:x", "person:y" -------------------------------------------------------


def resolve_target(
    s: Session, *, target: str, workflows: list[str] | None = None, at: float
) -> tuple[str, str] | None:
    """The person a target names at `at`, with where the answer came from; None when nobody is on call."""
    kind, _, name = target.partition(":")
    if kind == "person":
        return (name, "person") if _known_handles(s, {name}) else None
    if kind == "schedule":
        row = s.scalar(select(Schedule).where(Schedule.name == name))
        if row is None:
            return None
        hit = on_call_for(s, row, at)
        return (hit.handle, f"schedule:{row.name}") if hit else None
    rows = list_schedules(s, domain=target)
    wf = set(workflows or [])
    preferred = [r for r in rows if r.workflow is not None and r.workflow in wf]
    general = [r for r in rows if r.workflow is None]
    for row in [*preferred, *general]:
        hit = on_call_for(s, row, at)
        if hit is not None:
            return hit.handle, f"schedule:{row.name}"
    return None


# ----- signed acknowledgement links ---------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(rt: Runtime, payload: bytes) -> bytes:
    return hmac.new(rt.server_key, b"codeblue.oncall.ack\x00" + payload, hashlib.sha256).digest()


def make_ack_token(rt: Runtime, *, incident_id: int, handle: str, expires_at: float) -> str:
    """HMAC(server key) over incident id, person and expiry; the link needs no API token."""
    payload = f"{int(incident_id)}:{int(expires_at)}:{handle}".encode()
    return f"{_b64(payload)}.{_b64(_mac(rt, payload))}"


def read_ack_token(rt: Runtime, token: str) -> tuple[int, str, float]:
    """(incident id, handle, expiry) of a genuine, unexpired link; Forbidden otherwise."""
    try:
        p64, m64 = token.split(".", 1)
        payload, mac = _unb64(p64), _unb64(m64)
    except (ValueError, TypeError) as exc:
        raise Forbidden("this acknowledgement link is not valid") from exc
    if not hmac.compare_digest(mac, _mac(rt, payload)):
        raise Forbidden("this acknowledgement link is not valid")
    inc, exp, handle = payload.decode().split(":", 2)
    if rt.clock.now() >= float(exp):
        raise Forbidden("this acknowledgement link has expired; acknowledge with the CLI or the console",
                        expired=True)
    return int(inc), handle, float(exp)


def ack_url(rt: Runtime, token: str) -> str:
    return f"{rt.settings.base_url.rstrip('/')}/v1/oncall/ack/{token}"


def _link_state(s: Session, incident_id: int, handle: str) -> dict[str, Any]:
    from codeblue.incidents import service as incidents

    inc = incidents.get_incident(s, incident_id).as_dict()
    return {
        "incident_id": incident_id, "title": inc["title"], "severity": inc["severity"], "handle": handle,
        "acknowledged": inc["milestones"].get("acknowledged") is not None,
        "acknowledged_by": inc.get("acknowledged_by"), "acknowledged_at": inc["milestones"].get("acknowledged"),
        "status": inc["status"],
    }


def describe_ack_token(s: Session, rt: Runtime, *, token: str) -> dict[str, Any]:
    """What a genuine, unexpired link would acknowledge, without acknowledging anything (the link's GET)."""
    incident_id, handle, exp = read_ack_token(rt, token)
    return {**_link_state(s, incident_id, handle), "link_expires_at": exp}


def acknowledge_by_token(s: Session, rt: Runtime, *, token: str) -> dict[str, Any]:
    from codeblue.incidents import service as incidents

    incident_id, handle, _exp = read_ack_token(rt, token)
    already = _link_state(s, incident_id, handle)["acknowledged"]
    if not already:
        incidents.acknowledge(s, rt, incident_id=incident_id, actor=handle)
    now = rt.clock.now()
    for p in s.scalars(select(Page).where(Page.incident_id == incident_id, Page.handle == handle,
                                          Page.acked_at.is_(None))):
        p.acked_at = now
    state = _link_state(s, incident_id, handle)
    del state["acknowledged"], state["severity"]
    return {**state, "already_acknowledged": already}


# ----- paging --------------------------------------------------------------------------------------------


def _brief(inc: Any) -> dict[str, Any]:
    """What paging and escalation read from an incident, without loading its role rows."""
    return {
        "id": inc.id, "title": inc.title, "status": inc.status, "severity": inc.severity,
        "failure_type": inc.failure_type, "workflows": list(inc.workflows or []),
        "acknowledged_at": inc.milestone("acknowledged"), "acknowledged_by": inc.acknowledged_by,
    }


def page(
    s: Session, rt: Runtime, *, incident_id: int, handle: str, role: str, reason: str, actor: str,
    tag: str | None = None, timeline: bool = True, _info: dict[str, Any] | None = None,
) -> Page:
    """Page a person about an incident through the outbox, with their role's first duties and a signed ack link.

    The dedup key is per incident, person and role (plus `tag`, which escalation uses per level and round),
    so paging the same person for the same thing twice sends one page. With ``timeline=False`` the caller
    writes the timeline entry itself (escalation folds the page into its own entry)."""
    from codeblue.comms import outbox
    from codeblue.incidents import service as incidents

    info = _info if _info is not None else _brief(incidents.get_incident(s, incident_id))
    person = s.scalar(select(Person).where(Person.handle == handle))
    if person is None:
        raise NotFound(f"no person with handle {handle!r}", field="handle")
    dedup = f"oncall:page:{incident_id}:{handle}:{role}" + (f":{tag}" if tag else "")
    existing = s.scalar(select(Page).where(Page.dedup_key == dedup))
    if existing is not None:
        return existing
    now = rt.clock.now()
    expires = now + rt.settings.oncall_ack_ttl
    link = ack_url(rt, make_ack_token(rt, incident_id=incident_id, handle=handle, expires_at=expires))
    label = role_label(role)
    title = " ".join(str(info["title"]).split())  # one line: it goes into a mail subject and chat headers
    subject = f"[codeblue] {info['severity']} incident #{incident_id}: {title} — you are paged as {label}"
    lines = [
        f"{person.name or handle}, you are paged as {label} for incident #{incident_id}.",
        "",
        f"Incident: {info['title']}",
        f"Severity: {info['severity']}   Failure type: {info['failure_type']}   Status: {info['status']}",
        f"Workflows: {', '.join(info['workflows']) or '-'}",
        f"Why you: {reason}",
    ]
    if role in DUTIES:
        lines += ["", f"First duties: {DUTIES[role]}"]
    lines += [
        "",
        f"Acknowledge (no login needed): {link}",
        f"Or: codeblue oncall ack {incident_id}",
        f"Incident: {rt.settings.base_url.rstrip('/')}/v1/incidents/{incident_id}",
    ]
    body = "\n".join(lines)
    sent: list[str] = []
    for channel in rt.settings.oncall_page_channels:
        if channel == "email" and not person.email:
            incidents.append_entry(
                s, rt, incident_id=incident_id, kind="page_failed", actor=ACTOR,
                text=f"cannot e-mail {handle}: no e-mail address on file", data={"handle": handle, "role": role},
            )
            continue
        outbox.enqueue(
            s, rt, channel=channel, kind="page", dedup_key=f"{dedup}:{channel}", subject=subject, body=body,
            to=[person.email] if channel == "email" else [handle], incident_id=incident_id,
            data={"handle": handle, "role": role, "reason": reason, "ack_url": link, "severity": info["severity"],
                  "title": info["title"]},
        )
        sent.append(channel)
    row = Page(incident_id=incident_id, handle=handle, role=role, reason=reason, dedup_key=dedup, channels=sent,
               actor=actor, created_at=now, ack_expires_at=expires)
    s.add(row)
    s.flush()
    if not timeline:
        return row
    incidents.append_entry(
        s, rt, incident_id=incident_id, kind="page", actor=actor,
        text=f"paged {handle} as {label}" + (f" via {', '.join(sent)}" if sent else " (no channel could reach them)"),
        data={"handle": handle, "role": role, "reason": reason, "channels": sent, "dedup_key": dedup},
    )
    return row


def list_pages(s: Session, *, incident_id: int) -> list[Page]:
    return list(s.scalars(select(Page).where(Page.incident_id == incident_id).order_by(Page.id)))


# ----- roles on open -------------------------------------------------------------------------------------


def role_rules(rt: Runtime) -> list[RoleRuleIn]:
    rules: list[RoleRuleIn] | None = rt.extras.get(RULES_KEY)
    return rules if rules is not None else default_rules()


def fill_roles(s: Session, rt: Runtime, *, incident_id: int) -> list[dict[str, Any]]:
    """Fill the incident roles from the on-call map by the role rule, page everyone assigned. Returns what was done."""
    from codeblue.incidents import service as incidents

    info = incidents.get_incident(s, incident_id).as_dict()
    now = rt.clock.now()
    done: list[dict[str, Any]] = []
    for rule in role_rules(rt):
        if not rule.when.matches(info):
            continue
        if info["roles"].get(rule.role):
            continue  # filled by hand before us
        hit = None
        for target in rule.from_:
            hit = resolve_target(s, target=target, workflows=info["workflows"], at=now)
            if hit is not None:
                break
        if hit is None:
            tried = ", ".join(rule.from_)
            incidents.append_entry(
                s, rt, incident_id=incident_id, kind="oncall_gap", actor=ACTOR,
                text=f"nobody on call for {role_label(rule.role)} (tried {tried}); assign it by hand",
                data={"role": rule.role, "tried": list(rule.from_)},
            )
            done.append({"role": rule.role, "handle": None, "from": None})
            continue
        handle, source = hit
        incidents.assign_role(s, rt, incident_id=incident_id, role=rule.role, handle=handle, actor=ACTOR)
        row = page(s, rt, incident_id=incident_id, handle=handle, role=rule.role, actor=ACTOR, timeline=False,
                   reason=f"on call ({source}) when the incident opened; the role rule makes you "
                          f"{role_label(rule.role)}")
        done.append({"role": rule.role, "handle": handle, "from": source, "channels": row.channels,
                     "dedup_key": row.dedup_key})
    paged = [d for d in done if d["handle"]]
    if paged:
        # One entry for the pages sent at open (each assignment already has its own role_assigned entry).
        parts = [f"{d['handle']} as {role_label(d['role'])}" + ("" if d["channels"] else " (no channel reached them)")
                 for d in paged]
        channels = sorted({c for d in paged for c in d["channels"]})
        incidents.append_entry(
            s, rt, incident_id=incident_id, kind="page", actor=ACTOR,
            text=f"paged {', '.join(parts)}" + (f" via {', '.join(channels)}" if channels else ""),
            data={"pages": [{k: d[k] for k in ("handle", "role", "channels", "dedup_key")} for d in paged]},
        )
    return done


# ----- escalation ----------------------------------------------------------------------------------------


def list_policies(s: Session) -> list[Policy]:
    return list(s.scalars(select(Policy).order_by(Policy.position, Policy.id)))


def get_policy(s: Session, ref: int | str) -> Policy:
    if isinstance(ref, int) or ref.isdigit():
        row = s.get(Policy, int(ref))
    else:
        row = s.scalar(select(Policy).where(Policy.name == ref))
    if row is None:
        raise NotFound(f"no escalation policy {ref!r}", field="policy")
    return row


def check_targets(s: Session, spec: PolicyIn, where: Any = None) -> None:
    """Every level's schedule or person must exist (a domain with no schedule yet is allowed: it is a gap)."""
    for j, lv in enumerate(spec.levels):
        kind, _, name = lv.target.partition(":")
        missing = (
            (kind == "schedule" and s.scalar(select(Schedule.id).where(Schedule.name == name)) is None)
            or (kind == "person" and not _known_handles(s, {name}))
        )
        if missing:
            prefix = f"{where(j)}: policy {spec.name}: " if where else ""
            raise Invalid(f"{prefix}levels[{j}].target: no {kind} named {name!r}", field=f"levels[{j}].target")


def put_policy(s: Session, rt: Runtime, *, spec: PolicyIn, position: int | None = None, source: str = "api",
               where: Any = None) -> Policy:
    """Create or replace a policy by name. New policies go after the existing ones unless `position` is given."""
    check_targets(s, spec, where)
    now = rt.clock.now()
    row = s.scalar(select(Policy).where(Policy.name == spec.name))
    levels = [lv.model_dump(mode="json") for lv in spec.levels]
    match = spec.match.model_dump(mode="json")
    if row is None:
        if position is None:
            position = max((p.position for p in list_policies(s)), default=-1) + 1
        row = Policy(name=spec.name, position=position, match=match, levels=levels, repeat=spec.repeat,
                     source=source, created_at=now, updated_at=now)
        s.add(row)
    else:
        row.match, row.levels, row.repeat, row.updated_at, row.source = match, levels, spec.repeat, now, source
        if position is not None:
            row.position = position
    s.flush()
    return row


def delete_policy(s: Session, *, ref: int | str) -> None:
    s.delete(get_policy(s, ref))


def policy_for(s: Session, incident: dict[str, Any]) -> Policy | None:
    """The first policy (by position) whose match covers the incident."""
    from codeblue.oncall.config import MatchIn

    for p in list_policies(s):
        if MatchIn.model_validate(p.match).matches(incident):
            return p
    return None


def active_escalation(s: Session, *, incident_id: int) -> Escalation | None:
    return s.scalar(select(Escalation).where(Escalation.incident_id == incident_id, Escalation.state == "active"))


def list_escalations(s: Session, *, incident_id: int | None = None, state: str | None = None) -> list[Escalation]:
    q = select(Escalation).order_by(Escalation.id.desc()).limit(500)
    if incident_id is not None:
        q = q.where(Escalation.incident_id == incident_id)
    if state is not None:
        q = q.where(Escalation.state == state)
    return list(s.scalars(q))


def start_escalation(s: Session, rt: Runtime, *, incident_id: int, policy: str | None = None,
                     actor: str = ACTOR) -> Escalation | None:
    """Start escalating an unacknowledged incident: page the first level now. None if no policy covers it."""
    from codeblue.incidents import service as incidents

    inc = incidents.get_incident(s, incident_id)
    info = _brief(inc)
    if info["acknowledged_at"] is not None:
        return None
    if active_escalation(s, incident_id=incident_id) is not None:
        raise Conflict(f"incident {incident_id} is already escalating", field="incident_id")
    pol = get_policy(s, policy) if policy else policy_for(s, info)
    if pol is None:
        return None
    now = rt.clock.now()
    esc = Escalation(incident_id=incident_id, policy=pol.name, levels=list(pol.levels), repeat=pol.repeat,
                     state="active", cycle=0, level=0, next_at=now, started_at=now, history=[])
    s.add(esc)
    s.flush()
    _fire_level(s, rt, esc, info, at=now, first=True)
    _catch_up(s, rt, esc, info, now)
    return esc


def _fire_level(s: Session, rt: Runtime, esc: Escalation, info: dict[str, Any], *, at: float, first: bool) -> None:
    """Page the current level's target (one timeline entry per step) and set when the next level is due."""
    from codeblue.incidents import service as incidents

    level = esc.levels[esc.level]
    timeout = float(level["timeout_minutes"]) * 60.0
    hit = resolve_target(s, target=level["target"], workflows=info["workflows"], at=at)
    step: dict[str, Any] = {"at": at, "cycle": esc.cycle, "level": esc.level, "target": level["target"],
                            "handle": None, "note": ""}
    n = esc.level + 1
    head = (f"escalation policy {esc.policy} started ({len(esc.levels)} level(s), {esc.repeat} repeat(s))"
            if first else "not acknowledged: escalated")
    rnd = f", round {esc.cycle + 1} of {esc.repeat + 1}" if esc.cycle else ""
    data: dict[str, Any] = {"escalation_id": esc.id, "policy": esc.policy, "level": n, "cycle": esc.cycle + 1,
                            "target": level["target"], "handle": None, "channels": []}
    if hit is None:
        step["note"] = "nobody on call; skipped"
        esc.next_at = at  # nobody to wait for: go on at once
        text = f"{head}: level {n} ({level['target']}{rnd}) has nobody on call, moving on"
    else:
        handle, source = hit
        step["handle"] = data["handle"] = handle
        already = first and s.scalar(
            select(Page.id).where(Page.incident_id == esc.incident_id, Page.handle == handle)
        ) is not None
        if already:
            step["note"] = "already paged for a role"
            text = f"{head}: level {n} ({level['target']}) is {handle}, already paged"
        else:
            row = page(s, rt, incident_id=esc.incident_id, handle=handle, role="escalation", actor=ACTOR,
                       tag=f"{esc.id}:{esc.cycle}:{esc.level}", timeline=False, _info=info,
                       reason=f"escalation policy {esc.policy}, level {n} ({source}){rnd}: not acknowledged yet")
            data["channels"], data["dedup_key"] = row.channels, row.dedup_key
            via = f" via {', '.join(row.channels)}" if row.channels else " (no channel could reach them)"
            text = f"{head}: level {n} ({level['target']}{rnd}), paged {handle}{via}"
        esc.next_at = at + timeout
        data["next_at"] = esc.next_at
    incidents.append_entry(s, rt, incident_id=esc.incident_id, kind="escalation", actor=ACTOR, text=text, data=data)
    esc.history = [*esc.history, step]


def _advance(s: Session, rt: Runtime, esc: Escalation, info: dict[str, Any], at: float) -> None:
    from codeblue.incidents import service as incidents

    esc.level += 1
    if esc.level >= len(esc.levels):
        esc.level = 0
        esc.cycle += 1
    if esc.cycle > esc.repeat:
        esc.level = len(esc.levels) - 1
        esc.cycle = esc.repeat
        _end(esc, "exhausted", at, "")
        incidents.append_entry(
            s, rt, incident_id=esc.incident_id, kind="escalation", actor=ACTOR,
            text=f"escalation policy {esc.policy} exhausted: nobody acknowledged after "
                 f"{esc.repeat + 1} round(s); page someone by hand",
            data={"escalation_id": esc.id, "state": "exhausted"},
        )
        return
    _fire_level(s, rt, esc, info, at=at, first=False)


def _catch_up(s: Session, rt: Runtime, esc: Escalation, info: dict[str, Any], now: float) -> None:
    guard = (esc.repeat + 1) * len(esc.levels) + 1
    while esc.state == "active" and esc.next_at is not None and esc.next_at <= now and guard > 0:
        guard -= 1
        _advance(s, rt, esc, info, max(esc.next_at, esc.started_at))


def _end(esc: Escalation, state: str, at: float, by: str) -> None:
    esc.state, esc.ended_at, esc.ended_by, esc.next_at = state, at, by, None


def run_escalations(s: Session, rt: Runtime) -> int:
    """Advance every escalation whose timeout has passed; returns how many were looked at (the job calls this)."""
    from codeblue.incidents import service as incidents

    now = rt.clock.now()
    due = list(s.scalars(
        select(Escalation)
        .where(Escalation.state == "active", Escalation.next_at <= now)
        .order_by(Escalation.next_at)
        .limit(SWEEP_BATCH)
        .with_for_update(skip_locked=True)
    ))
    for esc in due:
        info = _brief(incidents.get_incident(s, esc.incident_id))
        if info["acknowledged_at"] is not None:
            stop_escalation(s, rt, incident_id=esc.incident_id, state="acknowledged",
                            by=info.get("acknowledged_by") or "")
            continue
        if info["status"] in ("resolved", "closed"):
            stop_escalation(s, rt, incident_id=esc.incident_id, state="cancelled", by=f"status {info['status']}")
            continue
        _catch_up(s, rt, esc, info, now)
    return len(due)


def stop_escalation(s: Session, rt: Runtime, *, incident_id: int, state: str, by: str) -> Escalation | None:
    from codeblue.incidents import service as incidents

    esc = active_escalation(s, incident_id=incident_id)
    if esc is None:
        return None
    _end(esc, state, rt.clock.now(), by)
    why = f"acknowledged by {by}" if state == "acknowledged" else by
    incidents.append_entry(
        s, rt, incident_id=incident_id, kind="escalation", actor=ACTOR,
        text=f"escalation policy {esc.policy} stopped: {why}",
        data={"escalation_id": esc.id, "state": state, "by": by},
    )
    return esc


# ----- the config file -----------------------------------------------------------------------------------


def sync_config(s: Session, rt: Runtime, cfg: OncallConfig) -> dict[str, int]:
    """Make the database match the file for what the file owns: its people, schedules and policies.

    Schedules and policies created through the API are left alone unless the file names them too."""
    now = rt.clock.now()
    for p in cfg.people:
        get_or_create_person(s, handle=p.handle, name=p.name, email=p.email, now=now)
    s.flush()
    names: set[str] = set()
    for i, spec in enumerate(cfg.schedules):
        _check_members(s, spec, where=lambda li, mj, i=i: cfg.where("schedules", i, "layers", li, "members", mj))
        names.add(spec.name)
        row = s.scalar(select(Schedule).where(Schedule.name == spec.name))
        assert spec.domain is not None
        if row is None:
            s.add(Schedule(name=spec.name, domain=spec.domain, workflow=spec.workflow, timezone=spec.timezone,
                           description=spec.description, layers=_spec_layers(spec), source="config",
                           created_by=ACTOR, created_at=now, updated_at=now))
        else:
            new_layers = _spec_layers(spec)
            if (row.domain, row.workflow, row.timezone, row.description, row.layers, row.source) != (
                spec.domain, spec.workflow, spec.timezone, spec.description, new_layers, "config"
            ):
                row.domain, row.workflow, row.timezone = spec.domain, spec.workflow, spec.timezone
                row.description, row.layers, row.source, row.updated_at = spec.description, new_layers, "config", now
    for row in s.scalars(select(Schedule).where(Schedule.source == "config")):
        if row.name not in names:
            s.execute(delete(Override).where(Override.schedule_id == row.id))
            s.delete(row)
    pnames: set[str] = set()
    s.flush()
    for i, pspec in enumerate(cfg.policies):
        put_policy(s, rt, spec=pspec, position=i, source="config",
                   where=lambda j, i=i: cfg.where("policies", i, "levels", j, "target"))
        pnames.add(pspec.name)
    for prow in s.scalars(select(Policy).where(Policy.source == "config")):
        if prow.name not in pnames:
            s.delete(prow)
    s.flush()
    return {"people": len(cfg.people), "schedules": len(cfg.schedules), "policies": len(cfg.policies)}


def layer_summary(layer: dict[str, Any]) -> str:
    li = LayerIn.model_validate(layer)
    kind = li.rotation if li.rotation != "custom" else f"every {li.length}"
    return f"{li.name}: {kind} at {li.handoff} from {li.start.isoformat()}: {', '.join(li.members)}"
