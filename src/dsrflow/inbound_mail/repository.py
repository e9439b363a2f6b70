"""Every query on inbound mail and the IMAP sync state. Nothing here commits."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, bindparam, case, func, update
from sqlalchemy import insert as sql_insert
from sqlalchemy import select as sql_select
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


# The intake's statements, on the tables (no ORM unit of work, compiled once): a message that
# creates a request runs each once, and a backlog runs thousands (docs/mail-intake.md).
_MESSAGES = InboundMessage.__table__  # type: ignore[attr-defined]
_OUTBOX = OutboxMessage.__table__  # type: ignore[attr-defined]
_INSERT_MESSAGE = sql_insert(_MESSAGES).returning(_MESSAGES.c.id)
_SEEN = sql_select(
    _MESSAGES.c.id, _MESSAGES.c.status, _MESSAGES.c.reason, _MESSAGES.c.request_id
).where(_MESSAGES.c.message_id == bindparam("message_id"))
_OURS = sql_select(_OUTBOX.c.id).where(_OUTBOX.c.message_id == bindparam("message_id")).limit(1)
_CREATED_FROM = sql_select(func.count()).where(
    _MESSAGES.c.status == "created",
    _MESSAGES.c.decided_by.is_(None),
    _MESSAGES.c.created_at >= bindparam("since"),
    func.lower(_MESSAGES.c.from_address) == bindparam("address"),
)


def add_new(session: Session, values: dict[str, Any]) -> int:
    """Insert a new message row (column values) in one prepared statement; returns its id.
    No ORM object: the intake needs only the id, and the unit of work costs more than the
    insert. On the session's connection: nothing pending needs flushing before it."""
    return int(session.connection().execute(_INSERT_MESSAGE, values).scalar_one())


def seen(session: Session, message_id: str) -> Row[Any] | None:
    """(id, status, reason, request_id) of the message with this Message-ID, if recorded."""
    return session.connection().execute(_SEEN, {"message_id": message_id}).first()


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
    conversion) since ``since`` (index ``ix_inbound_messages_sender_created``)."""
    return int(
        session.connection()
        .execute(_CREATED_FROM, {"since": since, "address": address.lower()})
        .scalar_one()
    )


def is_known_sender(session: Session, address: str) -> bool:
    """Whether ``address`` is the requester or agent of any request (a relation to us)."""
    lowered = address.lower()
    query = select(Request.id).where(
        (func.lower(col(Request.requester_email)) == lowered)
        | (func.lower(col(Request.agent_email)) == lowered)
    )
    return session.exec(query.limit(1)).first() is not None


def letters_to_requester(session: Session, request_id: str, handler: str) -> list[OutboxMessage]:
    """The letters sent about a request to anyone but the handlers, newest first (a bounce
    that names only the request's reference returns one of them)."""
    query = (
        select(OutboxMessage)
        .where(
            col(OutboxMessage.request_id) == request_id,
            func.lower(col(OutboxMessage.recipient)) != handler.lower(),
            col(OutboxMessage.status) == "sent",
        )
        .order_by(col(OutboxMessage.id).desc())
    )
    return list(session.exec(query))


def failure_noticed(session: Session, request_id: str) -> bool:
    """Whether the handlers have been told that a letter of this request did not arrive."""
    query = select(OutboxMessage.id).where(
        col(OutboxMessage.request_id) == request_id,
        col(OutboxMessage.letter) == "delivery_failed",
    )
    return session.exec(query.limit(1)).first() is not None


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
    return session.connection().execute(_OURS, {"message_id": message_id}).first() is not None


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
