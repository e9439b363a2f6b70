"""Every query on the outbox. Nothing here commits: the dispatcher and the services do."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, func, or_, update
from sqlalchemy import insert as sql_insert
from sqlmodel import Session, col, select

from dsrflow.outbound_mail.models import OutboxMessage

OUTBOX = OutboxMessage.__table__  # type: ignore[attr-defined]
_INSERT = sql_insert(OUTBOX).returning(OUTBOX.c.id)
# Inline: a single row's insert reads back no id either, so it can travel in a pipeline.
_INSERT_ROWS = sql_insert(OUTBOX).inline()


def dedup_key_taken(session: Session, dedup_key: str) -> bool:
    query = select(OutboxMessage.id).where(OutboxMessage.dedup_key == dedup_key)
    return session.exec(query).first() is not None


def insert(session: Session, values: dict[str, Any]) -> int:
    """Insert an outbox row (one statement, no ORM object, on the session's connection: no
    autoflush); returns its id."""
    return int(session.connection().execute(_INSERT, values).scalar_one())


def insert_many(session: Session, rows: list[dict[str, Any]]) -> None:
    """Insert outbox rows in one statement, on the session's connection as ``insert``; no id is
    read back, so it may run in a ``pipelined`` block."""
    session.connection().execute(_INSERT_ROWS, rows)


def lock_due(
    session: Session,
    now: datetime,
    limit: int,
    *,
    deferred: bool = False,
    skip_ids: Collection[int] = (),
) -> list[OutboxMessage]:
    """Rows due for sending (pending and due, or 'sending' with an expired lease), locked for
    this transaction: ``FOR UPDATE SKIP LOCKED`` on PostgreSQL; on SQLite the transaction
    already holds the write lock (BEGIN IMMEDIATE) and the clause renders as nothing.
    ``deferred`` also takes pending rows still waiting out a backoff (but never ``skip_ids``)."""
    pending = col(OutboxMessage.status) == "pending"
    due = or_(
        and_(pending, col(OutboxMessage.next_attempt_at) <= now) if not deferred else pending,
        and_(col(OutboxMessage.status) == "sending", col(OutboxMessage.claimed_until) < now),
    )
    query = (
        select(OutboxMessage)
        .where(due, col(OutboxMessage.id).not_in(list(skip_ids)))
        .order_by(col(OutboxMessage.next_attempt_at), col(OutboxMessage.id))
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list(session.exec(query).all())


def update_if_still_claimed(session: Session, row: OutboxMessage, **values: Any) -> bool:
    """Apply ``values`` only while the row is still 'sending' under the same claim (its
    ``attempts`` count identifies the claim). False if another dispatcher took it over."""
    result = session.execute(
        update(OutboxMessage)
        .where(
            col(OutboxMessage.id) == row.id,
            col(OutboxMessage.status) == "sending",
            col(OutboxMessage.attempts) == row.attempts,
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


# Built once: a statement constructed per call costs more than the commit itself (about 1 ms of
# SQLAlchemy against 0.1 ms of SQLite), and this one runs once per message sent.
_MARK_SENT = (
    update(OUTBOX)
    .where(
        OUTBOX.c.id == bindparam("row_id"),
        OUTBOX.c.status == "sending",
        OUTBOX.c.attempts == bindparam("claim"),
    )
    .values(status="sent", sent_at=bindparam("at"), claimed_until=None, last_error=None)
)


def mark_sent(session: Session, row: OutboxMessage, at: datetime) -> bool:
    """``update_if_still_claimed`` for the one outcome of every message that goes well."""
    result = session.connection().execute(
        _MARK_SENT, {"row_id": row.id, "claim": row.attempts, "at": at}
    )
    return result.rowcount == 1


def listing(session: Session, status: str | None, limit: int) -> list[OutboxMessage]:
    """Outbox rows, newest first, optionally of one status."""
    query = select(OutboxMessage)
    if status:
        query = query.where(OutboxMessage.status == status)
    return list(session.exec(query.order_by(col(OutboxMessage.id).desc()).limit(limit)))


def count_by_status(session: Session) -> dict[str, int]:
    rows = session.exec(
        select(OutboxMessage.status, func.count()).group_by(col(OutboxMessage.status))
    )
    return {status: int(n) for status, n in rows}
