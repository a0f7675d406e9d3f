"""Lint runbook files: every error with ``file:line:column``, what was found and what is allowed.

A runbook that fails lint is never loaded. Offline, lint checks the format and the references it can
know (step types, scopes, roles, config kinds, step ids); given the server's registry (configs and
channels that exist) it also checks that referenced configs and channels exist.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from codeblue.runbooks.schema import CONFIG_KINDS, STEP_TYPES, Runbook


@dataclass(frozen=True)
class LintError:
    file: str
    line: int
    column: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{self.file}:{self.line}:{self.column}: {where}{self.message}"

    def as_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "column": self.column, "path": self.path,
                "message": self.message}


@dataclass
class Registry:
    """What exists on the server, for reference checks. None = unknown (offline lint)."""

    configs: set[str] | None = None  # "<kind>/<name>"
    kinds: set[str] = field(default_factory=lambda: set(CONFIG_KINDS))
    channels: set[str] | None = None


@dataclass
class LintResult:
    file: str
    runbook: Runbook | None
    errors: list[LintError]
    content_hash: str

    @property
    def ok(self) -> bool:
        return not self.errors and self.runbook is not None


class _Marks:
    """Positions (1-based line and column) of every node of a YAML document, by path."""

    def __init__(self) -> None:
        self.pos: dict[tuple[Any, ...], tuple[int, int]] = {}
        self.key_pos: dict[tuple[Any, ...], tuple[int, int]] = {}
        self.dupes: list[tuple[tuple[Any, ...], tuple[int, int]]] = []

    def build(self, node: yaml.Node, path: tuple[Any, ...] = ()) -> Any:
        self.pos[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for k_node, v_node in node.value:
                key = yaml.safe_load(yaml.serialize(k_node)) if not isinstance(k_node, yaml.ScalarNode) \
                    else k_node.value
                self.key_pos[(*path, key)] = (k_node.start_mark.line + 1, k_node.start_mark.column + 1)
                if key in out:
                    self.dupes.append(((*path, key), (k_node.start_mark.line + 1, k_node.start_mark.column + 1)))
                out[key] = self.build(v_node, (*path, key))
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.build(v, (*path, i)) for i, v in enumerate(node.value)]
        return yaml.safe_load(yaml.serialize(node))

    def at(self, loc: Iterable[Any], data: Any, *, key: bool = False) -> tuple[tuple[int, int], str]:
        """The position of the deepest existing node along a validation error's location (of its key, with
        `key`, for errors about the key itself)."""
        best: tuple[Any, ...] = ()
        cur = data
        parts: list[str] = []
        for el in loc:
            if isinstance(cur, dict) and el in cur:
                cur = cur[el]
                best = (*best, el)
                parts.append(str(el))
            elif isinstance(cur, list) and isinstance(el, int) and 0 <= el < len(cur):
                cur = cur[el]
                best = (*best, el)
                parts.append(f"[{el}]")
            elif isinstance(el, str) and el in STEP_TYPES:
                continue  # the discriminated union's tag, not a key in the file
            else:
                parts.append(str(el))
                break
        if key and best in self.key_pos:
            return self.key_pos[best], _join(parts)
        return self.pos.get(best, (1, 1)), _join(parts)


def _join(parts: list[str]) -> str:
    out = ""
    for p in parts:
        out += p if (p.startswith("[") or not out) else f".{p}"
    return out


def _describe(err: dict[str, Any]) -> str:
    msg = str(err.get("msg", "invalid"))
    typ = err.get("type", "")
    inp = err.get("input")
    if typ == "missing":
        return "required field is missing"
    if typ == "extra_forbidden":
        return "unknown field (not part of the runbook format)"
    if typ in ("literal_error", "enum"):
        expected = (err.get("ctx") or {}).get("expected", "")
        return f"found {inp!r}; allowed: {expected}"
    if typ == "union_tag_invalid":
        return f"unknown step type {inp if not isinstance(inp, dict) else inp.get('type')!r}; allowed: " + \
            ", ".join(STEP_TYPES)
    if typ == "union_tag_not_found":
        return "a step needs a type; allowed: " + ", ".join(STEP_TYPES)
    msg = msg.removeprefix("Value error, ")
    if inp is not None and not isinstance(inp, (dict, list)):
        return f"{msg} (found {inp!r})"
    return msg


def lint_text(text: str, file: str = "<runbook>", registry: Registry | None = None) -> LintResult:
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    marks = _Marks()
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = getattr(exc, "problem", None) or str(exc)
        return LintResult(file, None, [LintError(file, line, col, "", f"YAML syntax: {problem}")], digest)
    if node is None:
        return LintResult(file, None, [LintError(file, 1, 1, "", "empty file; a runbook is a YAML mapping")], digest)
    data = marks.build(node)
    errors = [LintError(file, lc[0], lc[1], _join([str(p) for p in path]), "duplicate key")
              for path, lc in marks.dupes]
    if not isinstance(data, dict):
        errors.append(LintError(file, 1, 1, "", f"a runbook is a YAML mapping, found {type(data).__name__}"))
        return LintResult(file, None, errors, digest)
    runbook: Runbook | None = None
    try:
        runbook = Runbook.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            loc = tuple(err["loc"])
            if err.get("type") == "union_tag_invalid":
                loc = (*loc, "type")
            (line, col), path = marks.at(loc, data, key=err.get("type") == "extra_forbidden")
            errors.append(LintError(file, line, col, path, _describe(dict(err))))
    errors.extend(_references(data, marks, file, registry or Registry()))
    errors.sort(key=lambda e: (e.line, e.column))
    return LintResult(file, runbook if not errors else None, errors, digest)


def _config_ref(value: str, path: tuple[Any, ...], data: Any, marks: _Marks, file: str, reg: Registry,
                allow_suspect: bool) -> list[LintError]:
    (line, col), where = marks.at(path, data)
    if allow_suspect and value == "suspect":
        return []
    if "/" not in value:
        allowed = "'suspect' or <kind>/<name>" if allow_suspect else "<kind>/<name>"
        return [LintError(file, line, col, where, f"found {value!r}; allowed: {allowed}")]
    kind, _name = value.split("/", 1)
    if kind not in reg.kinds:
        return [LintError(file, line, col, where,
                          f"unknown config kind {kind!r}; allowed: {', '.join(sorted(reg.kinds))}")]
    if reg.configs is not None and value not in reg.configs:
        return [LintError(file, line, col, where, f"config {value!r} does not exist on the server")]
    return []


def _references(data: dict[str, Any], marks: _Marks, file: str, reg: Registry) -> list[LintError]:
    """Checks that need the whole file or the registry; run on the raw data so they report even when
    other parts of the file fail validation."""
    errs: list[LintError] = []
    seen: set[str] = set()
    steps = data.get("steps")
    for i, step in enumerate(steps if isinstance(steps, list) else []):
        if not isinstance(step, dict):
            continue
        base: tuple[Any, ...] = ("steps", i)
        sid = step.get("id")
        if isinstance(sid, str) and sid in seen:
            (line, col), where = marks.at((*base, "id"), data)
            errs.append(LintError(file, line, col, where, f"step id {sid!r} is used twice; ids are unique"))
        after = step.get("after")
        for j, dep in enumerate(after if isinstance(after, list) else []):
            if dep not in seen:
                (line, col), where = marks.at((*base, "after", j), data)
                errs.append(LintError(file, line, col, where,
                                      f"{dep!r} is not an earlier step; allowed: {', '.join(sorted(seen)) or 'none'}"))
        if isinstance(sid, str):
            seen.add(sid)
        cfg = step.get("config")
        if step.get("type") == "rollback" and isinstance(cfg, str):
            errs.extend(_config_ref(cfg, (*base, "config"), data, marks, file, reg, True))
        if step.get("type") == "rollout_freeze" and isinstance(cfg, str):
            errs.extend(_config_ref(cfg, (*base, "config"), data, marks, file, reg, False))
        channel = step.get("channel")
        if isinstance(channel, str) and reg.channels is not None and channel not in reg.channels:
            (line, col), where = marks.at((*base, "channel"), data)
            allowed = ", ".join(sorted(reg.channels)) or "none configured"
            errs.append(LintError(file, line, col, where, f"channel {channel!r} does not exist; allowed: {allowed}"))
    opt = data.get("rollback_option")
    if isinstance(opt, dict) and isinstance(opt.get("config"), str):
        errs.extend(_config_ref(opt["config"], ("rollback_option", "config"), data, marks, file, reg, True))
    return errs


def lint_file(path: Path, registry: Registry | None = None) -> LintResult:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return LintResult(str(path), None, [LintError(str(path), 1, 1, "", f"cannot read: {exc}")], "")
    return lint_text(text, str(path), registry)


def lint_paths(paths: Iterable[Path], registry: Registry | None = None) -> list[LintResult]:
    results: list[LintResult] = []
    for p in paths:
        if p.is_dir():
            results.extend(lint_file(f, registry) for f in sorted(p.glob("*.y*ml")))
        else:
            results.append(lint_file(p, registry))
    names: dict[str, str] = {}
    for r in results:
        if r.runbook is not None:
            if r.runbook.name in names:
                r.errors.append(LintError(r.file, 1, 1, "name",
                                          f"runbook name {r.runbook.name!r} is also used by {names[r.runbook.name]}"))
                r.runbook = None
            else:
                names[r.runbook.name] = r.file
    return results
