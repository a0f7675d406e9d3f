"""The runbooks directory: lint every file, load the ones that pass, reload when a file changes.

The shipped library (`runbooks/library/`) answers the seed's worked examples; a deployment points
`CODEBLUE_RUNBOOKS_DIR` (or `codeblue serve --runbooks DIR`) at its own git-versioned directory.
"""

from __future__ import annotations

import fnmatch
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from codeblue.runbooks.lint import LintResult, Registry, lint_paths
from codeblue.runbooks.schema import SEVERITIES, Runbook

log = logging.getLogger(__name__)

SHIPPED = Path(__file__).parent / "library"


@dataclass(frozen=True)
class Loaded:
    runbook: Runbook
    file: str
    content_hash: str


class Library:
    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory or SHIPPED
        self._lock = threading.Lock()
        self._loaded: dict[str, Loaded] = {}
        self._results: list[LintResult] = []
        self._fingerprint: tuple[tuple[str, float, int], ...] = ()

    def fingerprint(self) -> tuple[tuple[str, float, int], ...]:
        files = sorted(self.directory.glob("*.y*ml")) if self.directory.is_dir() else []
        out = []
        for f in files:
            try:
                st = f.stat()
            except OSError:
                continue
            out.append((str(f), st.st_mtime, st.st_size))
        return tuple(out)

    def reload(self, registry: Registry | None = None, *, force: bool = False) -> list[LintResult] | None:
        """Re-lint and reload when any file changed (or `force`). Returns the lint results, or None if unchanged."""
        fp = self.fingerprint()
        with self._lock:
            if not force and fp == self._fingerprint:
                return None
            results = lint_paths([self.directory], registry) if self.directory.exists() else []
            loaded: dict[str, Loaded] = {}
            for r in results:
                if r.ok and r.runbook is not None:
                    loaded[r.runbook.name] = Loaded(r.runbook, r.file, r.content_hash)
                else:
                    for e in r.errors:
                        log.warning("runbook not loaded: %s", e)
            self._loaded, self._results, self._fingerprint = loaded, results, fp
            return results

    def runbooks(self) -> list[Loaded]:
        with self._lock:
            return list(self._loaded.values())

    def get(self, name: str) -> Loaded | None:
        with self._lock:
            return self._loaded.get(name)

    def results(self) -> list[LintResult]:
        with self._lock:
            return list(self._results)

    def match(self, incident: dict[str, Any]) -> list[Loaded]:
        """The runbooks whose triggers match; the catch-all ones only when no other one does."""
        found = [lb for lb in self.runbooks() if matches(lb.runbook, incident)]
        specific = [lb for lb in found if not lb.runbook.trigger.catch_all]
        return specific or found


def alert_facts(incident: dict[str, Any]) -> tuple[str | None, str | None]:
    """The indicator and the alert name that opened an incident, from where each source records them:
    the detector's alert (`data.alert.indicator`), Alertmanager's labels (`data.alert.labels.alertname`),
    or an incident opened through the API (`data.indicator`, `data.alertname` or `data.alert` as a name)."""
    data = incident.get("data") or {}
    indicator, name = data.get("indicator"), data.get("alertname")
    alert = data.get("alert")
    if isinstance(alert, dict):
        indicator = indicator or alert.get("indicator")
        labels = alert.get("labels")
        if isinstance(labels, dict):
            name = name or labels.get("alertname")
    elif isinstance(alert, str):
        name = name or alert
    return (indicator if isinstance(indicator, str) else None), (name if isinstance(name, str) else None)


def matches(rb: Runbook, incident: dict[str, Any]) -> bool:
    """Every criterion the trigger names must hold; criteria it leaves out are ignored."""
    t = rb.trigger
    workflows = incident.get("workflows") or []
    if not any(fnmatch.fnmatchcase(w, p) for w in workflows for p in t.workflows):
        return False
    if t.failure_types and incident.get("failure_type") not in t.failure_types:
        return False
    indicator, alert = alert_facts(incident)
    if t.indicators and indicator not in t.indicators:
        return False
    if t.min_severity is not None:
        sev = incident.get("severity", "SEV4")
        if SEVERITIES.index(sev) > SEVERITIES.index(t.min_severity):
            return False
    return not (t.alerts and alert not in t.alerts)
