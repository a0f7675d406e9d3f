"""comms: outbox, delivery attempts, channels, updates, incident projection

Revision ID: 0007_comms
Revises: 0001_auth
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_comms"
down_revision = "0001_auth"
branch_labels = ("comms",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "comms_outbox",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("channel", sa.String(100), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("dedup_key", sa.String(255), nullable=False),
        sa.Column("subject", sa.String(500), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("to", sa.JSON, nullable=False),
        sa.Column("incident_id", sa.Integer, nullable=True),
        sa.Column("data", sa.JSON, nullable=False),
        sa.Column("state", sa.String(16), nullable=False, server_default="pending"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", sa.Float, nullable=False),
        sa.Column("claimed_until", sa.Float, nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("delivered_at", sa.Float, nullable=True),
        sa.Column("last_error", sa.Text, nullable=False, server_default=""),
        sa.Column("last_status", sa.Integer, nullable=True),
        sa.UniqueConstraint("dedup_key", name="uq_comms_outbox_dedup_key"),
    )
    op.create_index("ix_comms_outbox_due", "comms_outbox", ["state", "next_attempt_at"])
    op.create_index("ix_comms_outbox_incident_id", "comms_outbox", ["incident_id"])
    op.create_table(
        "comms_attempts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("message_id", sa.Integer, sa.ForeignKey("comms_outbox.id", ondelete="CASCADE"), nullable=False),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("finished_at", sa.Float, nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("status_code", sa.Integer, nullable=True),
        sa.Column("error", sa.Text, nullable=False, server_default=""),
    )
    op.create_index("ix_comms_attempts_message_id", "comms_attempts", ["message_id"])
    op.create_table(
        "comms_channels",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("config", sa.JSON, nullable=False),
        sa.Column("secret", sa.Text, nullable=False, server_default=""),
        sa.Column("secret_fields", sa.JSON, nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("source", sa.String(16), nullable=False, server_default="api"),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.UniqueConstraint("name", name="uq_comms_channels_name"),
    )
    op.create_table(
        "comms_updates",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("incident_id", sa.Integer, nullable=False),
        sa.Column("audience", sa.String(32), nullable=False),
        sa.Column("facts", sa.JSON, nullable=False),
        sa.Column("text", sa.Text, nullable=False, server_default=""),
        sa.Column("rendered", sa.Text, nullable=False, server_default=""),
        sa.Column("public", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("public_status", sa.String(32), nullable=True),
        sa.Column("author", sa.String(100), nullable=False, server_default=""),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("ix_comms_updates_incident_id", "comms_updates", ["incident_id"])
    op.create_table(
        "comms_incidents",
        sa.Column("incident_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("severity", sa.String(8), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("workflows", sa.JSON, nullable=False),
        sa.Column("milestones", sa.JSON, nullable=False),
        sa.Column("roles", sa.JSON, nullable=False),
        sa.Column("harm", sa.JSON, nullable=True),
        sa.Column("eta", sa.Float, nullable=True),
        sa.Column("mitigation_path", sa.Text, nullable=True),
        sa.Column("opened_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("closed_at", sa.Float, nullable=True),
    )
    op.create_index("ix_comms_incidents_status", "comms_incidents", ["status"])


def downgrade() -> None:
    op.drop_table("comms_incidents")
    op.drop_table("comms_updates")
    op.drop_table("comms_channels")
    op.drop_table("comms_attempts")
    op.drop_table("comms_outbox")
