"""Every query on requests. Nothing here commits."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import date, datetime
from functools import cache
from typing import Any

from sqlalchemy import Row, and_, bindparam, case, func, insert, or_, text, update
from sqlalchemy import select as sa_select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session, col, select

from dsrflow.audit.chain import held_head
from dsrflow.audit.models import AuditHead, Event
from dsrflow.auth.models import Handler
from dsrflow.db import UTCDateTime, rowcount, utcnow
from dsrflow.outbound_mail.models import OutboxMessage
from dsrflow.requests.models import (
    Payment,
    Request,
    RequestNote,
    VerificationToken,
)
from dsrflow.workflow.definitions import AWAITING_STATE

REFERENCE = re.compile(r"DSR-\d{4}-\d{6}")
HISTORY_FIELDS = ("seq", "kind", "trigger", "from_state", "to_state", "actor", "at", "detail")


def get(session: Session, request_id: str) -> Request | None:
    return session.get(Request, request_id)


def get_by_id_or_reference(session: Session, key: str) -> Request | None:
    """The request with this id, or with this reference (any case: ``dsr-2026-000001`` too)."""
    request = session.get(Request, key)
    if request is None and _is_reference(key):
        request = session.exec(select(Request).where(Request.reference == key.upper())).first()
    return request


def _is_reference(key: str) -> bool:
    """A path's key names a reference (any case), not an id."""
    return key[:4].upper() == "DSR-"


_REQUESTS = Request.__table__  # type: ignore[attr-defined]
_INSERT_REQUEST = insert(_REQUESTS)
_TOKENS = VerificationToken.__table__  # type: ignore[attr-defined]
_INSERT_TOKEN = insert(_TOKENS).inline()  # the new id is not read back (no RETURNING)


def add_new(session: Session, request: Request) -> None:
    """Insert a new request in one prepared statement and attach it to the session as loaded:
    the same row as ``session.add`` and a flush, without the unit of work's cost, which on
    SQLite is paid inside the write lock that every create waits for."""
    values = {c.name: getattr(request, c.name) for c in _REQUESTS.c}
    session.connection().execute(_INSERT_REQUEST, values)
    make_transient_to_detached(request)
    session.add(request)


def add_verification_token(
    session: Session, request_id: str, token_hash: str, expires_at: datetime
) -> None:
    session.connection().execute(
        _INSERT_TOKEN,
        {"request_id": request_id, "token_hash": token_hash, "expires_at": expires_at},
    )


# The statements of a decision's path are built once (see ``auth.repository._BY_TOKEN``).
_LOCK = (
    select(Request)
    .where(Request.id == bindparam("id"))
    .with_for_update()
    .execution_options(populate_existing=True)
)
# The request and its audit head under one lock: both rows are locked (a lock that waited reads
# both as the transaction it waited for left them), the request's first, as every other path
# takes them; the head then need not be read again when the event is appended.
_LOCK_WITH_HEAD = (
    select(Request, AuditHead.seq, AuditHead.hash)
    .join(AuditHead, col(AuditHead.request_id) == Request.id)
    .where(Request.id == bindparam("id"))
    .with_for_update(of=[Request, AuditHead])
    .execution_options(populate_existing=True)
)
_ID_BY_REFERENCE = select(Request.id).where(Request.reference == bindparam("reference"))
_EVENTS = Event.__table__  # type: ignore[attr-defined]
# What a request's history shows (never the chain's salts and hashes), as plain rows.
_HISTORY = (
    sa_select(*(_EVENTS.c[name] for name in HISTORY_FIELDS))
    .where(_EVENTS.c.request_id == bindparam("id"))
    .order_by(_EVENTS.c.seq)
)
_PAYMENTS = select(Payment).where(Payment.request_id == bindparam("id")).order_by(col(Payment.id))
_PAID_TOTAL = select(func.coalesce(func.sum(Payment.amount_jpy), 0)).where(
    Payment.request_id == bindparam("id")
)


def lock(session: Session, request_id: str) -> Request | None:
    """The request re-read under its row lock (PostgreSQL ``FOR UPDATE``; on SQLite the write
    transaction's lock already covers it). Every path that writes a request's audit event takes
    this first, so one request's events and state changes happen one at a time, in one order."""
    row = session.exec(_LOCK_WITH_HEAD, params={"id": request_id}).first()
    if row is None:  # no such request, or one whose chain has no head yet
        return session.exec(_LOCK, params={"id": request_id}).first()
    request, seq, head_hash = row
    held_head(session, request_id, seq, head_hash)
    return request


def lock_by_id_or_reference(session: Session, key: str) -> Request | None:
    """``lock`` for a key that is an id or a reference (as ``get_by_id_or_reference``)."""
    request = lock(session, key)
    if request is None and _is_reference(key):
        found = session.exec(_ID_BY_REFERENCE, params={"reference": key.upper()}).first()
        request = lock(session, found) if found is not None else None
    return request


def by_status_token(session: Session, token_hash: str) -> Request | None:
    return session.exec(select(Request).where(Request.status_token_hash == token_hash)).first()


# One statement both backends run (SQLite 3.35+, PostgreSQL), compiled once.
_NEXT_NUMBER = (
    " ON CONFLICT (year) DO UPDATE SET last_number = reference_counters.last_number + 1"
    " RETURNING last_number"
)
_TAKE_NUMBER = text(
    "INSERT INTO reference_counters (year, last_number) VALUES (:year, 1)" + _NEXT_NUMBER
)
# The same, as a transaction of its own on PostgreSQL (autocommit): set_config(..., true) turns
# synchronous_commit off for that one statement's transaction, as SET LOCAL would in a block.
_TAKE_NUMBER_ALONE = text(
    "INSERT INTO reference_counters (year, last_number) SELECT :year, 1"
    " WHERE set_config('synchronous_commit', 'off', true) = 'off'" + _NEXT_NUMBER
)


def next_reference_number(session: Session, year: int) -> int:
    """Take the next number of ``year`` in one atomic upsert: the first intakes of a year can
    race to create its counter, and the row lock serialises the rest.

    On PostgreSQL the number is taken in a short transaction of its own, so that the counter's
    row lock is held for one statement, not for the whole create (which made every create wait
    for the one before it). A create that then fails leaves its number unused: references can
    have gaps, as a sequence's do. That transaction need not wait for its WAL flush: the
    create's own commit flushes the WAL past it, and if the server dies before, the number was
    never given to a request that survived. It is one autocommitted statement: no BEGIN and
    COMMIT round trips around it. A session that has already begun (mail intake reads
    before it creates) takes the number in its own transaction instead, so that no call ever
    holds two of the pool's connections at once. On SQLite the write lock serialises creates
    anyway, and a second commit would cost a second sync, so the number is taken in the
    create's own transaction."""
    bind = session.get_bind()
    if (
        bind.dialect.name != "postgresql"
        or session.in_transaction()
        or isinstance(bind, Connection)
    ):
        return int(session.connection().execute(_TAKE_NUMBER, {"year": year}).scalar_one())
    with bind.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        return int(connection.execute(_TAKE_NUMBER_ALONE, {"year": year}).scalar_one())


def update_if_version(
    session: Session, request_id: str, version: int, values: dict[str, Any]
) -> bool:
    """Conditional update: applies only if nobody changed the request since we read it.

    A changed request is due for the next deadline sweep (its state, due date or clock may have
    moved), which plans it again and sets its next step.
    """
    return rowcount(_send_update(session, request_id, version, values)) == 1


def send_update_if_version(
    session: Session, loaded: Request, values: dict[str, Any]
) -> Callable[[], bool]:
    """``update_if_version`` of the request ``loaded`` (read under its lock) for a
    ``pipelined`` block: the update is sent and ``loaded`` holds what it writes, without
    reading it back (next_sweep_at, computed by the database, loads when asked for). The check
    returned, called after the block, says whether it applied; if not, the caller rolls back."""
    result = _send_update(session, loaded.id, loaded.version, values)
    for name, value in {**values, "version": loaded.version + 1}.items():
        set_committed_value(loaded, name, value)
    session.expire(loaded, ["next_sweep_at"])
    return lambda: rowcount(result) == 1


def _send_update(session: Session, request_id: str, version: int, values: dict[str, Any]) -> Any:
    params = {f"v_{name}": value for name, value in values.items()}
    return session.execute(
        _update_statement(tuple(sorted(values))),
        {
            **params,
            "w_id": request_id,
            "w_version": version,
            "w_next_version": version + 1,
            "w_now": values.get("updated_at") or utcnow(),
        },
    )


@cache
def _update_statement(names: tuple[str, ...]) -> Any:
    """``update_if_version``'s statement for these columns, built once per set of columns (a
    workflow's transitions write a handful of different sets)."""
    now = bindparam("w_now", type_=UTCDateTime())
    columns = _REQUESTS.c
    return (
        update(_REQUESTS)  # the table, not the entity: no ORM bulk-update machinery
        .where(columns.id == bindparam("w_id"), columns.version == bindparam("w_version"))
        .values(
            version=bindparam("w_next_version"),
            next_sweep_at=case((columns.next_sweep_at < now, columns.next_sweep_at), else_=now),
            **{name: bindparam(f"v_{name}", type_=columns[name].type) for name in names},
        )
    )


def search(
    session: Session,
    *,
    state: str | Sequence[str] | None,
    request_type: str | Sequence[str] | None,
    overdue_as_of: datetime | None,
    due_before: datetime | None,
    closed_states: Sequence[str],
    paused_types: Sequence[str] = (),
    today: date | None = None,
    limit: int,
    offset: int,
) -> tuple[list[Request], int]:
    """Requests matching the filters, newest first, and the total count. ``state`` and
    ``request_type`` take one value or several (any of them matches)."""
    query = select(Request)
    if state:
        query = query.where(col(Request.state).in_([state] if isinstance(state, str) else state))
    if request_type:
        types = [request_type] if isinstance(request_type, str) else request_type
        query = query.where(col(Request.type).in_(types))
    if overdue_as_of is not None:
        query = query.where(_overdue(overdue_as_of, today, closed_states, paused_types))
    if due_before is not None:
        query = query.where(col(Request.due_at) < due_before)
    total = session.exec(select(func.count()).select_from(query.subquery())).one()
    rows = session.exec(
        query.order_by(col(Request.received_at).desc(), col(Request.reference).desc())
        .limit(limit)
        .offset(offset)
    )
    return list(rows), int(total)


def _overdue(
    now: datetime, today: date | None, closed_states: Sequence[str], paused_types: Sequence[str]
) -> Any:
    past_due = and_(
        col(Request.due_at) < now,
        # A request whose clock is paused while it waits for the requester is not overdue...
        ~and_(col(Request.state) == AWAITING_STATE, col(Request.type).in_(paused_types)),
    )
    # ...unless its Art. 39 date has come, whatever a pause or an extension says.
    past_art39 = col(Request.art39_date) <= (today or now.date())
    return and_(col(Request.state).not_in(closed_states), or_(past_due, past_art39))


def queue(
    session: Session,
    *,
    states: Sequence[str],
    request_type: str | None = None,
    overdue_as_of: datetime | None = None,
    due_before: datetime | None = None,
    assignee_id: int | None = None,
    unassigned: bool = False,
    channel: str | None = None,
    lookup: str | None = None,
    closed_states: Sequence[str] = (),
    paused_types: Sequence[str] = (),
    today: date | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[Request], int]:
    """The console's queue: requests in ``states`` matching the filters, soonest due first,
    and the total count. ``lookup`` is a reference (DSR-2026-000123), an e-mail address or
    part of a name (spaces ignored), of the requester or the agent."""
    query = select(Request).where(col(Request.state).in_(states))
    if request_type:
        query = query.where(Request.type == request_type)
    if overdue_as_of is not None:
        query = query.where(_overdue(overdue_as_of, today, closed_states, paused_types))
    if due_before is not None:
        query = query.where(col(Request.due_at) < due_before)
    if unassigned:
        query = query.where(col(Request.assignee_id).is_(None))
    elif assignee_id is not None:
        query = query.where(Request.assignee_id == assignee_id)
    if channel:
        query = query.where(Request.channel == channel)
    if lookup:
        query = query.where(_lookup(lookup))
    total = session.exec(select(func.count()).select_from(query.subquery())).one()
    rows = session.exec(
        query.order_by(col(Request.due_at), col(Request.reference)).limit(limit).offset(offset)
    )
    return list(rows), int(total)


def _lookup(text: str) -> Any:
    text = text.strip()
    if REFERENCE.fullmatch(text.upper()):
        return col(Request.reference) == text.upper()
    if "@" in text:
        address = text.lower()
        return or_(
            func.lower(col(Request.requester_email)) == address,
            func.lower(col(Request.agent_email)) == address,
        )
    squeezed = "".join(text.split()).lower()
    escaped = squeezed.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    pattern = f"%{escaped}%"

    def name(column: Any) -> Any:
        return func.lower(func.replace(func.replace(column, " ", ""), "\u3000", ""))

    return or_(
        name(col(Request.requester_name)).like(pattern, escape="\\"),
        name(col(Request.agent_name)).like(pattern, escape="\\"),
        col(Request.reference).like(f"%{escaped.upper()}", escape="\\"),
    )


def requester_activity(session: Session, request_ids: Sequence[str]) -> dict[str, datetime]:
    """When the requester (or their agent) last did something on each request: wrote,
    confirmed the address, uploaded, withdrew. Submitting it does not count."""
    if not request_ids:
        return {}
    rows = session.exec(
        select(Event.request_id, func.max(Event.at))
        .where(
            col(Event.request_id).in_(request_ids),
            Event.actor == "requester",
            Event.kind != "submitted",
        )
        .group_by(col(Event.request_id))
    )
    return {request_id: at for request_id, at in rows}


def set_handling(session: Session, request_id: str, values: dict[str, Any]) -> None:
    """Assignment and "last seen": the desk's own bookkeeping, which is no decision and so
    leaves the version alone (a form open elsewhere does not go stale)."""
    session.execute(
        update(Request)
        .where(col(Request.id) == request_id)
        .values(**values)
        .execution_options(synchronize_session=False)
    )


def assignee_email(session: Session, request: Request) -> str | None:
    """The address of the handler the request is given to, unless their token is revoked."""
    if request.assignee_id is None:
        return None
    handler = session.get(Handler, request.assignee_id)
    return handler.email if handler is not None and handler.revoked_at is None else None


def notes(session: Session, request_id: str) -> list[RequestNote]:
    return list(
        session.exec(
            select(RequestNote)
            .where(RequestNote.request_id == request_id)
            .order_by(col(RequestNote.id))
        )
    )


def history(session: Session, request_id: str) -> list[Row[Any]]:
    """The request's events, oldest first: rows of ``HISTORY_FIELDS``."""
    return list(session.execute(_HISTORY, {"id": request_id}))


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
    return list(session.exec(_PAYMENTS, params={"id": request_id}))


def paid_total(session: Session, request_id: str) -> int:
    return int(session.exec(_PAID_TOTAL, params={"id": request_id}).one())


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
