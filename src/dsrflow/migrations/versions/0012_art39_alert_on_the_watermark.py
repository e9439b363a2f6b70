"""the daily Art. 39 alert rides on the deadline sweep's watermark and reminder keys

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 01:10:00
"""

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op

from dsrflow.db import UTCDateTime

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    now = datetime.now(UTC)
    requests = sa.table(
        "requests",
        sa.column("art39_date", sa.Date),
        sa.column("closed_at", UTCDateTime()),
        sa.column("next_sweep_at", UTCDateTime()),
    )
    # Open requests with an Art. 39 date are looked at by the next sweep, which sets their next
    # alert (a request parked without a next step would otherwise never be alerted).
    op.get_bind().execute(
        requests.update()
        .where(
            requests.c.closed_at.is_(None),
            requests.c.art39_date.is_not(None),
            sa.or_(requests.c.next_sweep_at.is_(None), requests.c.next_sweep_at > now),
        )
        .values(next_sweep_at=now)
    )
    # Today's alerts already sent (outbox keys "<request>:art39_alert:<day>:<recipient>") become
    # reminder keys, so none goes out twice on the day of the upgrade.
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
            outbox.c.dedup_key.like("%:art39_alert:%"),
            outbox.c.created_at >= now - timedelta(days=2),
        )
    )
    rows = [
        {"key": key, "request_id": request_id, "outbox_id": row_id, "created_at": created_at}
        for row_id, key, request_id, created_at in sent
    ]
    if rows:
        op.bulk_insert(reminders, rows)


def downgrade() -> None:
    op.execute("DELETE FROM reminders WHERE key LIKE '%:art39_alert:%'")
