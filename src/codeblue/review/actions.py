"""Corrective actions: what the post-mortem commits to, with an owner (a person), a due date, a kind
(`technical` or `operational`), a status and a link; overdue ones are reminded through the comms outbox."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from codeblue.auth.service import person_by_handle
from codeblue.comms import outbox
from codeblue.errors import Invalid, NotFound
from codeblue.incidents import service as incidents
from codeblue.review.model import ACTION_KINDS, ACTION_STATUSES, CorrectiveAction
from codeblue.runtime import Runtime

log = logging.getLogger(__name__)

OPEN = ("open", "in_progress")


def _check(field: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise Invalid(f"{field} must be one of {', '.join(allowed)}; got {value!r}", field=field,
                      allowed=list(allowed))
    return str(value)


def _text(field: str, value: Any, limit: int, *, required: bool = False) -> str:
    if not isinstance(value, str):
        raise Invalid(f"{field} must be a string", field=field)
    if required and not value.strip():
        raise Invalid(f"{field} must not be empty", field=field)
    if len(value) > limit:
        raise Invalid(f"{field} is longer than {limit} characters", field=field)
    return value.strip() if required else value


def _owner(s: Session, handle: Any) -> str:
    if not isinstance(handle, str) or not handle:
        raise Invalid("owner must be a person's handle", field="owner")
    try:
        return person_by_handle(s, handle.lstrip("@")).handle
    except NotFound:
        raise Invalid(f"owner {handle!r} is not a known person (give the handle of someone with a token)",
                      field="owner") from None


def create(s: Session, rt: Runtime, *, incident_id: int, title: str, kind: str, owner: str, due_at: float,
           link: str = "", note: str = "", status: str = "open", actor: str) -> CorrectiveAction:
    incidents.get_incident(s, incident_id, for_update=True)
    now = float(rt.clock.now())
    a = CorrectiveAction(
        incident_id=incident_id, title=_text("title", title, 300, required=True),
        kind=_check("kind", kind, ACTION_KINDS), owner=_owner(s, owner), due_at=float(due_at),
        status=_check("status", status, ACTION_STATUSES), link=_text("link", link, 2000),
        note=_text("note", note, 20_000), created_at=now, created_by=actor, updated_at=now,
        done_at=now if status == "done" else None,
    )
    s.add(a)
    s.flush()
    incidents.append_entry(s, rt, incident_id=incident_id, kind="action.created", actor=actor,
                           text=f"corrective action #{a.id} ({a.kind}) for @{a.owner}, due "
                                f"{datetime.fromtimestamp(a.due_at, UTC):%Y-%m-%d}: {a.title}",
                           data=a.as_dict())
    return a


def get(s: Session, action_id: int) -> CorrectiveAction:
    a = s.get(CorrectiveAction, action_id)
    if a is None:
        raise NotFound(f"no corrective action {action_id}", field="action_id")
    return a


def update(s: Session, rt: Runtime, *, action_id: int, actor: str, changes: dict[str, Any]) -> CorrectiveAction:
    a = get(s, action_id)
    incidents.get_incident(s, a.incident_id, for_update=True)
    before = a.as_dict()
    for key, value in changes.items():
        if key == "title":
            a.title = _text("title", value, 300, required=True)
        elif key == "kind":
            a.kind = _check("kind", value, ACTION_KINDS)
        elif key == "owner":
            a.owner = _owner(s, value)
        elif key == "due_at":
            a.due_at = float(value)
            a.reminded_at = None
        elif key == "status":
            a.status = _check("status", value, ACTION_STATUSES)
            a.done_at = float(rt.clock.now()) if a.status == "done" else None
        elif key == "link":
            a.link = _text("link", value, 2000)
        elif key == "note":
            a.note = _text("note", value, 20_000)
        else:
            raise Invalid(f"unknown field {key!r}", field=key)
    after = a.as_dict()
    diff = {k: {"from": before[k], "to": after[k]} for k in after if before[k] != after[k] and k != "updated_at"}
    if diff:
        a.updated_at = float(rt.clock.now())
        incidents.append_entry(s, rt, incident_id=a.incident_id, kind="action.updated", actor=actor,
                               text=f"corrective action #{a.id}: " + ", ".join(
                                   f"{k} {v['from']} → {v['to']}" if k in ("status", "owner", "kind") else f"{k} changed"
                                   for k, v in diff.items()),
                               data={"id": a.id, "changes": diff})
    s.flush()
    return a


def list_actions(s: Session, *, incident_id: int | None = None, status: list[str] | None = None,
                 owner: str | None = None, overdue_at: float | None = None, limit: int = 500) -> list[CorrectiveAction]:
    q = select(CorrectiveAction)
    if incident_id is not None:
        q = q.where(CorrectiveAction.incident_id == incident_id)
    if status:
        for st in status:
            _check("status", st, ACTION_STATUSES)
        q = q.where(CorrectiveAction.status.in_(status))
    if owner:
        q = q.where(CorrectiveAction.owner == owner.lstrip("@"))
    if overdue_at is not None:
        q = q.where(CorrectiveAction.status.in_(OPEN), CorrectiveAction.due_at < overdue_at)
    return list(s.scalars(q.order_by(CorrectiveAction.due_at, CorrectiveAction.id).limit(limit)))


def remind_overdue(s: Session, rt: Runtime) -> int:
    """Queue one reminder per overdue item and due date (dedup key `review:action:<id>:<due>`)."""
    now = float(rt.clock.now())
    n = 0
    for a in list_actions(s, overdue_at=now, limit=1000):
        if a.reminded_at is not None and a.reminded_at >= a.due_at:
            continue
        try:
            email = person_by_handle(s, a.owner).email
        except NotFound:
            email = ""
        due = datetime.fromtimestamp(a.due_at, UTC)
        late = (now - a.due_at) / 86400.0
        body = (f"Corrective action #{a.id} from incident #{a.incident_id} was due {due:%Y-%m-%d %H:%MZ} "
                f"({late:.1f} days ago) and is still {a.status}.\n\n{a.kind}: {a.title}\n"
                + (f"Link: {a.link}\n" if a.link else "")
                + "\nMark it done, re-plan its due date, or record why it will not be done.")
        outbox.enqueue(s, rt, channel=rt.settings.review_reminder_channel, kind="reminder",
                       dedup_key=f"review:action:{a.id}:{int(a.due_at)}",
                       subject=f"Overdue corrective action #{a.id}: {a.title[:120]}", body=body,
                       to=[email] if email else [f"@{a.owner}"], incident_id=a.incident_id,
                       data={"action_id": a.id, "owner": a.owner, "due_at": a.due_at})
        a.reminded_at = now
        n += 1
    return n


def reminder_job(rt: Runtime) -> None:
    with rt.db.write() as s:
        n = remind_overdue(s, rt)
    if n:
        log.info("review: reminded %d overdue corrective actions", n)
