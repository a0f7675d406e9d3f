"""Write a timeline entry on the linked incident, when the incidents service is installed.

Imported lazily so `changes` and `controls` stay usable without `incidents`.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

from sqlalchemy.orm import Session

from codeblue.runtime import Runtime


def _incidents() -> Any | None:
    if importlib.util.find_spec("codeblue.incidents.service") is None:
        return None
    return importlib.import_module("codeblue.incidents.service")


def check_incident(s: Session, incident_id: int | None) -> None:
    """Refuse a link to an incident that does not exist (NotFound names the field).

    The incident row is locked here, before the config and revision locks, so every path takes the locks in
    one order (incident → config → revision) and two transactions cannot deadlock.
    """
    svc = _incidents()
    if incident_id is None or svc is None:
        return
    from codeblue.errors import NotFound

    try:
        svc.get_incident(s, incident_id, for_update=True)
    except NotFound as exc:
        raise NotFound(f"no incident {incident_id}", field="incident_id") from exc


def note_on_incident(
    s: Session, rt: Runtime, *, incident_id: int | None, kind: str, text: str, actor: str, data: dict[str, Any]
) -> None:
    svc = _incidents()
    if incident_id is None or svc is None:
        return
    svc.append_entry(s, rt, incident_id=incident_id, kind=kind, text=text, actor=actor, data=data)
