"""Queries for the deadline sweeps. Nothing here commits."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from dsrflow.requests.models import Request


def due_by_query(open_states: Sequence[str], horizon: datetime) -> SelectOfScalar[str]:
    """Open requests whose due date is on or before ``horizon`` (ix_requests_state_due_at)."""
    return (
        select(Request.id)
        .where(col(Request.state).in_(open_states), col(Request.due_at) <= horizon)
        .order_by(col(Request.due_at))
    )


def due_by(session: Session, open_states: Sequence[str], horizon: datetime) -> list[str]:
    return list(session.exec(due_by_query(open_states, horizon)))


def unverified_since(session: Session, state: str, received_before: datetime) -> list[str]:
    """Requests still waiting for identity that arrived before the given time."""
    return list(
        session.exec(
            select(Request.id)
            .where(Request.state == state, col(Request.received_at) <= received_before)
            .order_by(col(Request.received_at))
        )
    )


def claim(session: Session, request_id: str) -> Request | None:
    """Lock one request for this sweep, or None if another process holds it.

    PostgreSQL: ``FOR UPDATE SKIP LOCKED``. SQLite: the session already holds the database's
    write lock (BEGIN IMMEDIATE), so a plain read is the claim.
    """
    query = select(Request).where(Request.id == request_id).with_for_update(skip_locked=True)
    return session.exec(query).first()


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
