"""runbook runs, steps and recovery plans

Revision ID: 0008_runbooks
Revises: 0001_auth
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_runbooks"
down_revision = "0001_auth"
branch_labels = ("runbooks",)
depends_on = "0002_incidents"


def upgrade() -> None:
    op.create_table(
        "runbook_runs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("incident_id", sa.Integer, sa.ForeignKey("incidents.id"), nullable=False),
        sa.Column("runbook", sa.String(100), nullable=False),
        sa.Column("file", sa.String(500), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("dry_run", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("context", sa.JSON, nullable=False),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.UniqueConstraint("incident_id", "runbook", name="uq_runbook_runs_incident_runbook"),
    )
    op.create_index("ix_runbook_runs_incident_id", "runbook_runs", ["incident_id"])
    op.create_table(
        "runbook_steps",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runbook_runs.id"), nullable=False),
        sa.Column("incident_id", sa.Integer, sa.ForeignKey("incidents.id"), nullable=False),
        sa.Column("step_id", sa.String(64), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("state", sa.String(24), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", sa.Float, nullable=True),
        sa.Column("started_at", sa.Float, nullable=True),
        sa.Column("finished_at", sa.Float, nullable=True),
        sa.Column("requested_by", sa.String(64), nullable=True),
        sa.Column("approved_by", sa.String(64), nullable=True),
        sa.Column("denied_by", sa.String(64), nullable=True),
        sa.Column("result", sa.JSON, nullable=False),
        sa.Column("error", sa.Text, nullable=False, server_default=""),
        sa.UniqueConstraint("run_id", "step_id", name="uq_runbook_steps_run_step"),
    )
    op.create_index("ix_runbook_steps_run_id", "runbook_steps", ["run_id"])
    op.create_index("ix_runbook_steps_incident_id", "runbook_steps", ["incident_id"])
    op.create_index("ix_runbook_steps_state", "runbook_steps", ["state"])
    op.create_table(
        "recovery_plans",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("incident_id", sa.Integer, sa.ForeignKey("incidents.id"), nullable=False),
        sa.Column("state", sa.String(24), nullable=False),
        sa.Column("ramp", sa.JSON, nullable=False),
        sa.Column("hold_s", sa.Float, nullable=False),
        sa.Column("min_events", sa.Integer, nullable=False),
        sa.Column("stage", sa.Integer, nullable=False, server_default="0"),
        sa.Column("stage_started_at", sa.Float, nullable=True),
        sa.Column("held_since", sa.Float, nullable=True),
        sa.Column("conditions", sa.JSON, nullable=False),
        sa.Column("original", sa.JSON, nullable=False),
        sa.Column("traffic_ids", sa.JSON, nullable=False),
        sa.Column("side_effects", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("requested_by", sa.String(64), nullable=False),
        sa.Column("approved_by", sa.String(64), nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("reason", sa.Text, nullable=False, server_default=""),
    )
    op.create_index("ix_recovery_plans_incident_id", "recovery_plans", ["incident_id"])


def downgrade() -> None:
    op.drop_table("recovery_plans")
    op.drop_table("runbook_steps")
    op.drop_table("runbook_runs")
