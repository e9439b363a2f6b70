"""The queries behind the reports and the metrics. Nothing here commits."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime

from sqlalchemy import ColumnElement, and_, func
from sqlmodel import Session, col, select

from dsrflow.audit.models import AuditHead, Event
from dsrflow.inbound_mail.models import ImapSyncState
from dsrflow.outbound_mail.models import OutboxMessage
from dsrflow.reports.models import JobRun
from dsrflow.requests.models import Request
from dsrflow.workflow.definitions import AWAITING_STATE


def _arrived(start: datetime, end: datetime) -> ColumnElement[bool]:
    return and_(col(Request.received_at) >= start, col(Request.received_at) < end)


def arrived_between(session: Session, start: datetime, end: datetime) -> list[Request]:
    """Requests that reached the company in [start, end), oldest first."""
    query = (
        select(Request)
        .where(_arrived(start, end))
        .order_by(col(Request.received_at), col(Request.reference))
    )
    return list(session.exec(query))


def transitions_of_arrivals(session: Session, start: datetime, end: datetime) -> list[Event]:
    """The transition events of the requests that arrived in [start, end), in chain order."""
    ids = select(Request.id).where(_arrived(start, end))
    query = (
        select(Event)
        .where(Event.kind == "transition", col(Event.request_id).in_(ids.scalar_subquery()))
        .order_by(col(Event.request_id), col(Event.seq))
    )
    return list(session.exec(query))


def acknowledgments_sent(session: Session, start: datetime, end: datetime) -> dict[str, datetime]:
    """Request id -> when its acknowledgment letter was sent."""
    ids = select(Request.id).where(_arrived(start, end))
    query = select(OutboxMessage.request_id, OutboxMessage.sent_at).where(
        OutboxMessage.letter == "acknowledgment",
        col(OutboxMessage.sent_at).is_not(None),
        col(OutboxMessage.request_id).in_(ids.scalar_subquery()),
    )
    sent: dict[str, datetime] = {}
    for request_id, sent_at in session.exec(query):
        if request_id and sent_at and (request_id not in sent or sent_at < sent[request_id]):
            sent[request_id] = sent_at
    return sent


def chain_heads(session: Session, request_ids: Sequence[str]) -> dict[str, AuditHead]:
    heads: dict[str, AuditHead] = {}
    for chunk in range(0, len(request_ids), 500):
        part = list(request_ids[chunk : chunk + 500])
        for head in session.exec(select(AuditHead).where(col(AuditHead.request_id).in_(part))):
            heads[head.request_id] = head
    return heads


# --------------------------------------------------------------------------- metrics


def count_by_state_and_type(session: Session) -> list[tuple[str, str, int]]:
    query = select(Request.state, Request.type, func.count()).group_by(
        col(Request.state), col(Request.type)
    )
    return [(state, type_, int(n)) for state, type_, n in session.exec(query)]


def overdue_count(
    session: Session,
    now: datetime,
    open_states: Sequence[str],
    paused_types: Sequence[str],
    today: date,
) -> int:
    """Open requests past their due date (a paused clock excepted), or past their Art. 39 date
    whatever any pause says."""
    paused = and_(col(Request.state) == AWAITING_STATE, col(Request.type).in_(paused_types))
    past_due = and_(col(Request.due_at) < now, ~paused)
    past_art39 = and_(col(Request.art39_date).is_not(None), col(Request.art39_date) <= today)
    query = select(func.count()).where(col(Request.state).in_(open_states), past_due | past_art39)
    return int(session.exec(query).one())


def art39_breaches(session: Session, open_states: Sequence[str], today: date) -> int:
    """Open requests on or past their Art. 39 date: the requester may sue now."""
    query = select(func.count()).where(
        col(Request.state).in_(open_states),
        col(Request.art39_date).is_not(None),
        col(Request.art39_date) <= today,
    )
    return int(session.exec(query).one())


def outbox_by_status(session: Session) -> dict[str, int]:
    query = select(OutboxMessage.status, func.count()).group_by(col(OutboxMessage.status))
    return {status: int(n) for status, n in session.exec(query)}


def oldest_pending_outbox(session: Session) -> datetime | None:
    query = select(func.min(OutboxMessage.created_at)).where(
        col(OutboxMessage.status).in_(("pending", "sending"))
    )
    return session.exec(query).one()


def imap_last_polls(session: Session) -> list[tuple[str, datetime | None]]:
    query = select(ImapSyncState.mailbox, ImapSyncState.last_polled_at)
    return [(mailbox, at) for mailbox, at in session.exec(query)]


def record_job_run(
    session: Session, job: str, started_at: datetime, finished_at: datetime, errors: int
) -> None:
    """Add one run of ``job`` to its row (created on first use). The caller commits."""
    run = session.get(JobRun, job, with_for_update=True) or JobRun(job=job)
    run.runs += 1
    run.errors += errors
    run.last_errors = errors
    run.last_started_at, run.last_finished_at = started_at, finished_at
    run.last_duration_seconds = max(0.0, (finished_at - started_at).total_seconds())
    session.add(run)
