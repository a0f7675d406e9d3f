"""The runbook file format: a trigger, the rollback option, the user communication, the post-mortem owner,
and the steps — contain, roll back, page, notify, open the channel, audit, verify, wait.

Runbooks are YAML files in a directory (the user versions them with git). The JSON Schema published at
``GET /v1/runbooks/schema`` is generated from these models.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

FAILURE_TYPES = ("answer_quality", "account_action", "tool", "retrieval", "policy_refusal", "availability", "other")
SEVERITIES = ("SEV1", "SEV2", "SEV3", "SEV4")
INCIDENT_ROLES = ("incident_lead", "technical_lead", "communications_lead", "support_liaison",
                  "infra_owner", "feature_owner", "risk_owner", "ops_owner")
DOMAINS = ("infra", "feature", "risk", "ops")
INDICATORS = ("error_rate", "latency_p95_ms", "refusal_rate", "grounding_failure_rate", "tool_arg_error_rate",
              "wrong_entity_rate", "complaint_rate", "retrieval_age_p95_s", "complaint_cluster")
CONFIG_KINDS = ("prompt", "routing_policy", "model_alias", "retrieval_index", "policy_template", "tool_contract",
                "feature_flag")
FALLBACKS = ("backup_model", "human_queue", "static_answer")
AUDIENCES = ("internal", "status_page", "support", "executive")
#: Scope values may name what the incident's evidence says: $workflow, $segment, $action, $tool.
SCOPE_VARS = ("$workflow", "$segment", "$action", "$tool")

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$")
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 90s, 10m, 2h")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m:
            return float(m.group(1)) * _UNITS[m.group(2)]
    raise ValueError(f"{value!r} is not a duration; use e.g. 90s, 10m, 2h, 1d")


Duration = Annotated[float, Field(json_schema_extra={"type": ["string", "number"], "examples": ["10m", "2h"]})]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Scope(_Model):
    """Where a control applies. `*` is everything; `$segment` etc. take the incident's evidence."""

    workflow: str = "$workflow"
    action: str = "*"
    tool: str = "*"
    dependency: str = "*"
    segment: str = "*"
    tenant: str = "*"

    @field_validator("*")
    @classmethod
    def _value(cls, v: str) -> str:
        if not v or (v.startswith("$") and v not in SCOPE_VARS):
            raise ValueError(f"{v!r} is not a scope value; use a name, '*', or one of {', '.join(SCOPE_VARS)}")
        return v


class Trigger(_Model):
    workflows: list[str] = Field(default_factory=lambda: ["*"], description="glob patterns, e.g. refund-*")
    failure_types: list[Literal[FAILURE_TYPES]] = Field(default_factory=list)  # type: ignore[valid-type]
    indicators: list[Literal[INDICATORS]] = Field(default_factory=list)  # type: ignore[valid-type]
    min_severity: Literal[SEVERITIES] | None = None  # type: ignore[valid-type]
    alerts: list[str] = Field(default_factory=list, description="alert names (e.g. from Alertmanager)")
    catch_all: bool = Field(False, description="run only when no runbook without catch_all matches the incident "
                                               "(a generic runbook for workflows that have no runbook of their own)")


class _Step(_Model):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    approval: Literal["risk_owner", "lead"] | None = Field(
        default=None, description="who must approve before it runs; none = runs automatically"
    )
    auto: bool = Field(default=True, description="run as soon as the incident opens (unless approval is needed)")
    after: list[str] = Field(default_factory=list, description="step ids that must be done first")
    retries: int = Field(default=3, ge=0, le=20)
    why: str = ""


class _Contain(_Step):
    scope: Scope = Field(default_factory=Scope)
    expires: Duration = 7200.0
    narrow: bool = Field(default=True, description="narrow the scope to what the evidence explains")

    @field_validator("expires", mode="before")
    @classmethod
    def _dur(cls, v: Any) -> float:
        return parse_duration(v)


class KillSwitchStep(_Contain):
    type: Literal["kill_switch"]
    fallback: Literal[FALLBACKS] | None = None  # type: ignore[valid-type]
    target: str | None = None

    @model_validator(mode="after")
    def _needs_action(self) -> KillSwitchStep:
        if self.scope.action == "*":
            raise ValueError("a kill_switch needs scope.action: the action path to stop")
        return self


class BreakerStep(_Contain):
    type: Literal["breaker"]
    state: Literal["open", "half_open", "closed"] = "open"

    @model_validator(mode="after")
    def _needs_dep(self) -> BreakerStep:
        if self.scope.dependency == "*":
            raise ValueError("a breaker needs scope.dependency: the model endpoint, tool backend or verifier")
        return self


class FallbackStep(_Contain):
    type: Literal["fallback"]
    fallback: Literal[FALLBACKS]  # type: ignore[valid-type]
    target: str | None = None


class ToolDisableStep(_Contain):
    type: Literal["tool_disable"]

    @model_validator(mode="after")
    def _needs_tool(self) -> ToolDisableStep:
        if self.scope.tool == "*":
            raise ValueError("a tool_disable needs scope.tool")
        return self


class TrafficStep(_Contain):
    type: Literal["traffic"]
    admit: float = Field(ge=0.0, le=1.0)
    fallback: Literal[FALLBACKS] | None = None  # type: ignore[valid-type]
    target: str | None = None


class RolloutFreezeStep(_Contain):
    type: Literal["rollout_freeze"]
    config: str | None = Field(default=None, description="<kind>/<name>, or none for every config")


class RollbackStep(_Step):
    type: Literal["rollback"]
    config: str = Field(description="'suspect' (the top suspect), or <kind>/<name>")
    min_score: float = Field(default=0.5, ge=0.0, le=1.0, description="with 'suspect': the score it must clear")
    kinds: list[str] = Field(default_factory=list, description="with 'suspect': only suspects of these kinds")


class PageStep(_Step):
    type: Literal["page"]
    role: Literal[INCIDENT_ROLES] | None = None  # type: ignore[valid-type]
    domain: Literal[DOMAINS] | None = None  # type: ignore[valid-type]
    message: str = ""

    @model_validator(mode="after")
    def _one(self) -> PageStep:
        if (self.role is None) == (self.domain is None):
            raise ValueError("a page step names exactly one of role or domain")
        return self


class NotifyStep(_Step):
    type: Literal["notify"]
    channel: str
    template: str = "internal_update"
    audience: Literal[AUDIENCES] = "internal"  # type: ignore[valid-type]


class OpenChannelStep(_Step):
    type: Literal["open_channel"]
    channel: str = "slack"


class AuditStep(_Step):
    type: Literal["audit"]
    window: Literal["incident", "suspect_version"] = "incident"
    limit: int = Field(default=500, ge=1, le=100_000)


class Condition(_Model):
    indicator: Literal[INDICATORS]  # type: ignore[valid-type]
    below: float | None = Field(default=None, ge=0)
    baseline_factor: float | None = Field(default=None, gt=0, description="below baseline × this factor")

    @model_validator(mode="after")
    def _one(self) -> Condition:
        if (self.below is None) == (self.baseline_factor is None):
            raise ValueError("a condition has exactly one of below or baseline_factor")
        return self


class VerifyStep(_Step):
    type: Literal["verify"]
    conditions: list[Condition] = Field(min_length=1)
    hold: Duration = 600.0
    min_events: int = Field(default=200, ge=1)

    @field_validator("hold", mode="before")
    @classmethod
    def _dur(cls, v: Any) -> float:
        return parse_duration(v)


class WaitStep(_Step):
    type: Literal["wait"]
    duration: Duration

    @field_validator("duration", mode="before")
    @classmethod
    def _dur(cls, v: Any) -> float:
        return parse_duration(v)


CONTAIN_TYPES = ("kill_switch", "breaker", "fallback", "tool_disable", "traffic", "rollout_freeze")
Step = Annotated[
    KillSwitchStep | BreakerStep | FallbackStep | ToolDisableStep | TrafficStep | RolloutFreezeStep
    | RollbackStep | PageStep | NotifyStep | OpenChannelStep | AuditStep | VerifyStep | WaitStep,
    Field(discriminator="type"),
]
STEP_TYPES = (*CONTAIN_TYPES, "rollback", "page", "notify", "open_channel", "audit", "verify", "wait")


class RollbackOption(_Model):
    config: str = Field(description="'suspect' or <kind>/<name>")
    to: str = Field(default="previous", description="'previous' or a version")


class Communication(_Model):
    template: str = "user_update"
    audience: Literal[AUDIENCES] = "status_page"  # type: ignore[valid-type]
    message: str = ""


class Runbook(_Model):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,80}$")
    description: str = ""
    trigger: Trigger
    rollback_option: RollbackOption
    communication: Communication
    postmortem_owner: Literal[INCIDENT_ROLES]  # type: ignore[valid-type]
    steps: list[Step] = Field(min_length=1)


def json_schema() -> dict[str, Any]:
    schema = Runbook.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://codeblue.dev/schemas/runbook.json"
    schema["title"] = "codeblue runbook"
    return schema
