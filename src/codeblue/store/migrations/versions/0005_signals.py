"""signals: stored events, version sets, external alerts

Revision ID: 0005_signals
Revises: 0001_auth
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_signals"
down_revision = "0001_auth"
branch_labels = ("signals",)
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("time", sa.Float, nullable=False),
        sa.Column("received_at", sa.Float, nullable=False),
        sa.Column("workflow", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("subject", sa.String, nullable=True),
        sa.Column("session_id", sa.String, nullable=True),
        sa.Column("trace_id", sa.String, nullable=True),
        sa.Column("status", sa.Integer, nullable=True),
        sa.Column("version_set", sa.Integer, nullable=True),
        sa.Column("body", sa.Text, nullable=False),
    )
    # The one secondary index: every audit query and the retention sweep go by (workflow, time); each extra
    # index costs intake about 0.4 µs per event.
    op.create_index("ix_events_workflow_time", "events", ["workflow", "time"])
    op.create_table(
        "event_version_sets",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("versions", sa.JSON, nullable=False),
        sa.UniqueConstraint("digest", name="uq_event_version_sets_digest"),
    )
    op.create_table(
        "event_versions",
        sa.Column("key", sa.String(300), nullable=False),
        sa.Column("version", sa.String(200), nullable=False),
        sa.Column("set_id", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("key", "version", "set_id", name="pk_event_versions"),
    )
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("fingerprint", sa.String(128), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("workflow", sa.String(200), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("labels", sa.JSON, nullable=False),
        sa.Column("annotations", sa.JSON, nullable=False),
        sa.Column("starts_at", sa.Float, nullable=False),
        sa.Column("ends_at", sa.Float, nullable=True),
        sa.Column("generator_url", sa.Text, nullable=False, server_default=""),
        sa.Column("group_key", sa.Text, nullable=False, server_default=""),
        sa.Column("received_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("incident_id", sa.Integer, nullable=True),
        sa.UniqueConstraint("source", "fingerprint", "starts_at", name="uq_alerts_episode"),
    )
    op.create_index("ix_alerts_workflow_status", "alerts", ["workflow", "status"])


def downgrade() -> None:
    op.drop_table("alerts")
    op.drop_table("event_versions")
    op.drop_table("event_version_sets")
    op.drop_table("events")
