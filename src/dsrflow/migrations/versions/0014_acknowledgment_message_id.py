"""requests.acknowledgment_message_id: the Message-ID later letters thread under, read with the
request instead of looked up in the outbox for each letter (backfilled from the outbox)

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02 23:50:00
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "requests",
        sa.Column(
            "acknowledgment_message_id", sqlmodel.sql.sqltypes.AutoString(length=250), nullable=True
        ),
    )
    # One statement however many requests; a request whose acknowledgment row is gone (purged)
    # keeps NULL, and its later letters carry no In-Reply-To, as before.
    op.execute(
        sa.text(
            "UPDATE requests SET acknowledgment_message_id = ("
            "SELECT outbox.message_id FROM outbox WHERE outbox.dedup_key = requests.id || :key)"
        ).bindparams(key=":acknowledgment")
    )


def downgrade() -> None:
    # A plain ALTER TABLE also on SQLite (3.35+): batch mode would copy the table, which the
    # foreign keys that refer to requests forbid.
    op.drop_column("requests", "acknowledgment_message_id")
