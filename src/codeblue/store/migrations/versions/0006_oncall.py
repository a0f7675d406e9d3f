"""on-call: schedules, overrides, escalation policies, escalations, pages

Revision ID: 0006_oncall
Revises: 0001_auth
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_oncall"
down_revision = "0001_auth"
branch_labels = ("oncall",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "oncall_schedules",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("domain", sa.String(16), nullable=False),
        sa.Column("workflow", sa.String(200), nullable=True),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.Column("layers", sa.JSON, nullable=False),
        sa.Column("source", sa.String(16), nullable=False, server_default="api"),
        sa.Column("created_by", sa.String(64), nullable=False, server_default=""),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.UniqueConstraint("name", name="uq_oncall_schedules_name"),
    )
    op.create_index("ix_oncall_schedules_domain", "oncall_schedules", ["domain"])
    op.create_index("ix_oncall_schedules_workflow", "oncall_schedules", ["workflow"])
    op.create_table(
        "oncall_overrides",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("schedule_id", sa.Integer, sa.ForeignKey("oncall_schedules.id", ondelete="CASCADE"), nullable=False),
        sa.Column("handle", sa.String(64), nullable=False),
        sa.Column("starts_at", sa.Float, nullable=False),
        sa.Column("ends_at", sa.Float, nullable=False),
        sa.Column("reason", sa.Text, nullable=False, server_default=""),
        sa.Column("created_by", sa.String(64), nullable=False, server_default=""),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("ix_oncall_overrides_schedule_id", "oncall_overrides", ["schedule_id"])
    op.create_index("ix_oncall_overrides_ends_at", "oncall_overrides", ["ends_at"])
    op.create_table(
        "oncall_policies",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("position", sa.Integer, nullable=False, server_default="0"),
        sa.Column("match", sa.JSON, nullable=False),
        sa.Column("levels", sa.JSON, nullable=False),
        sa.Column("repeat", sa.Integer, nullable=False, server_default="0"),
        sa.Column("source", sa.String(16), nullable=False, server_default="api"),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.UniqueConstraint("name", name="uq_oncall_policies_name"),
    )
    op.create_table(
        "oncall_escalations",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("incident_id", sa.Integer, nullable=False),
        sa.Column("policy", sa.String(64), nullable=False),
        sa.Column("levels", sa.JSON, nullable=False),
        sa.Column("repeat", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("cycle", sa.Integer, nullable=False, server_default="0"),
        sa.Column("level", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_at", sa.Float, nullable=True),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("ended_at", sa.Float, nullable=True),
        sa.Column("ended_by", sa.String(64), nullable=False, server_default=""),
        sa.Column("history", sa.JSON, nullable=False),
    )
    op.create_index("ix_oncall_escalations_incident_id", "oncall_escalations", ["incident_id"])
    op.create_index("ix_oncall_escalations_state", "oncall_escalations", ["state"])
    op.create_index("ix_oncall_escalations_next_at", "oncall_escalations", ["next_at"])
    op.create_table(
        "oncall_pages",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("incident_id", sa.Integer, nullable=False),
        sa.Column("handle", sa.String(64), nullable=False),
        sa.Column("role", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text, nullable=False, server_default=""),
        sa.Column("dedup_key", sa.String(255), nullable=False),
        sa.Column("channels", sa.JSON, nullable=False),
        sa.Column("actor", sa.String(64), nullable=False, server_default=""),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("ack_expires_at", sa.Float, nullable=False),
        sa.Column("acked_at", sa.Float, nullable=True),
        sa.UniqueConstraint("dedup_key", name="uq_oncall_pages_dedup_key"),
    )
    op.create_index("ix_oncall_pages_incident_id", "oncall_pages", ["incident_id"])


def downgrade() -> None:
    op.drop_table("oncall_pages")
    op.drop_table("oncall_escalations")
    op.drop_table("oncall_policies")
    op.drop_table("oncall_overrides")
    op.drop_table("oncall_schedules")
