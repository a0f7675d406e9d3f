"""An OpenFeature provider backed by a codeblue `Guard` (needs the ``openfeature`` extra: ``openfeature-sdk``).

Applications that already evaluate flags through OpenFeature get codeblue's containment without a second API:

    from openfeature import api
    from codeblue.sdk import Guard
    from codeblue.sdk.openfeature import CodeblueProvider

    guard = Guard(url=..., token=..., service="support-bot")
    api.set_provider_and_wait(CodeblueProvider(guard))
    flags = api.get_client()
    ctx = EvaluationContext(targeting_key=account_id, attributes={"segment": "refund_over_100"})
    if flags.get_boolean_value("refund-desk.issue_refund", True, ctx): ...
    prompt_version = flags.get_string_value("prompt/refund-assistant", "v1", ctx)

Flag keys:

* boolean ``"<workflow>.<action>"`` (or ``"<workflow>"``) → ``guard.decide(...).allowed``. The evaluation
  context's ``targeting_key`` is the request key (traffic fractions); its attributes ``tool``,
  ``dependency``, ``segment`` and ``tenant`` narrow the scope. The variant names the control that blocked
  (``"kill_switch:12"``) or is ``"allowed"``; the flag metadata carries the decision (reason, control id,
  incident id, fallback, target, revision, source).
* string ``"<kind>/<name>"`` → the config version this targeting key is served (stable or the rolling-out
  candidate); object ``"<kind>/<name>"`` → that version's content.

Events: PROVIDER_READY once the Guard has a snapshot (or, when the server is unreachable at start, once
``ready_timeout`` has passed: the Guard then answers from its last-known-good file or its defaults, and
PROVIDER_STALE follows when it goes stale); PROVIDER_CONFIGURATION_CHANGED on each new revision;
PROVIDER_STALE when the Guard goes stale; PROVIDER_READY again when it is fresh.
Evaluation is as cheap as ``decide`` plus OpenFeature's own overhead; it never does I/O.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from openfeature.evaluation_context import EvaluationContext
from openfeature.event import ProviderEventDetails
from openfeature.exception import FlagNotFoundError, ParseError, TypeMismatchError
from openfeature.flag_evaluation import FlagResolutionDetails, Reason
from openfeature.provider import AbstractProvider, Metadata

from codeblue.sdk.decision import Decision

if TYPE_CHECKING:
    from openfeature.flag_evaluation import FlagValueType

    from codeblue.sdk.guard import Guard

__all__ = ["CodeblueProvider"]

_SCOPE_ATTRS = ("tool", "dependency", "segment", "tenant")


def _metadata(values: Mapping[str, Any]) -> dict[str, bool | int | float | str]:
    return {k: v for k, v in values.items() if isinstance(v, bool | int | float | str)}


class CodeblueProvider(AbstractProvider):
    """OpenFeature provider over a codeblue Guard: kill switches as boolean flags, config versions as strings.

    The provider does not own the Guard: ``shutdown`` detaches it and closes the Guard only when
    ``close_guard=True``.
    """

    def __init__(self, guard: Guard, *, ready_timeout: float = 5.0, close_guard: bool = False) -> None:
        super().__init__()
        if ready_timeout < 0:
            raise ValueError("ready_timeout must be >= 0 seconds")
        self.guard = guard
        self.ready_timeout = ready_timeout
        self.close_guard = close_guard
        self._lock = threading.Lock()
        self._unsubscribe: Callable[[], None] | None = None
        self._stale = False
        self._initialised = False

    # ----- lifecycle ---------------------------------------------------------------------------------

    def get_metadata(self) -> Metadata:
        return Metadata(name="codeblue")

    def initialize(self, evaluation_context: EvaluationContext) -> None:
        """Subscribe to the Guard and wait (up to `ready_timeout`) for its first snapshot.

        Returns either way: with the server unreachable the Guard still answers from its last-known-good
        file or its per-action defaults, and staleness is reported as PROVIDER_STALE."""
        with self._lock:
            if self._unsubscribe is None:
                self._unsubscribe = self.guard.add_listener(self._on_guard_event)
        self.guard.wait_ready(self.ready_timeout)
        self._initialised = True

    def shutdown(self) -> None:
        with self._lock:
            unsubscribe, self._unsubscribe = self._unsubscribe, None
        if unsubscribe is not None:
            unsubscribe()
        if self.close_guard:
            self.guard.close()

    def _details(self, revision: int, message: str) -> ProviderEventDetails:
        return ProviderEventDetails(message=message, metadata={"revision": revision, "source": self.guard.source})

    def _on_guard_event(self, kind: str, revision: int) -> None:
        """Guard listener (background thread): translate Guard events into OpenFeature provider events."""
        if kind == "stale":
            self._stale = True
            self.emit_provider_stale(self._details(revision, f"codeblue controls are stale (revision {revision})"))
        elif kind == "fresh":
            self._stale = False
            self.emit_provider_ready(self._details(revision, f"codeblue controls are fresh (revision {revision})"))
        elif kind in ("ready", "changed"):
            if self._stale:
                self._stale = False
                self.emit_provider_ready(self._details(revision, f"codeblue controls are fresh (revision {revision})"))
            if self._initialised or kind == "changed":
                self.emit_provider_configuration_changed(
                    self._details(revision, f"codeblue controls revision {revision}")
                )

    # ----- evaluation ---------------------------------------------------------------------------------

    @staticmethod
    def _context(ctx: EvaluationContext | None) -> tuple[str | None, dict[str, str | None]]:
        if ctx is None:
            return None, dict.fromkeys(_SCOPE_ATTRS)
        attrs = ctx.attributes or {}
        scope: dict[str, str | None] = {}
        for name in _SCOPE_ATTRS:
            val = attrs.get(name)
            if val is not None and not isinstance(val, str):
                raise ParseError(f"evaluation context attribute {name!r} must be a string, got {type(val).__name__}")
            scope[name] = val
        return ctx.targeting_key, scope

    @staticmethod
    def _reason(d: Decision) -> str:
        if d.source == "default":
            return Reason.DEFAULT
        if d.source == "error":
            return Reason.ERROR
        if d.source == "lkg":
            return Reason.CACHED
        if not d.allowed:
            return Reason.SPLIT if d.control_type == "traffic" else Reason.TARGETING_MATCH
        return Reason.STATIC

    def resolve_boolean_details(
        self, flag_key: str, default_value: bool, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[bool]:
        if "/" in flag_key:
            raise TypeMismatchError(f"{flag_key!r} is a config (<kind>/<name>): evaluate it as a string flag")
        workflow, _, action = flag_key.partition(".")
        if not workflow:
            raise FlagNotFoundError(f"boolean flag keys are '<workflow>.<action>' or '<workflow>', got {flag_key!r}")
        key, scope = self._context(evaluation_context)
        d = self.guard.decide(workflow, action=action or None, key=key, **scope)
        if d.allowed:
            variant = "allowed"
        elif d.control_type:
            variant = f"{d.control_type}:{d.control_id}" if d.control_id is not None else d.control_type
        else:
            variant = "blocked"
        meta = _metadata({
            "reason": d.reason, "control_id": d.control_id, "incident_id": d.incident_id,
            "control_type": d.control_type, "fallback": d.fallback, "target": d.target,
            "revision": d.revision, "source": d.source, "stale": self._stale,
        })
        return FlagResolutionDetails(value=d.allowed, variant=variant, reason=self._reason(d), flag_metadata=meta)

    def _config(self, flag_key: str, evaluation_context: EvaluationContext | None) -> Any:
        kind, sep, name = flag_key.partition("/")
        if not sep or not kind or not name:
            raise FlagNotFoundError(f"config flag keys are '<kind>/<name>' (e.g. 'prompt/refund-assistant'), got {flag_key!r}")
        key, _ = self._context(evaluation_context)
        cv = self.guard.config(kind, name, key=key)
        if cv is None:
            raise FlagNotFoundError(f"no config {flag_key!r} in the codeblue snapshot (revision {self.guard.revision})")
        return cv

    def resolve_string_details(
        self, flag_key: str, default_value: str, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[str]:
        cv = self._config(flag_key, evaluation_context)
        meta = _metadata({"kind": cv.kind, "name": cv.name, "revision": cv.revision, "candidate": cv.candidate,
                          "source": self.guard.source, "stale": self._stale})
        return FlagResolutionDetails(
            value=cv.version, variant="candidate" if cv.candidate else "stable",
            reason=Reason.SPLIT if cv.candidate else Reason.STATIC, flag_metadata=meta,
        )

    def resolve_object_details(
        self,
        flag_key: str,
        default_value: Sequence[FlagValueType] | Mapping[str, FlagValueType],
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[Sequence[FlagValueType] | Mapping[str, FlagValueType]]:
        cv = self._config(flag_key, evaluation_context)
        content = cv.content
        if not isinstance(content, Mapping | list):
            raise TypeMismatchError(
                f"config {flag_key!r} version {cv.version} holds {type(content).__name__}, not an object or list: "
                "evaluate it as a string flag for its version"
            )
        meta = _metadata({"kind": cv.kind, "name": cv.name, "version": cv.version, "revision": cv.revision,
                          "candidate": cv.candidate, "source": self.guard.source})
        return FlagResolutionDetails(
            value=content, variant=cv.version, reason=Reason.SPLIT if cv.candidate else Reason.STATIC,
            flag_metadata=meta,
        )

    def resolve_integer_details(
        self, flag_key: str, default_value: int, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[int]:
        raise TypeMismatchError("codeblue flags are boolean (<workflow>.<action>) or string/object (<kind>/<name>)")

    def resolve_float_details(
        self, flag_key: str, default_value: float, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[float]:
        raise TypeMismatchError("codeblue flags are boolean (<workflow>.<action>) or string/object (<kind>/<name>)")
