"""sweeps read what is due: requests.next_sweep_at, and the reminders table

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 20:50:00
"""

import sqlalchemy as sa
from alembic import op

from dsrflow.db import UTCDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

# The kinds of mail the sweeps queued before this revision (outbox keys "<request>:<kind>:...").
SWEEP_KINDS = ("due", "overdue", "identity", "identity_escalation", "acknowledgment_unsent")


def upgrade() -> None:
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("next_sweep_at", UTCDateTime(), nullable=True))
        batch_op.create_index("ix_requests_next_sweep_at", ["next_sweep_at"], unique=False)
    op.create_table(
        "reminders",
        sa.Column("key", sa.String(length=512), nullable=False),
        sa.Column("request_id", sa.String(length=32), nullable=False),
        sa.Column("outbox_id", sa.Integer(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_index("ix_reminders_request_id", "reminders", ["request_id"], unique=False)
    # Every open request is looked at by the first sweep, which sets its next step; the keys of
    # what was already sent come over from the outbox, so nothing is sent twice.
    op.execute("UPDATE requests SET next_sweep_at = received_at WHERE closed_at IS NULL")
    outbox = sa.table(
        "outbox",
        sa.column("id", sa.Integer),
        sa.column("dedup_key", sa.String),
        sa.column("request_id", sa.String),
        sa.column("created_at", UTCDateTime()),
    )
    reminders = sa.table(
        "reminders",
        sa.column("key", sa.String),
        sa.column("request_id", sa.String),
        sa.column("outbox_id", sa.Integer),
        sa.column("created_at", UTCDateTime()),
    )
    sent = op.get_bind().execute(
        sa.select(outbox.c.id, outbox.c.dedup_key, outbox.c.request_id, outbox.c.created_at).where(
            outbox.c.request_id.is_not(None),
            sa.or_(*(outbox.c.dedup_key.like(f"%:{kind}:%") for kind in SWEEP_KINDS)),
        )
    )
    rows = [
        {"key": key, "request_id": request_id, "outbox_id": row_id, "created_at": created_at}
        for row_id, key, request_id, created_at in sent
        if key.split(":", 2)[1] in SWEEP_KINDS
    ]
    if rows:
        op.bulk_insert(reminders, rows)


def downgrade() -> None:
    op.drop_index("ix_reminders_request_id", table_name="reminders")
    op.drop_table("reminders")
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.drop_index("ix_requests_next_sweep_at")
        batch_op.drop_column("next_sweep_at")
