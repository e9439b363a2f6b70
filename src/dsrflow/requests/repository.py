"""Every query on requests. Nothing here commits."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import and_, func, or_, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, col, select

from dsrflow.audit.models import Event
from dsrflow.outbound_mail.models import OutboxMessage
from dsrflow.requests.models import Payment, ReferenceCounter, Request, VerificationToken
from dsrflow.workflow.definitions import AWAITING_STATE


def get(session: Session, request_id: str) -> Request | None:
    return session.get(Request, request_id)


def lock(session: Session, request_id: str) -> Request | None:
    """The request re-read under its row lock (PostgreSQL ``FOR UPDATE``; on SQLite the write
    transaction's lock already covers it). Every path that writes a request's audit event takes
    this first, so one request's events and state changes happen one at a time, in one order."""
    return session.get(Request, request_id, with_for_update=True, populate_existing=True)


def by_status_token(session: Session, token_hash: str) -> Request | None:
    return session.exec(select(Request).where(Request.status_token_hash == token_hash)).first()


def next_reference_number(session: Session, year: int) -> int:
    """Take the next number of ``year`` in one atomic upsert: the first intakes of a year can
    race to create its counter, and the row lock serialises the rest."""
    insert = postgresql_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    upsert = (
        insert(ReferenceCounter)
        .values(year=year, last_number=1)
        .on_conflict_do_update(
            index_elements=[col(ReferenceCounter.year)],
            set_={"last_number": col(ReferenceCounter.last_number) + 1},
        )
        .returning(col(ReferenceCounter.last_number))
    )
    return int(session.execute(upsert).scalar_one())


def update_if_version(
    session: Session, request_id: str, version: int, values: dict[str, Any]
) -> bool:
    """Conditional update: applies only if nobody changed the request since we read it."""
    result = session.execute(
        update(Request)
        .where(col(Request.id) == request_id, col(Request.version) == version)
        .values(version=version + 1, **values)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


def search(
    session: Session,
    *,
    state: str | None,
    request_type: str | None,
    overdue_as_of: datetime | None,
    due_before: datetime | None,
    closed_states: Sequence[str],
    paused_types: Sequence[str] = (),
    today: date | None = None,
    limit: int,
    offset: int,
) -> tuple[list[Request], int]:
    """Requests matching the filters, newest first, and the total count."""
    query = select(Request)
    if state:
        query = query.where(Request.state == state)
    if request_type:
        query = query.where(Request.type == request_type)
    if overdue_as_of is not None:
        past_due = and_(
            col(Request.due_at) < overdue_as_of,
            # A request whose clock is paused while it waits for the requester is not overdue...
            ~and_(col(Request.state) == AWAITING_STATE, col(Request.type).in_(paused_types)),
        )
        # ...unless its Art. 39 date has come, whatever a pause or an extension says.
        past_art39 = col(Request.art39_date) <= (today or overdue_as_of.date())
        query = query.where(col(Request.state).not_in(closed_states), or_(past_due, past_art39))
    if due_before is not None:
        query = query.where(col(Request.due_at) < due_before)
    total = session.exec(select(func.count()).select_from(query.subquery())).one()
    rows = session.exec(
        query.order_by(col(Request.received_at).desc(), col(Request.reference).desc())
        .limit(limit)
        .offset(offset)
    )
    return list(rows), int(total)


def history(session: Session, request_id: str) -> list[Event]:
    return list(
        session.exec(select(Event).where(Event.request_id == request_id).order_by(col(Event.seq)))
    )


def verification_token(
    session: Session, token_hash: str, *, locked: bool = False
) -> VerificationToken | None:
    """The token row; ``locked`` re-reads it under a row lock (take the request's lock first)."""
    query = select(VerificationToken).where(VerificationToken.token_hash == token_hash)
    if locked:
        query = query.with_for_update().execution_options(populate_existing=True)
    return session.exec(query).first()


def recent_duplicate(
    session: Session, *, request_type: str, email: str, details: str, since: datetime
) -> Request | None:
    """The latest request of this type, address and details that arrived after ``since``."""
    return session.exec(
        select(Request)
        .where(
            col(Request.received_at) >= since,
            Request.type == request_type,
            func.lower(Request.requester_email) == email.lower(),
            Request.details == details,
        )
        .order_by(col(Request.received_at).desc())
        .limit(1)
    ).first()


def letters_to_requester(
    session: Session, request: Request, internal: Sequence[str]
) -> list[OutboxMessage]:
    """What we wrote to the requester (or their agent) about this request, oldest first.

    Chosen by address, and never an internal address (``internal``: the handlers' and the
    escalation mailboxes), even if a requester wrote from one of those.
    """
    addresses = [
        a for a in (request.requester_email, request.agent_email) if a and a not in internal
    ]
    return list(
        session.exec(
            select(OutboxMessage)
            .where(
                OutboxMessage.request_id == request.id,
                col(OutboxMessage.recipient).in_(addresses),
            )
            .order_by(col(OutboxMessage.id))
        )
    )


def payments(session: Session, request_id: str) -> list[Payment]:
    return list(
        session.exec(
            select(Payment).where(Payment.request_id == request_id).order_by(col(Payment.id))
        )
    )


def paid_total(session: Session, request_id: str) -> int:
    total = session.exec(
        select(func.coalesce(func.sum(Payment.amount_jpy), 0)).where(
            Payment.request_id == request_id
        )
    ).one()
    return int(total)


def open_with_art39_by(
    session: Session, open_states: Sequence[str], on_or_before: date
) -> list[str]:
    """Open requests whose Art. 39 date is on or before ``on_or_before``."""
    return list(
        session.exec(
            select(Request.id)
            .where(
                col(Request.state).in_(open_states),
                col(Request.art39_date).is_not(None),
                col(Request.art39_date) <= on_or_before,
            )
            .order_by(col(Request.art39_date))
        )
    )
