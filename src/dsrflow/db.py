"""Database engine, sessions and migrations.

Sessions say what they are for (see docs/reliability.md):

- ``Session(engine)`` (or ``write_session``) is for work that writes. On SQLite its transactions
  start with ``BEGIN IMMEDIATE``: the write lock is taken at the start, so two writers queue
  instead of one failing half-way with a stale snapshot.
- ``read_session(engine)`` is for work that only reads. On SQLite it starts a deferred ``BEGIN``,
  which in WAL mode never blocks nor waits for a writer; a write statement in it is a bug and
  raises ``ReadOnlyViolation`` (on every backend, so the tests catch it on either).
- ``write_session(engine, reads_after_commit=True)``: a request's session. Its first commit ends
  the writing; what it reads afterwards (the response) runs in a deferred read transaction, so
  the write lock is never held while the response travels between threads and the event loop.

SQLite runs in WAL mode with ``synchronous=FULL`` by default (each commit is on disk before it
is acknowledged; ``NORMAL`` trades that for speed, see ``DSRFLOW_SQLITE_SYNCHRONOUS``). Within
one process, writers queue first for a ``WriteGate`` (first come, first served, and woken the
moment the writer before them ends), and only then for SQLite's lock: SQLite's own busy handler
polls with sleeps of up to 100 ms, which under load left the lock idle while callers slept.
Between processes (``serve`` beside ``scheduler``) the busy handler still decides; taking the
lock waits up to the busy timeout and is then tried again, so "database is locked" does not
reach a caller while the lock keeps changing hands. PostgreSQL is used as is, with row
locks, conditional updates and ``FOR UPDATE SKIP LOCKED`` claims doing the coordination.
"""

from __future__ import annotations

import ast
import logging
import re
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import DateTime, event, inspect
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.types import TypeDecorator
from sqlmodel import Session, create_engine

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"
READ_ONLY = "dsrflow_read_only"  # execution option: a read-only connection
SqliteSynchronous = Literal["FULL", "NORMAL"]
BUSY_TIMEOUT_SECONDS = 30.0
# After each busy timeout the write lock is asked for again, this many times in all.
BUSY_ATTEMPTS = 4

log = logging.getLogger(__name__)


class ReadOnlyViolation(RuntimeError):
    """A write statement ran in a read-only session: the caller chose the wrong session."""


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out, on every backend (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: store aware UTC")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


_READING = (
    "SELECT",
    "WITH",
    "PRAGMA",
    "EXPLAIN",
    "SHOW",
    "BEGIN",
    "COMMIT",
    "ROLLBACK",
    "SAVEPOINT",
    "RELEASE",
)


class WriteGate:
    """A first-come, first-served lock over one SQLite database's write transactions in this
    process. ``release`` hands the gate straight to the longest waiter, so no writer waits
    longer than the writers ahead of it, and none sleeps while the database is free."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._held = False
        self._waiters: deque[threading.Lock] = deque()

    def acquire(self, timeout: float) -> bool:
        with self._mutex:
            if not self._held:
                self._held = True
                return True
            turn = threading.Lock()
            turn.acquire()
            self._waiters.append(turn)
        if turn.acquire(timeout=timeout):
            return True  # handed over by release()
        with self._mutex:
            if turn in self._waiters:
                self._waiters.remove(turn)
                return False
        return True  # handed over just as the wait timed out

    def release(self) -> None:
        with self._mutex:
            if self._waiters:
                self._waiters.popleft().release()  # the gate stays held, by the next writer
            else:
                self._held = False


_GATES: dict[str, WriteGate] = {}
_GATES_MUTEX = threading.Lock()


def _gate_for(database: str | None) -> WriteGate:
    """One gate per database file in this process (engines on one file share it); an in-memory
    database is private to its engine."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return WriteGate()
    key = str(Path(database).resolve())
    with _GATES_MUTEX:
        return _GATES.setdefault(key, WriteGate())


def _gated_connection(gate: WriteGate) -> type[sqlite3.Connection]:
    """A ``sqlite3.Connection`` that gives ``gate`` back when its write transaction ends."""

    class GatedConnection(sqlite3.Connection):
        holds_gate = False

        def _ended(self) -> None:
            if self.holds_gate and not self.in_transaction:
                self.holds_gate = False
                gate.release()

        def commit(self) -> None:
            try:
                super().commit()
            finally:
                self._ended()

        def rollback(self) -> None:
            try:
                super().rollback()
            finally:
                self._ended()

        def close(self) -> None:
            try:
                super().close()
            finally:
                if self.holds_gate:
                    self.holds_gate = False
                    gate.release()

    return GatedConnection


def _is_read_only(connection: Any) -> bool:
    return bool(connection.get_execution_options().get(READ_ONLY))


def _begin_immediate(connection: Any, gate: WriteGate) -> None:
    """Take this process's write gate, then SQLite's write lock (waiting the busy timeout and
    then asking again)."""
    if not gate.acquire(timeout=BUSY_TIMEOUT_SECONDS * BUSY_ATTEMPTS):
        raise sqlite3.OperationalError("database is locked (write gate)")
    dbapi_connection = connection.connection.dbapi_connection
    dbapi_connection.holds_gate = True
    try:
        _take_write_lock(connection)
    except BaseException:
        dbapi_connection.holds_gate = False
        gate.release()
        raise


def _take_write_lock(connection: Any) -> None:
    for attempt in range(1, BUSY_ATTEMPTS + 1):
        try:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
            return
        except Exception as exc:  # sqlalchemy wraps sqlite3.OperationalError
            cause = getattr(exc, "orig", exc)
            locked = isinstance(cause, sqlite3.OperationalError) and "locked" in str(cause)
            if not locked or attempt == BUSY_ATTEMPTS:
                raise
            log.warning("database: write lock still busy, attempt %d; waiting again", attempt)
            time.sleep(0.05 * attempt)


def _switch_to_wal(cursor: sqlite3.Cursor) -> None:
    """``PRAGMA journal_mode=WAL``, asked again while another connection holds a lock: SQLite
    answers "database is locked" at once to it, without its busy handler, so processes that
    open a new database together (``serve`` and ``scheduler`` starting) would fail."""
    deadline = time.monotonic() + BUSY_TIMEOUT_SECONDS
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def make_engine(
    url: str, *, sqlite_synchronous: SqliteSynchronous = "FULL", **kwargs: Any
) -> Engine:
    """An engine for ``url``. Errors never carry the statement's parameters (names, addresses,
    letters), so a logged database error holds no personal data."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        # A call may hold a write session and a short read session (the token check) at once,
        # from each of the 40 worker threads: the default pool (5 + 10) starves under load.
        if parsed.database and parsed.database != ":memory:":
            kwargs.setdefault("pool_size", 20)
            kwargs.setdefault("max_overflow", 100)
        gate = _gate_for(parsed.database)
        engine = create_engine(
            url,
            connect_args={
                "check_same_thread": False,
                "timeout": BUSY_TIMEOUT_SECONDS,
                "factory": _gated_connection(gate),
            },
            hide_parameters=True,
            **kwargs,
        )
        synchronous = {"FULL": "FULL", "NORMAL": "NORMAL"}[sqlite_synchronous]

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            # Let us issue BEGIN ourselves (pysqlite would defer it to the first write).
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            _switch_to_wal(cursor)
            cursor.execute(f"PRAGMA synchronous={synchronous}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_SECONDS * 1000)}")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(connection: Any) -> None:
            if _is_read_only(connection):
                connection.exec_driver_sql("BEGIN")  # deferred: a reader never takes the lock
            else:
                _begin_immediate(connection, gate)

    else:
        kwargs.setdefault("pool_size", 10)
        kwargs.setdefault("max_overflow", 20)
        engine = create_engine(url, hide_parameters=True, **kwargs)
        if not kwargs.get("pool_pre_ping"):
            _ping_when_idle(engine)

    @event.listens_for(engine, "before_cursor_execute")
    def _guard_read_only(
        connection: Any, _cursor: Any, statement: str, *_args: Any, **_kw: Any
    ) -> None:
        if _is_read_only(connection) and not statement.lstrip().upper().startswith(_READING):
            raise ReadOnlyViolation(f"write in a read-only session: {statement.split()[0]}")

    return engine


def reading(engine: Engine) -> Engine:
    """The same engine and pool, for read-only work (deferred BEGIN on SQLite)."""
    if engine.get_execution_options().get(READ_ONLY):
        return engine
    return _with_options(engine, "reading", {READ_ONLY: True})


def _with_options(engine: Engine, name: str, options: dict[str, Any]) -> Engine:
    """``engine.execution_options(**options)``, made once per engine: each new option engine
    joins the engine's event listeners anew, which costs more than the statement it serves."""
    made: dict[str, Engine] = engine.__dict__.setdefault("_dsrflow_option_engines", {})
    if name not in made:
        made[name] = engine.execution_options(**options)
    return made[name]


# A pooled connection back for longer than this is pinged before it is lent again.
IDLE_PING_SECONDS = 2.0


def _ping_when_idle(engine: Engine) -> None:
    """Ping a PostgreSQL connection before lending it only when it has sat idle in the pool:
    one that sat there through a server restart, or past a proxy's idle timeout, is replaced
    instead of failing the call that borrows it. ``pool_pre_ping`` pings at every checkout, a
    round trip on every call (two per handler decision); a connection in steady use is not
    pinged. A server restarted under steady load fails the calls that were using it then; the
    first such error invalidates the whole pool, so the next calls connect afresh."""

    def _idle_from_now(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    event.listen(engine, "connect", _idle_from_now)  # new, or
    event.listen(engine, "checkin", _idle_from_now)  # back in the pool

    @event.listens_for(engine, "checkout")
    def _lent(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        if time.monotonic() - record.info.get("idle_since", 0.0) < IDLE_PING_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as exc:
            # The pool discards this connection and lends a new one.
            raise DisconnectionError("idle connection found closed") from exc


# session.info's key for the checks waiting for a ``pipelined`` block's answers.
_PIPELINE_CHECKS = "dsrflow_pipeline_checks"


@contextmanager
def pipelined(session: Session) -> Iterator[None]:
    """Statements the block sends go to PostgreSQL without waiting for each one's answer
    (psycopg's pipeline mode): the answers come back together when the block ends. For a run of
    writes whose results nobody reads (a new request's rows), one round trip instead of one per
    statement. Only such statements belong in the block: SQLAlchemy finds no rows in a result
    that has not arrived, so a SELECT, a RETURNING (an insert that reads back its new id: use
    ``insert(...).inline()``) or a rowcount read inside it fails: a check of a rowcount waits
    for the answers (``once_answered``). An error that arrives at the end is raised as
    SQLAlchemy raises it from a statement (``IntegrityError`` and the like). A block inside
    another is part of the outer one. On SQLite nothing changes."""
    connection = session.connection()
    if connection.dialect.name != "postgresql" or _PIPELINE_CHECKS in session.info:
        yield
        return
    dbapi = connection.dialect.loaded_dbapi
    checks: list[Callable[[], None]] = []
    session.info[_PIPELINE_CHECKS] = checks
    try:
        driver: Any = connection.connection.driver_connection  # a psycopg Connection
        with driver.pipeline():
            yield
    except dbapi.Error as exc:
        raise DBAPIError.instance(None, None, exc, dbapi.Error) from exc
    finally:
        del session.info[_PIPELINE_CHECKS]
    for check in checks:
        check()


def once_answered(session: Session, check: Callable[[], None]) -> None:
    """Run ``check`` (which may read a write's ``rowcount``) once the statements sent so far
    have their answers: now, or, inside a ``pipelined`` block, when the block ends."""
    pending = session.info.get(_PIPELINE_CHECKS)
    if pending is None:
        check()
    else:
        pending.append(check)


def rowcount(result: Any) -> int:
    """The rows a write changed, also for one sent in a ``pipelined`` block and read after it
    (``once_answered``): SQLAlchemy takes the count as the statement is sent, before a
    pipelined answer has come, and psycopg fills in the cursor's count when it arrives."""
    count = int(result.rowcount)
    return count if count != -1 else int(result.context.cursor.rowcount)


def read_session(engine: Engine) -> Session:
    """A session for work that only reads: on SQLite it never takes the write lock."""
    return Session(reading(engine), expire_on_commit=False)


def lookup_session(engine: Engine) -> Session:
    """A read session for a single statement (a token's lookup before every handler call): on
    PostgreSQL it runs in autocommit, which spares the BEGIN and ROLLBACK round trips; on
    SQLite it is a read session."""
    options: dict[str, Any] = {READ_ONLY: True}
    if engine.dialect.name == "postgresql":
        options["isolation_level"] = "AUTOCOMMIT"
    return Session(_with_options(engine, "lookup", options), expire_on_commit=False)


class _ReadsAfterCommit(Session):
    """A write session whose first commit ends the writing (see ``write_session``)."""


@event.listens_for(_ReadsAfterCommit, "after_commit")
def _now_reading(committed: Session) -> None:
    assert isinstance(committed.bind, Engine)
    committed.bind = reading(committed.bind)


def write_session(engine: Engine, *, reads_after_commit: bool = False) -> Session:
    """A session for work that writes (``BEGIN IMMEDIATE`` on SQLite). With
    ``reads_after_commit``, its first commit ends the writing: later transactions of the session
    only read, in deferred transactions that hold no lock."""
    kind = _ReadsAfterCommit if reads_after_commit else Session
    return kind(engine, expire_on_commit=False)


def alembic_config(engine: Engine) -> Config:
    # Alembic is imported only to migrate: a command that does not (ingest-email) starts faster.
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


# Any constant both sides agree on: the key of the PostgreSQL advisory lock for migrations.
MIGRATION_LOCK_KEY = 0x64737266  # "dsrf"


def migrate(engine: Engine) -> tuple[str | None, str | None]:
    """Bring an empty or older database up to the current schema, under a lock.

    Many processes may start at once (API workers, schedulers): the first takes the lock and
    migrates, the others wait for it and then find nothing to do. PostgreSQL: a transaction-level
    advisory lock, held by the transaction that runs the migrations. SQLite: the write lock,
    taken by ``BEGIN IMMEDIATE`` on the connection that runs them. Returns the revision before
    and after, as seen under the lock.
    """
    from alembic import command
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})")
        else:
            connection.exec_driver_sql("SELECT 1")  # begins: BEGIN IMMEDIATE takes the lock
        before = MigrationContext.configure(connection).get_current_revision()
        config = alembic_config(engine)
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
        after = MigrationContext.configure(connection).get_current_revision()
        connection.commit()
    return before, after


_REVISION_LINE = re.compile(r"^(revision|down_revision)\s*(?::[^=]+)?=\s*(.+?)\s*$", re.M)


def head_revision() -> str:
    """The code's head migration, read from the revision files' ``revision`` and
    ``down_revision`` lines: cheaper than loading Alembic, which a command that only checks the
    schema (``ingest-email`` from an MTA's pipe) would pay on every start."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        found = dict(_REVISION_LINE.findall(path.read_text(encoding="utf-8")))
        revisions.add(str(ast.literal_eval(found["revision"])))
        down = ast.literal_eval(found.get("down_revision", "None"))
        parents.update([down] if isinstance(down, str) else down or ())
    heads = revisions - parents
    if len(heads) != 1:
        raise RuntimeError(f"the migrations have {len(heads)} heads: {sorted(heads)}")
    return heads.pop()


def schema_revisions(engine: Engine) -> tuple[str | None, str]:
    """The database's migration revision (None when empty) and the code's head revision."""
    with engine.connect() as connection:
        if inspect(connection).has_table("alembic_version"):
            current = connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
        else:
            current = None
        connection.rollback()
    return current, head_revision()
