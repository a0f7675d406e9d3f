"""Which rollout freeze applies to a config (kept apart so `changes` can ask without importing the service)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from codeblue.controls.model import Control


def active_freezes(s: Session, *, environment: str) -> list[Control]:
    return list(
        s.scalars(
            select(Control)
            .where(Control.environment == environment, Control.active.is_(True), Control.type == "rollout_freeze")
            .order_by(Control.id)
        )
    )


def freeze_applies(control: Control, *, kind: str, name: str, workflows: list[str]) -> bool:
    """A freeze names one config (`params.config`), or covers every config touching its scope's workflow."""
    target = control.params.get("config")
    if target:
        return bool(target == f"{kind}/{name}")
    wf = control.scope.get("workflow", "*")
    return wf == "*" or wf in workflows


def find_freeze(freezes: list[Control], *, kind: str, name: str, workflows: list[str]) -> Control | None:
    for c in freezes:
        if freeze_applies(c, kind=kind, name=name, workflows=workflows):
            return c
    return None
