"""review: audit queue of served answers, post-mortem versions, corrective actions

Revision ID: 0009_review
Revises: 0001_auth
"""

import sqlalchemy as sa
from alembic import op

revision = "0009_review"
down_revision = "0001_auth"
branch_labels = ("review",)
depends_on = "0002_incidents"

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "audit_queues",
        sa.Column("incident_id", sa.Integer, sa.ForeignKey("incidents.id"), primary_key=True, autoincrement=False),
        sa.Column("since", sa.Float, nullable=False),
        sa.Column("until", sa.Float, nullable=False),
        sa.Column("workflows", sa.JSON, nullable=False),
        sa.Column("suspect_versions", sa.JSON, nullable=False),
        sa.Column("items", sa.Integer, nullable=False),
        sa.Column("scanned", sa.Integer, nullable=False),
        sa.Column("truncated", sa.Boolean, nullable=False),
        sa.Column("built_at", sa.Float, nullable=False),
        sa.Column("built_by", sa.String(100), nullable=False),
    )
    op.create_table(
        "audit_items",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("incident_id", sa.Integer, sa.ForeignKey("incidents.id"), nullable=False),
        sa.Column("rank", sa.Integer, nullable=False),
        sa.Column("event_id", BigId, nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("category", sa.String(16), nullable=False),
        sa.Column("reasons", sa.JSON, nullable=False),
        sa.Column("time", sa.Float, nullable=False),
        sa.Column("workflow", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("subject", sa.String, nullable=True),
        sa.Column("trace_id", sa.String, nullable=True),
        sa.Column("amount", sa.Float, nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reviewer", sa.String(100), nullable=True),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("reviewed_at", sa.Float, nullable=True),
        sa.Column("evidence", sa.JSON, nullable=True),
        sa.UniqueConstraint("incident_id", "rank", name="uq_audit_items_incident_rank"),
    )
    op.create_index("ix_audit_items_incident_event", "audit_items", ["incident_id", "event_id"])
    op.create_table(
        "postmortem_versions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("incident_id", sa.Integer, sa.ForeignKey("incidents.id"), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("markdown", sa.Text, nullable=False),
        sa.Column("author", sa.String(100), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("generated", sa.Boolean, nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.UniqueConstraint("incident_id", "version", name="uq_postmortem_versions_incident_version"),
    )
    op.create_table(
        "postmortems",
        sa.Column("incident_id", sa.Integer, sa.ForeignKey("incidents.id"), primary_key=True, autoincrement=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("latest_version", sa.Integer, nullable=False),
        sa.Column("final_version", sa.Integer, nullable=True),
        sa.Column("completed_at", sa.Float, nullable=True),
        sa.Column("completed_by", sa.String(100), nullable=True),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_table(
        "corrective_actions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("incident_id", sa.Integer, sa.ForeignKey("incidents.id"), nullable=False),
        sa.Column("title", sa.String(300), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("due_at", sa.Float, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("link", sa.Text, nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("created_by", sa.String(100), nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("done_at", sa.Float, nullable=True),
        sa.Column("reminded_at", sa.Float, nullable=True),
    )
    op.create_index("ix_corrective_actions_incident_id", "corrective_actions", ["incident_id"])
    op.create_index("ix_corrective_actions_status_due", "corrective_actions", ["status", "due_at"])


def downgrade() -> None:
    op.drop_table("corrective_actions")
    op.drop_table("postmortems")
    op.drop_table("postmortem_versions")
    op.drop_table("audit_items")
    op.drop_table("audit_queues")
