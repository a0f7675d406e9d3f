"""connected SDK guards: the latest self-report of each

Revision ID: 0004_sdk_clients
Revises: 0001_auth
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_sdk_clients"
down_revision = "0001_auth"
branch_labels = ("sdkclients",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sdk_clients",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("service", sa.String(200), nullable=False, server_default=""),
        sa.Column("environment", sa.String(64), nullable=False),
        sa.Column("host", sa.String(255), nullable=False, server_default=""),
        sa.Column("pid", sa.Integer, nullable=True),
        sa.Column("sdk_version", sa.String(64), nullable=False, server_default=""),
        sa.Column("revision", sa.Integer, nullable=False, server_default="0"),
        sa.Column("source", sa.String(16), nullable=False, server_default="default"),
        sa.Column("stale_for", sa.Float, nullable=True),
        sa.Column("connected", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("on_defaults", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("fail_open", sa.Integer, nullable=False, server_default="0"),
        sa.Column("breakers_open", sa.Integer, nullable=False, server_default="0"),
        sa.Column("events_dropped", sa.Integer, nullable=False, server_default="0"),
        sa.Column("closed", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("report", sa.JSON, nullable=False),
        sa.Column("reported_by", sa.String(64), nullable=False, server_default=""),
        sa.Column("first_seen", sa.Float, nullable=False),
        sa.Column("last_seen", sa.Float, nullable=False),
        sa.Column("heartbeats", sa.Integer, nullable=False, server_default="0"),
        sa.UniqueConstraint("client_id", name="uq_sdk_clients_client_id"),
    )
    op.create_index("ix_sdk_clients_environment_last_seen", "sdk_clients", ["environment", "last_seen"])


def downgrade() -> None:
    op.drop_table("sdk_clients")
