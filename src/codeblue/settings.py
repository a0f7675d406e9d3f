"""One settings object, from CODEBLUE_* environment variables and an optional TOML/YAML config file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every setting has a safe default for the embedded mode (one process, SQLite)."""

    model_config = SettingsConfigDict(env_prefix="CODEBLUE_", extra="ignore")

    database_url: str = "sqlite:///./codeblue.db"
    data_dir: Path = Path(".codeblue")
    host: str = "127.0.0.1"
    port: int = 8600
    public_url: str = ""
    #: The timeline HMAC key lives outside the database: this file (created 0600 on first start) or the
    #: CODEBLUE_SERVER_KEY variable.
    server_key: str = Field(default="", repr=False)
    server_key_file: Path | None = None
    #: Becomes the first admin token when set and no admin exists yet.
    bootstrap_token: str = Field(default="", repr=False)
    max_body_bytes: int = 16 * 1024 * 1024
    clock_speed: float = 1.0
    environment: str = "production"
    runbooks_dir: Path | None = None
    detect_config: Path | None = None
    oncall_config: Path | None = None
    #: How often (clock seconds) the on-call, comms and detector config files are checked for changes and re-applied.
    config_reload_interval: float = 5.0
    #: On-call: how often the escalation job looks for unacknowledged pages (clock seconds), how long a signed
    #: acknowledgement link in a page stays valid, and the outbox channels a page goes to.
    oncall_tick: float = 5.0
    oncall_ack_ttl: float = 24 * 3600.0
    oncall_page_channels: list[str] = Field(default_factory=lambda: ["email"])
    comms_config: Path | None = None
    #: Outbox delivery: attempts before dead-lettering, backoff (clock seconds), per-send timeout, parallel sends.
    comms_max_attempts: int = 8
    comms_retry_base: float = 5.0
    comms_retry_cap: float = 900.0
    comms_send_timeout: float = 10.0
    comms_sender_concurrency: int = 16
    #: How often (clock seconds) the cadence job checks for overdue updates.
    comms_cadence_tick: float = 0.5
    event_retention_days: float = 30.0
    #: Largest accepted /v1/events and /v1/traces body after Content-Encoding (a gzip bomb gets 413).
    intake_max_bytes: int = 16 * 1024 * 1024
    #: The Alertmanager label that names an alert's workflow.
    alert_workflow_label: str = "workflow"
    #: A gen_ai.evaluation.result score at or above this means grounded (when the result has no label).
    otlp_grounded_threshold: float = 0.5
    #: Redaction rules applied to event text at intake: name → regular expression.
    redact: dict[str, str] = Field(
        default_factory=lambda: {
            "email": r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}",
            "card": r"\b\d(?:[ -]?\d){12,18}\b",
        }
    )
    #: Controls: SSE heartbeat period, per-subscriber queue bound, cross-replica poll, revision log kept.
    controls_heartbeat_s: float = 10.0
    controls_queue_size: int = 256
    controls_poll_s: float = 0.25
    controls_revision_log_keep: int = 10000
    #: SDK clients: a Guard is stale past this many seconds unconfirmed, silent past this many without a
    #: heartbeat, left out of the list past the gone period, and forgotten after the retention period.
    sdk_stale_after_s: float = 60.0
    sdk_silent_after_s: float = 120.0
    sdk_client_gone_s: float = 3600.0
    sdk_client_retention_s: float = 7 * 86400.0
    #: Review: audit queue bound (events scanned per incident), look-back when an incident has no onset,
    #: numeric event attributes that weigh in the audit's risk ranking, reminder channel and job period for
    #: overdue corrective actions, and whether GET /metrics needs a viewer token (Prometheus `authorization`).
    review_audit_max_candidates: int = 200_000
    review_audit_lookback_s: float = 3600.0
    review_amount_fields: list[str] = Field(default_factory=lambda: ["amount"])
    review_reminder_channel: str = "email"
    review_reminder_tick: float = 300.0
    metrics_require_token: bool = True
    #: Console: session lifetime (seconds), Secure cookies (default: when public_url is https), how often the
    #: live-update watcher polls the database for changes made by other replicas, timeline entries per page.
    console_session_ttl_s: float = 12 * 3600.0
    console_secure_cookies: bool | None = None
    console_poll_s: float = 0.5
    console_timeline_page: int = 200
    workers: bool = True
    log_json: bool | None = None
    config_file: Path | None = None

    @field_validator("redact")
    @classmethod
    def _redact_rules_compile(cls, rules: dict[str, str]) -> dict[str, str]:
        import re

        for name, pattern in rules.items():
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"redaction rule {name!r}: {exc}") from None
        return rules

    @property
    def key_file(self) -> Path:
        return self.server_key_file or self.data_dir / "server.key"

    @property
    def base_url(self) -> str:
        return self.public_url or f"http://{self.host}:{self.port}"


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment, then the config file named by CODEBLUE_CONFIG_FILE, then overrides."""
    file_values: dict[str, Any] = {}
    cfg = overrides.get("config_file") or os.environ.get("CODEBLUE_CONFIG_FILE")
    if cfg:
        with open(cfg, encoding="utf-8") as fh:
            loaded = yaml.safe_load(fh) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{cfg}: the config file must be a mapping of setting names to values")
        file_values = loaded
    env_settings = Settings()
    merged = {**file_values, **env_settings.model_dump(exclude_unset=True), **overrides}
    return Settings(**merged)
