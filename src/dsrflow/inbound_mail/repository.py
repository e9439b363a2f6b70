"""Every query on inbound mail and the IMAP sync state. Nothing here commits."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import case, func, update
from sqlalchemy.orm import defer
from sqlmodel import Session, col, select

from dsrflow.inbound_mail.models import (
    OPEN_STATUSES,
    ImapSyncState,
    InboundAttachment,
    InboundMessage,
)
from dsrflow.outbound_mail.models import OutboxMessage
from dsrflow.requests.models import Request

# Lists never load the raw message or attachment bytes.
_LIGHT = (defer(InboundMessage.raw),)  # type: ignore[arg-type]


def get(session: Session, inbound_id: int, *, with_raw: bool = False) -> InboundMessage | None:
    query = select(InboundMessage).where(InboundMessage.id == inbound_id)
    if not with_raw:
        query = query.options(*_LIGHT)
    return session.exec(query).first()


def by_message_id(session: Session, message_id: str) -> InboundMessage | None:
    query = select(InboundMessage).where(InboundMessage.message_id == message_id).options(*_LIGHT)
    return session.exec(query).first()


def search(
    session: Session, *, status: str | None, limit: int, offset: int
) -> tuple[list[InboundMessage], int]:
    """Messages with ``status`` (all when None), newest arrival first, and the total count."""
    query = select(InboundMessage)
    if status:
        query = query.where(InboundMessage.status == status)
    total = session.exec(select(func.count()).select_from(query.subquery())).one()
    rows = session.exec(
        query.options(*_LIGHT)
        .order_by(col(InboundMessage.received_at).desc(), col(InboundMessage.id).desc())
        .limit(limit)
        .offset(offset)
    )
    return list(rows), int(total)


def waiting(session: Session, *, limit: int, offset: int) -> tuple[list[InboundMessage], int]:
    """Messages waiting for a handler (triage, quarantine), oldest arrival first: the first
    to reach its Art. 39 date comes first."""
    query = select(InboundMessage).where(col(InboundMessage.status).in_(OPEN_STATUSES))
    total = session.exec(select(func.count()).select_from(query.subquery())).one()
    rows = session.exec(
        query.options(*_LIGHT)
        .order_by(col(InboundMessage.received_at), col(InboundMessage.id))
        .limit(limit)
        .offset(offset)
    )
    return list(rows), int(total)


def assign_waiting(session: Session, inbound_ids: Sequence[int], assignee_id: int | None) -> int:
    """Give the waiting messages among ``inbound_ids`` to a handler; returns how many."""
    result = session.execute(
        update(InboundMessage)
        .where(
            col(InboundMessage.id).in_(inbound_ids),
            col(InboundMessage.status).in_(OPEN_STATUSES),
        )
        .values(assignee_id=assignee_id)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def waiting_count(session: Session) -> int:
    """Messages waiting for a handler's decision (triage and quarantine)."""
    query = select(func.count()).where(col(InboundMessage.status).in_(OPEN_STATUSES))
    return int(session.exec(query).one())


def for_request(session: Session, request_id: str) -> list[InboundMessage]:
    """The mail that belongs to a request, oldest first."""
    query = (
        select(InboundMessage)
        .where(InboundMessage.request_id == request_id)
        .options(*_LIGHT)
        .order_by(col(InboundMessage.received_at), col(InboundMessage.id))
    )
    return list(session.exec(query))


def attachments(
    session: Session, inbound_ids: Sequence[int], *, limit: int | None = None
) -> list[tuple[InboundAttachment, bool]]:
    """Attachment descriptions of these messages, in order (at most ``limit``), each with
    whether its bytes are kept (the bytes themselves are not loaded)."""
    if not inbound_ids:
        return []
    query = (
        select(InboundAttachment, col(InboundAttachment.content).is_not(None))
        .where(col(InboundAttachment.inbound_message_id).in_(inbound_ids))
        .options(defer(InboundAttachment.content))  # type: ignore[arg-type]
        .order_by(col(InboundAttachment.id))
        .limit(limit)
    )
    return [(row[0], bool(row[1])) for row in session.exec(query)]


def attachment_counts(session: Session, inbound_ids: Sequence[int]) -> dict[int, int]:
    """Message id -> how many attachment rows it has, counted by the database."""
    if not inbound_ids:
        return {}
    query = (
        select(InboundAttachment.inbound_message_id, func.count())
        .where(col(InboundAttachment.inbound_message_id).in_(inbound_ids))
        .group_by(col(InboundAttachment.inbound_message_id))
    )
    return {int(row[0]): int(row[1]) for row in session.exec(query)}


def attachment(session: Session, inbound_id: int, attachment_id: int) -> InboundAttachment | None:
    query = select(InboundAttachment).where(
        InboundAttachment.id == attachment_id, InboundAttachment.inbound_message_id == inbound_id
    )
    return session.exec(query).first()


def references_of(session: Session, request_ids: Sequence[str]) -> dict[str, str]:
    """Request id -> reference, for showing messages."""
    if not request_ids:
        return {}
    query = select(Request.id, Request.reference).where(col(Request.id).in_(set(request_ids)))
    return {row[0]: row[1] for row in session.exec(query)}


def requests_by_reference(session: Session, references: Sequence[str]) -> list[Request]:
    """The existing requests among ``references``, in their order."""
    if not references:
        return []
    found = {
        r.reference: r
        for r in session.exec(select(Request).where(col(Request.reference).in_(set(references))))
    }
    return [found[ref] for ref in dict.fromkeys(references) if ref in found]


def requests_created_from(session: Session, address: str, since: datetime) -> int:
    """How many requests mail from ``address`` created by itself (not by a handler's
    conversion) since ``since``."""
    query = select(func.count()).where(
        col(InboundMessage.status) == "created",
        col(InboundMessage.decided_by).is_(None),
        col(InboundMessage.created_at) >= since,
        func.lower(col(InboundMessage.from_address)) == address.lower(),
    )
    return int(session.exec(query).one())


def request_for_thread(session: Session, message_ids: Sequence[str]) -> Request | None:
    """The request a message answers: one of ``message_ids`` is a letter we sent about it, or
    an earlier message of the requester that joined or created it. Nearest (first) id wins."""
    if not message_ids:
        return None
    sent = dict(
        session.exec(
            select(OutboxMessage.message_id, OutboxMessage.request_id).where(
                col(OutboxMessage.message_id).in_(message_ids),
                col(OutboxMessage.request_id).is_not(None),
            )
        ).all()
    )
    received = dict(
        session.exec(
            select(InboundMessage.message_id, InboundMessage.request_id).where(
                col(InboundMessage.message_id).in_(message_ids),
                col(InboundMessage.request_id).is_not(None),
            )
        ).all()
    )
    for message_id in message_ids:
        request_id = sent.get(message_id) or received.get(message_id)
        if request_id:
            return session.get(Request, request_id)
    return None


def letters_by_message_id(session: Session, message_ids: Sequence[str]) -> list[OutboxMessage]:
    """The letters we sent with these Message-IDs (a bounce returns them)."""
    if not message_ids:
        return []
    query = (
        select(OutboxMessage)
        .where(col(OutboxMessage.message_id).in_(set(message_ids)))
        .order_by(col(OutboxMessage.id))
    )
    return list(session.exec(query))


def is_our_message_id(session: Session, message_id: str) -> bool:
    """True when ``message_id`` is one of the letters we sent."""
    query = select(OutboxMessage.id).where(OutboxMessage.message_id == message_id)
    return session.exec(query).first() is not None


def update_if_status(
    session: Session, inbound_id: int, statuses: Sequence[str], values: dict[str, Any]
) -> bool:
    """Conditional update: applies only while the message still has one of ``statuses``."""
    result = session.execute(
        update(InboundMessage)
        .where(col(InboundMessage.id) == inbound_id, col(InboundMessage.status).in_(statuses))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- IMAP sync state


def sync_state(session: Session, mailbox: str, *, lock: bool = False) -> ImapSyncState | None:
    """The folder's sync state. With ``lock``, row-locked (PostgreSQL ``FOR UPDATE SKIP
    LOCKED``: None while another transaction holds it; SQLite's write lock covers it)."""
    query = select(ImapSyncState).where(ImapSyncState.mailbox == mailbox)
    if lock:
        query = query.with_for_update(skip_locked=True)
    return session.exec(query).first()


def advance_sync_state(
    session: Session,
    state_id: int,
    *,
    claim: str,
    uidvalidity: int,
    uid: int,
    claimed_until: datetime,
    now: datetime,
) -> bool:
    """Record ``uid`` as read, if the claim still holds; extends the claim."""
    result = session.execute(
        update(ImapSyncState)
        .where(
            col(ImapSyncState.id) == state_id,
            col(ImapSyncState.claimed_by) == claim,
            col(ImapSyncState.uidvalidity) == uidvalidity,
        )
        .values(
            last_uid=case(
                (col(ImapSyncState.last_uid) < uid, uid), else_=col(ImapSyncState.last_uid)
            ),
            claimed_until=claimed_until,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


def release_sync_state(session: Session, state_id: int, *, claim: str, now: datetime) -> bool:
    result = session.execute(
        update(ImapSyncState)
        .where(col(ImapSyncState.id) == state_id, col(ImapSyncState.claimed_by) == claim)
        .values(claimed_by=None, claimed_until=None, last_polled_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]
