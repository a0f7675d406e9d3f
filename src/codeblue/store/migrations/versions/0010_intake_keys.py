"""signals: idempotency keys of accepted event batches

Revision ID: 0010_intake_keys
Revises: 0005_signals
"""

import sqlalchemy as sa
from alembic import op

revision = "0010_intake_keys"
down_revision = "0005_signals"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "intake_batches",
        sa.Column("principal", sa.String(100), primary_key=True),
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("received_at", sa.Float, nullable=False),
        sa.Column("accepted", sa.Integer, nullable=False),
        sa.Column("rejected", sa.JSON, nullable=False),
    )
    op.create_index("ix_intake_batches_received_at", "intake_batches", ["received_at"])


def downgrade() -> None:
    op.drop_index("ix_intake_batches_received_at", "intake_batches")
    op.drop_table("intake_batches")
