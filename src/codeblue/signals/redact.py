"""Redaction at intake: named regular expressions (``Settings.redact``) replace sensitive text with
``[redacted:<name>]`` in an event's `input`, `output`, `text` and every string inside `attributes`,
before the event is stored, logged or handed to the detectors.
"""

from __future__ import annotations

import re
from typing import Any

from codeblue.errors import Invalid

#: The Event v1 fields that carry free text.
TEXT_FIELDS = ("input", "output", "text")


class Redactor:
    """Compiled redaction rules; one combined pattern so clean text costs a single scan."""

    def __init__(self, rules: dict[str, str]) -> None:
        self.rules = dict(rules)
        parts: list[str] = []
        self._names: dict[str, str] = {}
        for i, (name, pattern) in enumerate(self.rules.items()):
            try:
                compiled = re.compile(pattern)
            except re.error as exc:
                raise Invalid(f"redaction rule {name!r}: {exc}", field=f"redact.{name}") from None
            if compiled.groupindex:
                # Named groups would clash in the combined pattern; rules are matched as a whole anyway.
                pattern = re.sub(r"\(\?P<[^>]+>", "(?:", pattern)
            group = f"r{i}"
            self._names[group] = name
            parts.append(f"(?P<{group}>{pattern})")
        self._pattern: re.Pattern[str] | None = re.compile("|".join(parts)) if parts else None
        #: False when there are no rules (nothing to do).
        self.active = self._pattern is not None

    def _replace(self, m: re.Match[str]) -> str:
        return f"[redacted:{self._names[m.lastgroup or '']}]"

    def text(self, value: str) -> str:
        """`value` with every match of every rule replaced."""
        p = self._pattern
        if p is None or p.search(value) is None:
            return value
        return p.sub(self._replace, value)

    def value(self, value: Any) -> Any:
        """Redact strings anywhere inside a JSON value (objects, lists)."""
        t = type(value)
        if t is str:
            return self.text(value)
        if t is dict:
            return {k: self.value(v) for k, v in value.items()}
        if t is list:
            return [self.value(v) for v in value]
        return value

    def event(self, ev: dict[str, Any]) -> dict[str, Any]:
        """Redact a normalised Event v1 dict in place and return it."""
        if self._pattern is None:
            return ev
        for name in TEXT_FIELDS:
            v = ev.get(name)
            if v is not None:
                ev[name] = self.text(v)
        attrs = ev.get("attributes")
        if attrs:
            ev["attributes"] = self.value(attrs)
        return ev


_CACHE: dict[tuple[tuple[str, str], ...], Redactor] = {}


def redactor_for(rules: dict[str, str]) -> Redactor:
    """The compiled Redactor for a rule set (compiled once per distinct set)."""
    key = tuple(sorted(rules.items()))
    r = _CACHE.get(key)
    if r is None:
        r = _CACHE[key] = Redactor(rules)
    return r
