"""inbound_messages: an index on (status, created_at) for the per-sender limit

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 01:10:00
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_inbound_messages_status_created_at",
        "inbound_messages",
        ["status", "created_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_inbound_messages_status_created_at", table_name="inbound_messages")
