"""What the stored events say about an incident: where the harm concentrates, so containment can be as
narrow as the evidence allows (a segment, an action path, a tool) and a whole workflow only when nothing
narrower explains the harm."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from codeblue.signals import store

#: Share of the harmful events that one segment/action/tool must hold before containment narrows to it.
CONCENTRATION = 0.8
MIN_HARMFUL = 5


def is_harmful(ev: dict[str, Any], failure_type: str) -> bool:
    """Whether an event counts as harm for a failure type (the numerators of DESIGN.md's indicators)."""
    kind = ev.get("kind")
    if failure_type == "account_action":
        if kind != "action" or not ev.get("target"):
            return False
        return ev.get("target") != ev.get("subject") and ev.get("target") not in (ev.get("authorized_targets") or [])
    if failure_type == "tool":
        return kind == "tool_call" and ev.get("args_valid") is False
    if failure_type == "policy_refusal":
        return kind == "response" and ev.get("refusal") is True
    if failure_type == "availability":
        return kind == "response" and int(ev.get("status") or 0) >= 500
    if failure_type in ("answer_quality", "retrieval"):
        return (kind == "response" and ev.get("grounded") is False) or kind == "complaint"
    return kind == "complaint" or (kind == "response" and int(ev.get("status") or 0) >= 500)


@dataclass
class Evidence:
    workflow: str
    harmful: int = 0
    total: int = 0
    segment: str | None = None
    action: str | None = None
    tool: str | None = None
    #: the action path / tool that nearly all of the workflow's traffic uses, harmful or not
    action_any: str | None = None
    tool_any: str | None = None
    notes: list[str] = field(default_factory=list)
    versions: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {"workflow": self.workflow, "harmful": self.harmful, "events": self.total, "segment": self.segment,
                "action": self.action, "tool": self.tool, "action_any": self.action_any, "tool_any": self.tool_any,
                "notes": self.notes,
                "top_versions": dict(self.versions.most_common(3))}


def _dominant(counter: Counter[str], harmful: int, what: str, notes: list[str]) -> str | None:
    if harmful < MIN_HARMFUL or not counter:
        notes.append(f"{what}: too few harmful events ({harmful}) to narrow")
        return None
    name, n = counter.most_common(1)[0]
    share = n / harmful
    if share >= CONCENTRATION:
        notes.append(f"{what}: {share:.0%} of harmful events are in {what} {name!r}")
        return name
    notes.append(f"{what}: harm is spread (largest {name!r} holds {share:.0%})")
    return None


def gather(s: Session, *, workflow: str, failure_type: str, since: float, until: float,
           max_events: int = 50_000) -> Evidence:
    """Scan the stored events of one workflow in [since, until) and find where the harm concentrates."""
    ev = Evidence(workflow=workflow)
    segs: Counter[str] = Counter()
    actions: Counter[str] = Counter()
    tools: Counter[str] = Counter()
    all_actions: Counter[str] = Counter()
    all_tools: Counter[str] = Counter()
    cursor: str | None = None
    seen = 0
    while seen < max_events:
        page = store.query_events(s, workflow=workflow, since=since, until=until, limit=5000, cursor=cursor)
        for e in page.events:
            seen += 1
            ev.total += 1
            if e.get("kind") == "action" and e.get("action"):
                all_actions[e["action"]] += 1
            elif e.get("kind") == "tool_call" and e.get("tool"):
                all_tools[e["tool"]] += 1
            if not is_harmful(e, failure_type):
                continue
            ev.harmful += 1
            segs[e.get("segment") or "(none)"] += 1
            if e.get("action"):
                actions[e["action"]] += 1
            if e.get("tool"):
                tools[e["tool"]] += 1
            for k, v in (e.get("versions") or {}).items():
                ev.versions[f"{k}={v}"] += 1
        cursor = page.next_cursor
        if cursor is None:
            break
    seg = _dominant(segs, ev.harmful, "segment", ev.notes)
    ev.segment = None if seg in (None, "(none)") else seg
    if failure_type == "account_action":
        ev.action = _dominant(actions, ev.harmful, "action", ev.notes)
    if failure_type == "tool":
        ev.tool = _dominant(tools, ev.harmful, "tool", ev.notes)
    if all_actions:
        name, n = all_actions.most_common(1)[0]
        ev.action_any = name if n / sum(all_actions.values()) >= CONCENTRATION else None
    if all_tools:
        name, n = all_tools.most_common(1)[0]
        ev.tool_any = name if n / sum(all_tools.values()) >= CONCENTRATION else None
    return ev
