"""incidents, incident roles, timeline entries

Revision ID: 0002_incidents
Revises: 0001_auth
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_incidents"
down_revision = "0001_auth"
branch_labels = ("incidents",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "incidents",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("summary", sa.Text, nullable=False, server_default=""),
        sa.Column("workflows", sa.JSON, nullable=False),
        sa.Column("severity", sa.String(8), nullable=False),
        sa.Column("failure_type", sa.String(32), nullable=False),
        sa.Column("harm", sa.JSON, nullable=True),
        sa.Column("suspects", sa.JSON, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("source", sa.String(64), nullable=False, server_default="manual"),
        sa.Column("opened_by", sa.String(100), nullable=False, server_default=""),
        sa.Column("opened_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("closed_at", sa.Float, nullable=True),
        sa.Column("detected_at", sa.Float, nullable=True),
        sa.Column("acknowledged_at", sa.Float, nullable=True),
        sa.Column("acknowledged_by", sa.String(100), nullable=True),
        sa.Column("impact_confirmed_at", sa.Float, nullable=True),
        sa.Column("mitigation_chosen_at", sa.Float, nullable=True),
        sa.Column("mitigation_path", sa.Text, nullable=True),
        sa.Column("contained_at", sa.Float, nullable=True),
        sa.Column("mitigated_at", sa.Float, nullable=True),
        sa.Column("resolved_at", sa.Float, nullable=True),
        sa.Column("eta", sa.Float, nullable=True),
        sa.Column("data", sa.JSON, nullable=False),
        sa.Column("chain_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("chain_head", sa.String(64), nullable=False, server_default=""),
        sa.Column("chain_seal", sa.String(64), nullable=False, server_default=""),
    )
    op.create_index("ix_incidents_status", "incidents", ["status"])
    op.create_table(
        "incident_roles",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("incident_id", sa.Integer, sa.ForeignKey("incidents.id"), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("person_id", sa.Integer, sa.ForeignKey("persons.id"), nullable=False),
        sa.Column("handle", sa.String(64), nullable=False),
        sa.Column("assigned_at", sa.Float, nullable=False),
        sa.Column("assigned_by", sa.String(100), nullable=False, server_default=""),
        sa.Column("ended_at", sa.Float, nullable=True),
    )
    op.create_index("ix_incident_roles_incident_role", "incident_roles", ["incident_id", "role"])
    op.create_table(
        "timeline_entries",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("incident_id", sa.Integer, sa.ForeignKey("incidents.id"), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("time", sa.Float, nullable=False),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("text", sa.Text, nullable=False, server_default=""),
        sa.Column("data", sa.JSON, nullable=False),
        sa.Column("mac", sa.String(64), nullable=False),
        sa.UniqueConstraint("incident_id", "seq", name="uq_timeline_entries_incident_seq"),
    )


def downgrade() -> None:
    op.drop_table("timeline_entries")
    op.drop_table("incident_roles")
    op.drop_table("incidents")
