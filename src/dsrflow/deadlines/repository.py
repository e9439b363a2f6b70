"""Queries for the deadline sweeps. Nothing here commits.

The sweep reads plain rows (the columns it plans from), never ORM objects, and every query
over a batch takes its ids or keys in chunks of ``CHUNK`` (SQLite's parameter limit).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Any, NamedTuple, TypeVar

from sqlalchemy import (
    DateTime,
    Dialect,
    Select,
    String,
    TypeDecorator,
    and_,
    any_,
    bindparam,
    exists,
    or_,
    type_coerce,
    update,
)
from sqlalchemy import select as select_columns
from sqlalchemy.types import TypeEngine, UserDefinedType
from sqlmodel import Session, col, select

from dsrflow.auth.models import Handler
from dsrflow.db import UTCDateTime, utcnow
from dsrflow.deadlines.models import Reminder
from dsrflow.outbound_mail.models import OutboxMessage
from dsrflow.requests.models import Request

CHUNK = 900
T = TypeVar("T")


@lru_cache(maxsize=65_536)
def _from_text(value: str) -> datetime:
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


class SweepMoment(TypeDecorator[datetime]):
    """``UTCDateTime`` read for many rows that share few values (due dates are the end of a
    day, watermarks the reminders' hour): each distinct value is parsed once."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        # SQLite keeps the text; fromisoformat (memoised) is cheaper than the dialect's parse.
        return dialect.type_descriptor(String() if dialect.name == "sqlite" else self.impl)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            return _from_text(value)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _moment(column: Any) -> Any:
    return type_coerce(column, SweepMoment()).label(column.key)


# What a sweep plans from; the rest of the row (the request's text can be long) stays put.
# Table columns, not ORM attributes: the hot queries are Core, with no ORM loading per row.
_requests_table = Request.__table__  # type: ignore[attr-defined]
_requests = _requests_table.c
_reminders = Reminder.__table__.c  # type: ignore[attr-defined]
SWEEP_COLUMNS = (
    _requests.id,
    _requests.reference,
    _requests.type,
    _requests.state,
    _requests.version,
    _requests.language,
    _requests.requester_email,
    _requests.agent_email,
    _moment(_requests.received_at),
    _moment(_requests.due_at),
    _requests.art39_date,
    _requests.assignee_id,
    _moment(_requests.next_sweep_at),
)

# Undelivered: anything but sent (a pending, sending or failed acknowledgment).
UNDELIVERED = ("pending", "sending", "failed")


def chunks(items: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _pg_array(values: Sequence[object]) -> str:
    """A PostgreSQL array literal, sent as one text parameter: cheaper than the driver's
    per-element array dump."""
    quoted = (
        "NULL"
        if value is None
        else '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
        for value in values
    )
    return "{" + ",".join(quoted) + "}"


class _TextArrayLiteral(UserDefinedType[str]):
    """A PostgreSQL array literal bound as ``:param::TEXT[]``: the server parses it once, when
    the statement is bound. Cast inside the statement instead (``CAST(:text AS TEXT[])``), the
    parse is part of the filter and runs for each row a scan reads."""

    cache_ok = True
    render_bind_cast = True

    def get_col_spec(self, **kw: Any) -> str:
        return "TEXT[]"


def _among(session: Session, column: Any, values: Sequence[str]) -> Any:
    """``column IN values``; on PostgreSQL ``column = ANY(:array)``, one parameter however many
    values (an expanded IN costs a bind, a cast and a parse per value)."""
    if session.get_bind().dialect.name == "postgresql":
        array = bindparam("among", _pg_array(values), type_=_TextArrayLiteral(), unique=True)
        return column == any_(array)
    return column.in_(values)


def _parts(session: Session, values: Sequence[T]) -> Iterator[Sequence[T]]:
    # An array parameter has no limit worth chunking for; SQLite's parameters do.
    if session.get_bind().dialect.name == "postgresql":
        return iter([values] if values else [])
    return chunks(values)


def due_for_sweep_query(
    now: datetime, after: tuple[datetime, str] | None, limit: int
) -> Select[Any]:
    """Requests whose ``next_sweep_at`` has come, in (next_sweep_at, id) order after ``after``
    (ix_requests_next_sweep_at)."""
    next_sweep, request_id = _requests.next_sweep_at, _requests.id
    query = select_columns(*SWEEP_COLUMNS).where(next_sweep <= now)
    if after is not None:
        at, last = after
        query = query.where(or_(next_sweep > at, and_(next_sweep == at, request_id > last)))
    return query.order_by(next_sweep, request_id).limit(limit)


class SweepRow(NamedTuple):
    """A request as the sweep reads it (a plain tuple: its fields cost nothing to read)."""

    id: str
    reference: str
    type: str
    state: str
    version: int
    language: str
    requester_email: str
    agent_email: str | None
    received_at: datetime
    due_at: datetime
    art39_date: date | None
    assignee_id: int | None
    next_sweep_at: datetime | None


def due_for_sweep(
    session: Session, now: datetime, after: tuple[datetime, str] | None, limit: int
) -> list[SweepRow]:
    result = session.execute(due_for_sweep_query(now, after, limit)).tuples()
    return list(map(SweepRow._make, result))


def rows_by_ids(session: Session, ids: Sequence[str]) -> list[SweepRow]:
    """The sweep's columns of these requests."""
    rows: list[SweepRow] = []
    for part in _parts(session, ids):
        query = select_columns(*SWEEP_COLUMNS).where(_among(session, _requests.id, part))
        rows += map(SweepRow._make, session.execute(query).tuples())
    return rows


def by_ids(session: Session, ids: Sequence[str]) -> list[Request]:
    found: list[Request] = []
    for part in chunks(ids):
        found += session.exec(select(Request).where(col(Request.id).in_(part)))
    return found


def assignee_emails(session: Session, handler_ids: set[int]) -> dict[int, str]:
    """The address of each of these handlers whose token is not revoked."""
    found: dict[int, str] = {}
    for part in chunks(sorted(handler_ids)):
        query = select(Handler.id, Handler.email).where(
            col(Handler.id).in_(part), col(Handler.revoked_at).is_(None)
        )
        found.update({hid: email for hid, email in session.exec(query) if hid is not None})
    return found


def taken_keys(session: Session, keys: Sequence[str]) -> set[str]:
    """Which of ``keys`` a sweep already queued: one query per chunk of keys."""
    taken: set[str] = set()
    for part in _parts(session, keys):
        query = select_columns(_reminders.key).where(_among(session, _reminders.key, part))
        taken.update(session.execute(query).scalars())
    return taken


def claim(session: Session, steps: Sequence[tuple[str, int, datetime | None]]) -> set[str]:
    """Lock the requests (id, version read, next sweep time) that have not changed since they
    were read, and move their next sweep time, in one statement per (version, time); skips any
    that another process holds (PostgreSQL ``FOR UPDATE SKIP LOCKED``; on SQLite the
    transaction holds the database's write lock) or that changed (they stay due, and the next
    sweep plans them again). Returns the ids claimed."""
    claimed: set[str] = set()
    for (version, nxt), ids in _by_version_and_time(steps).items():
        for part in _parts(session, sorted(ids)):
            free = (
                select_columns(_requests.id)
                .where(_among(session, _requests.id, part))
                .order_by(_requests.id)
                .with_for_update(skip_locked=True)
            )
            statement = (
                update(_requests_table)
                # The ids outside too, so that the update reads them by the primary key rather
                # than joining the locked set against the whole table.
                .where(
                    _among(session, _requests.id, part),
                    _requests.id.in_(free),
                    _requests.version == version,
                )
                .values(next_sweep_at=nxt)
                .returning(_requests.id)
            )
            claimed.update(session.execute(statement).scalars())
    return claimed


def _by_version_and_time(
    steps: Sequence[tuple[str, int, datetime | None]],
) -> dict[tuple[int, datetime | None], list[str]]:
    groups: dict[tuple[int, datetime | None], list[str]] = defaultdict(list)
    for rid, version, nxt in steps:
        groups[(version, nxt)].append(rid)
    return groups


def move_next_sweep(session: Session, steps: Sequence[tuple[str, int, datetime | None]]) -> None:
    """Set each request's next sweep time, unless it changed since it was read (its version):
    a changed request stays due, and the next sweep plans it again. Requests that share a
    version and a next time (most do) share one statement per chunk."""
    for (version, nxt), ids in _by_version_and_time(steps).items():
        for part in _parts(session, ids):
            session.execute(
                update(_requests_table)
                .where(_among(session, _requests.id, part), _requests.version == version)
                .values(next_sweep_at=nxt)
            )


def record_reminders(session: Session, keys: Sequence[tuple[str, str, int | None]]) -> None:
    """Record the key of each queued reminder (request id, key, outbox row) in one driver-level
    batch: the rows are plain strings, so nothing is processed per row."""
    if not keys:
        return
    connection = session.connection()
    created: object = UTCDateTime().process_bind_param(utcnow(), connection.dialect)
    if connection.dialect.name == "sqlite":  # as SQLAlchemy writes it, once, not per row
        created = f"{created:%Y-%m-%d %H:%M:%S.%f}"
    if connection.dialect.name == "postgresql":
        # One statement, three array parameters.
        connection.exec_driver_sql(
            "INSERT INTO reminders (key, request_id, outbox_id, created_at) "
            "SELECT k, r, o, %s FROM unnest(%s::text[], %s::text[], %s::int[]) AS t(k, r, o)",
            (
                created,
                _pg_array([key for _, key, _ in keys]),
                _pg_array([rid for rid, _, _ in keys]),
                _pg_array([outbox_id for _, _, outbox_id in keys]),
            ),
        )
        return
    connection.exec_driver_sql(
        "INSERT INTO reminders (key, request_id, outbox_id, created_at) VALUES (?, ?, ?, ?)",
        [(key, rid, outbox_id, created) for rid, key, outbox_id in keys],
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
