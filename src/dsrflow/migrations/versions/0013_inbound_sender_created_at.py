"""inbound_messages: an index on (lower(from_address), created_at) for the per-sender limit

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02 04:50:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_inbound_messages_sender_created",
        "inbound_messages",
        [sa.text("lower(from_address)"), "created_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_inbound_messages_sender_created", table_name="inbound_messages")
