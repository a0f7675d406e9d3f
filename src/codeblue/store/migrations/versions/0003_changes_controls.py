"""versioned AI configuration, change log, controls, revision counter and revision log

Revision ID: 0003_changes_controls
Revises: 0001_auth
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_changes_controls"
down_revision = "0001_auth"
branch_labels = ("changes",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "config_kinds",
        sa.Column("kind", sa.String(64), primary_key=True),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.Column("schema", sa.JSON, nullable=True),
        sa.Column("author", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "configs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("workflows", sa.JSON, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.UniqueConstraint("kind", "name", name="uq_configs_kind_name"),
    )
    op.create_table(
        "config_versions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("config_id", sa.Integer, sa.ForeignKey("configs.id"), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("content", sa.JSON, nullable=False),
        sa.Column("author", sa.String(64), nullable=False),
        sa.Column("note", sa.Text, nullable=False, server_default=""),
        sa.Column("workflows", sa.JSON, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.UniqueConstraint("config_id", "version", name="uq_config_versions_config_id_version"),
    )
    op.create_table(
        "config_states",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("config_id", sa.Integer, sa.ForeignKey("configs.id"), nullable=False),
        sa.Column("environment", sa.String(64), nullable=False),
        sa.Column("stable", sa.String(64), nullable=True),
        sa.Column("candidate", sa.String(64), nullable=True),
        sa.Column("fraction", sa.Float, nullable=False, server_default="0"),
        sa.Column("previous", sa.JSON, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.UniqueConstraint("config_id", "environment", name="uq_config_states_config_id_environment"),
    )
    op.create_table(
        "changes",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("time", sa.Float, nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("from_version", sa.String(64), nullable=True),
        sa.Column("to_version", sa.String(64), nullable=True),
        sa.Column("fraction", sa.Float, nullable=False),
        sa.Column("environment", sa.String(64), nullable=False),
        sa.Column("workflows", sa.JSON, nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("incident_id", sa.Integer, nullable=True),
        sa.Column("note", sa.Text, nullable=False, server_default=""),
        sa.Column("data", sa.JSON, nullable=True),
    )
    op.create_index("ix_changes_time", "changes", ["time"])
    op.create_table(
        "controls",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("environment", sa.String(64), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("scope", sa.JSON, nullable=False),
        sa.Column("params", sa.JSON, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("author", sa.String(64), nullable=False),
        sa.Column("incident_id", sa.Integer, nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=True),
        sa.Column("lift_condition", sa.Text, nullable=True),
        sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("lifted_at", sa.Float, nullable=True),
        sa.Column("lifted_by", sa.String(64), nullable=True),
        sa.Column("lift_reason", sa.Text, nullable=True),
    )
    op.create_index("ix_controls_environment_active", "controls", ["environment", "active"])
    op.create_table(
        "controls_revision",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("revision", sa.BigInteger, nullable=False),
    )
    op.bulk_insert(sa.table("controls_revision", sa.column("id"), sa.column("revision")), [{"id": 1, "revision": 0}])
    op.create_table(
        "controls_revision_log",
        sa.Column("revision", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("environment", sa.String(64), nullable=False),
        sa.Column("prev", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("patch", sa.JSON, nullable=False),
    )
    op.create_index("ix_controls_revision_log_env_rev", "controls_revision_log", ["environment", "revision"])


def downgrade() -> None:
    op.drop_table("controls_revision_log")
    op.drop_table("controls_revision")
    op.drop_table("controls")
    op.drop_table("changes")
    op.drop_table("config_states")
    op.drop_table("config_versions")
    op.drop_table("configs")
    op.drop_table("config_kinds")
