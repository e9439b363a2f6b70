"""Queries for the deadline sweeps. Nothing here commits."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import and_, bindparam, exists, insert, or_, update
from sqlalchemy.orm import defer
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from dsrflow.db import utcnow
from dsrflow.deadlines.models import Reminder
from dsrflow.outbound_mail.models import OutboxMessage
from dsrflow.requests.models import Request

SWEEP_DEFERRED = [
    defer(getattr(Request, name))
    for name in (
        "details",
        "requester_phone",
        "requester_postal_address",
        "status_token_hash",
        "created_at",
        "updated_at",
        "email_verified_at",
        "identity_verified_at",
        "closed_at",
    )
]

# Undelivered: anything but sent (a pending, sending or failed acknowledgment).
UNDELIVERED = ("pending", "sending", "failed")


def due_for_sweep_query(
    now: datetime, after: tuple[datetime, str] | None, limit: int
) -> SelectOfScalar[Request]:
    """Requests whose ``next_sweep_at`` has come, in (next_sweep_at, id) order after ``after``
    (ix_requests_next_sweep_at)."""
    # What a sweep does not read stays in the table (the request's text can be long).
    query = select(Request).options(*SWEEP_DEFERRED).where(col(Request.next_sweep_at) <= now)
    if after is not None:
        at, request_id = after
        query = query.where(
            or_(
                col(Request.next_sweep_at) > at,
                and_(col(Request.next_sweep_at) == at, col(Request.id) > request_id),
            )
        )
    return query.order_by(col(Request.next_sweep_at), col(Request.id)).limit(limit)


def due_for_sweep(
    session: Session, now: datetime, after: tuple[datetime, str] | None, limit: int
) -> list[Request]:
    return list(session.exec(due_for_sweep_query(now, after, limit)))


def by_ids(session: Session, ids: Sequence[str]) -> list[Request]:
    return list(session.exec(select(Request).where(col(Request.id).in_(ids)))) if ids else []


def taken_keys(session: Session, keys: Sequence[str]) -> set[str]:
    """Which of ``keys`` a sweep already queued: one query for the whole batch."""
    if not keys:
        return set()
    return set(session.exec(select(Reminder.key).where(col(Reminder.key).in_(keys))))


def claim(session: Session, ids: Sequence[str]) -> dict[str, int]:
    """Lock these requests for this transaction, skipping any that another process holds;
    returns the version of each one locked.

    PostgreSQL: ``FOR UPDATE SKIP LOCKED``. SQLite: the transaction holds the database's write
    lock, so a plain read is the claim.
    """
    if not ids:
        return {}
    query = (
        select(Request.id, Request.version)
        .where(col(Request.id).in_(ids))
        .order_by(col(Request.id))
        .with_for_update(skip_locked=True)
    )
    return {request_id: version for request_id, version in session.exec(query)}


def move_next_sweep(session: Session, steps: Sequence[tuple[str, int, datetime | None]]) -> None:
    """Set each request's next sweep time, unless it changed since it was read (its version):
    a changed request stays due, and the next sweep plans it again."""
    if not steps:
        return
    statement = (
        update(Request)
        .where(col(Request.id) == bindparam("rid"), col(Request.version) == bindparam("ver"))
        .values(next_sweep_at=bindparam("nxt"))
        .execution_options(synchronize_session=False)
    )
    session.connection().execute(
        statement, [{"rid": rid, "ver": version, "nxt": nxt} for rid, version, nxt in steps]
    )


def record_reminders(session: Session, keys: Sequence[tuple[str, str, int | None]]) -> None:
    """Record the key of each queued reminder (request id, key, outbox row): one statement."""
    if keys:
        now = utcnow()
        session.execute(
            insert(Reminder.__table__),  # type: ignore[attr-defined]
            [
                {"key": key, "request_id": rid, "outbox_id": outbox_id, "created_at": now}
                for rid, key, outbox_id in keys
            ],
        )


def unsent_acknowledgments(session: Session, created_before: datetime) -> list[tuple[str, str]]:
    """(request id, status) of acknowledgments queued before the given time and not sent,
    whose handlers were not told yet (no ``acknowledgment_unsent`` reminder)."""
    told = exists().where(
        col(Reminder.request_id) == col(OutboxMessage.request_id),
        col(Reminder.key).like("%:acknowledgment_unsent:%"),
    )
    rows = session.exec(
        select(OutboxMessage.request_id, OutboxMessage.status).where(
            col(OutboxMessage.status).in_(UNDELIVERED),
            OutboxMessage.letter == "acknowledgment",
            col(OutboxMessage.created_at) <= created_before,
            ~told,
        )
    )
    return [(request_id, status) for request_id, status in rows if request_id]


def open_requests(session: Session, open_states: Sequence[str]) -> list[Request]:
    return list(
        session.exec(
            select(Request).where(col(Request.state).in_(open_states)).order_by(col(Request.due_at))
        )
    )


def received_since(session: Session, since: datetime) -> list[Request]:
    return list(
        session.exec(
            select(Request)
            .where(col(Request.received_at) >= since)
            .order_by(col(Request.received_at))
        )
    )
