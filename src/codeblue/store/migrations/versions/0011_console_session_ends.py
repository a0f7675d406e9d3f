"""console: sessions ended by signing out

Revision ID: 0011_console_session_ends
Revises: 0001_auth
"""

import sqlalchemy as sa
from alembic import op

revision = "0011_console_session_ends"
down_revision = "0001_auth"
branch_labels = ("console",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "console_session_ends",
        sa.Column("nonce_digest", sa.String(64), primary_key=True),
        sa.Column("ended_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
    )
    op.create_index("ix_console_session_ends_expires_at", "console_session_ends", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_console_session_ends_expires_at", "console_session_ends")
    op.drop_table("console_session_ends")
