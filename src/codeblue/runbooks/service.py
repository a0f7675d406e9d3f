"""Runbooks as plain functions for the API and CLI: list, lint, run (or dry-run), and recovery."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from codeblue.errors import Invalid, NotFound
from codeblue.incidents import service as incidents
from codeblue.runbooks import executor
from codeblue.runbooks.lint import lint_text
from codeblue.runtime import Runtime


def list_runbooks(rt: Runtime) -> dict[str, Any]:
    lib = executor.library(rt)
    return {
        "directory": str(lib.directory),
        "runbooks": [
            {"name": lb.runbook.name, "file": lb.file, "content_hash": lb.content_hash,
             "description": lb.runbook.description, "trigger": lb.runbook.trigger.model_dump(mode="json"),
             "rollback_option": lb.runbook.rollback_option.model_dump(mode="json"),
             "communication": lb.runbook.communication.model_dump(mode="json"),
             "postmortem_owner": lb.runbook.postmortem_owner, "steps": len(lb.runbook.steps)}
            for lb in lib.runbooks()
        ],
        "rejected": [{"file": r.file, "errors": [e.as_dict() for e in r.errors]} for r in lib.results() if not r.ok],
    }


def lint(s: Session, *, text: str, file: str) -> dict[str, Any]:
    res = lint_text(text, file, executor.registry(s))
    return {"ok": res.ok, "file": file, "content_hash": res.content_hash, "errors": [e.as_dict() for e in res.errors]}


def run(s: Session, rt: Runtime, *, incident_id: int, runbook: str | None, actor: str,
        dry_run: bool = False) -> dict[str, Any]:
    """Start a runbook by hand (or see what it would do). `runbook=None` uses the stabilisation default."""
    inc = incidents.get_incident(s, incident_id)
    lib = executor.library(rt)
    loaded = None
    if runbook is not None:
        loaded = lib.get(runbook)
        if loaded is None:
            names = ", ".join(sorted(lb.runbook.name for lb in lib.runbooks())) or "none loaded"
            raise NotFound(f"no runbook named {runbook!r}; loaded: {names}", field="runbook")
    if dry_run:
        rb = loaded.runbook if loaded else executor.default_runbook(inc)
        evid = executor.gather_evidence(s, rt, inc)
        return {"dry_run": True, "runbook": rb.name, "evidence": evid, "plan": executor.plan(s, rt, inc, rb, evid)}
    r = executor.start_run(s, rt, incident_id=incident_id, loaded=loaded, actor=actor, proposed=False)
    return {"dry_run": False, **r.as_dict()}


def parse_ramp(text: str | list[float]) -> list[float]:
    if isinstance(text, list):
        return [float(x) for x in text]
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise Invalid(f"{text!r} is not a list of percentages such as 1,10,50,100", field="ramp") from None
