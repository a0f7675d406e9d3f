"""The incident lifecycle as an explicit transition table.

``triggered → investigating → contained → monitoring → resolved → closed``. Forward moves may skip states (an
automatic runbook contains a triggered incident directly); the only backward move is reopening a
``monitoring`` or ``resolved`` incident to ``investigating``. ``closed`` is final.
"""

from __future__ import annotations

from codeblue.incidents.model import STATUSES

_FORWARD = {s: STATUSES[i + 1 :] for i, s in enumerate(STATUSES)}
#: Backward moves: reopening after a verification failed.
REOPEN: dict[str, tuple[str, ...]] = {"monitoring": ("investigating",), "resolved": ("investigating",)}

#: status → the statuses it may move to.
TRANSITIONS: dict[str, tuple[str, ...]] = {s: tuple(_FORWARD[s]) + REOPEN.get(s, ()) for s in STATUSES}

#: Moving to a status sets these milestones (once): reaching monitoring or later means the bleeding stopped.
MILESTONES_ON_ENTRY: dict[str, tuple[str, ...]] = {
    "triggered": (),
    "investigating": (),
    "contained": ("contained",),
    "monitoring": ("contained",),
    "resolved": ("contained", "resolved"),
    "closed": ("contained", "resolved"),
}


def allowed_moves(status: str) -> tuple[str, ...]:
    return TRANSITIONS.get(status, ())


def is_allowed(old: str, new: str) -> bool:
    return new in TRANSITIONS.get(old, ())


def is_reopen(old: str, new: str) -> bool:
    return new in REOPEN.get(old, ())
