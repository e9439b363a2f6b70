"""The connection pool on PostgreSQL: a connection that died while idle is replaced, not lent;
one in steady use costs no ping; writes sent in a pipeline fail as a statement would, and
their checks wait for the answers. And the threads that hold connections: API_THREADS by
database."""

from __future__ import annotations

from typing import Any

import pytest
from anyio import to_thread
from sqlalchemy import event, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, func, select
from starlette.testclient import TestClient

from dsrflow import db as db_module
from dsrflow.app import create_app
from dsrflow.auth.models import Handler
from dsrflow.db import make_engine, once_answered, pipelined, rowcount
from dsrflow.outbound_mail.models import OutboxMessage
from dsrflow.runtime import Runtime
from tests.conftest import auth_header, make_request

on_postgres = pytest.mark.parametrize(
    "backend", [pytest.param("postgres", marks=pytest.mark.postgres)]
)


def backend_pid(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())


def pings(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> list[object]:
    seen: list[object] = []
    real = engine.dialect.do_ping

    def counted(dbapi_connection: Any) -> bool:
        seen.append(dbapi_connection)
        return real(dbapi_connection)

    monkeypatch.setattr(engine.dialect, "do_ping", counted)
    return seen


@on_postgres
def test_a_connection_that_died_while_idle_is_replaced_not_lent(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make_engine(database_url, pool_size=1, max_overflow=0)
    first = backend_pid(engine)  # back in the pool now
    with make_engine(database_url).connect() as other:
        other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
    monkeypatch.setattr(db_module, "IDLE_PING_SECONDS", 0.0)  # it has sat idle long enough
    assert backend_pid(engine) != first  # a new connection, and no error
    engine.dispose()


@on_postgres
def test_a_connection_in_steady_use_is_not_pinged(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make_engine(database_url, pool_size=1, max_overflow=0)
    seen = pings(engine, monkeypatch)
    for _ in range(5):
        backend_pid(engine)
    assert seen == []
    monkeypatch.setattr(db_module, "IDLE_PING_SECONDS", 0.0)
    backend_pid(engine)
    assert len(seen) == 1
    engine.dispose()


def test_an_error_in_a_pipeline_is_raised_as_from_a_statement(db: Engine) -> None:
    """On PostgreSQL the unique violation arrives when the pipeline ends, not at the insert;
    it is still SQLAlchemy's IntegrityError, the transaction rolls back whole, and the session
    goes on working. On SQLite the block changes nothing."""
    insert = Handler.__table__.insert().inline()  # type: ignore[attr-defined]
    row = {"name": "A", "email": "a@example.jp", "role": "handler", "token_hash": "same"}
    statements: list[str] = []

    @event.listens_for(db, "before_cursor_execute")
    def _seen(_c: Any, _cur: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    with Session(db) as session:
        with pytest.raises(IntegrityError), pipelined(session):
            session.connection().execute(insert, {**row, "created_at": db_module.utcnow()})
            session.connection().execute(insert, {**row, "created_at": db_module.utcnow()})
        assert sum("INSERT INTO handlers" in s for s in statements) == 2
        session.rollback()
        assert session.exec(select(func.count()).select_from(Handler)).one() == 0


def test_a_check_of_a_pipelined_write_waits_for_its_answer(db: Engine) -> None:
    """SQLAlchemy takes a write's row count as the statement is sent; inside a pipeline its
    answer has not come yet. A check given to ``once_answered`` runs when the block ends and
    reads the counts the answers brought (1 for the row updated, 0 for none). A block inside
    another is part of the outer one; on SQLite checks run at once."""
    insert = Handler.__table__.insert().inline()  # type: ignore[attr-defined]
    row = {
        "name": "A",
        "email": "a@example.jp",
        "role": "handler",
        "created_at": db_module.utcnow(),
    }
    rename = text("UPDATE handlers SET name = 'B' WHERE token_hash = :hash")
    counts: list[tuple[int, int]] = []
    with Session(db) as session:
        session.connection().execute(insert, {**row, "token_hash": "one"})
        with pipelined(session):
            with pipelined(session):
                found = session.connection().execute(rename, {"hash": "one"})
                missed = session.connection().execute(rename, {"hash": "none"})
            once_answered(session, lambda: counts.append((rowcount(found), rowcount(missed))))
            assert counts == ([] if db.dialect.name == "postgresql" else [(1, 0)])
        assert counts == [(1, 0)]

        def fails() -> None:
            raise RuntimeError("checked")

        with pytest.raises(RuntimeError, match="checked"), pipelined(session):
            once_answered(session, fails)
        session.rollback()


def test_a_decision_sends_its_writes_in_one_round_trip(rt: Runtime, client: TestClient) -> None:
    """Under the request's lock a decision's update, event, head and letter need no answer
    before the next: on PostgreSQL all four go in one pipeline, after the lock's read, and the
    answer still shows the event and the letter is queued once."""
    request = make_request(rt, "disclosure")
    sent: list[tuple[str, bool]] = []

    def seen(connection: Any, _cur: Any, statement: str, *_args: Any) -> None:
        driver = connection.connection.driver_connection
        pgconn = getattr(driver, "pgconn", None)  # psycopg's; SQLite has no pipeline
        pipelined_now = bool(pgconn and pgconn.pipeline_status)
        sent.append((" ".join(statement.split()[:3]), pipelined_now))

    refusal = {
        "trigger": "refuse",
        "reason_code": "PROC_ID_UNVERIFIED",
        "explanation": "We could not confirm your identity from the documents sent.",
    }
    headers = auth_header(rt, "handler")
    event.listen(rt.db, "before_cursor_execute", seen)
    try:
        answer = client.post(
            f"/api/v1/requests/{request.id}/transitions", json=refusal, headers=headers
        )
    finally:
        event.remove(rt.db, "before_cursor_execute", seen)
    assert answer.status_code == 200, answer.text
    writes = [(s, p) for s, p in sent if s.split()[0] in ("UPDATE", "INSERT")]
    assert [s for s, _ in writes] == [
        "UPDATE requests SET",
        "INSERT INTO events",
        "UPDATE audit_heads SET",
        "INSERT INTO outbox",
    ]
    on_postgres = rt.db.dialect.name == "postgresql"
    assert [p for _, p in writes] == [on_postgres] * 4
    assert not any(p for s, p in sent if s.startswith("SELECT"))
    assert answer.json()["history"][-1]["trigger"] == "refuse"
    with Session(rt.db) as session:
        letters = session.exec(
            select(OutboxMessage.letter).where(OutboxMessage.request_id == request.id)
        ).all()
    assert letters.count("refused") == 1


@pytest.mark.parametrize("configured", [None, 7])
def test_api_threads_default_to_what_measured_best_for_the_database(
    rt: Runtime, configured: int | None
) -> None:
    """Unset, ``API_THREADS`` is 4 on PostgreSQL (more threads there only contend for the
    interpreter lock: docs/deploy.md) and anyio's 40 on SQLite; set, it is what it says."""
    rt.settings.api_threads = configured
    app = create_app(rt)

    @app.get("/test-threads")
    async def threads() -> dict[str, float]:
        return {"tokens": to_thread.current_default_thread_limiter().total_tokens}

    with TestClient(app) as client:
        tokens = client.get("/test-threads").json()["tokens"]
    default = 4 if rt.db.dialect.name == "postgresql" else 40
    assert tokens == (configured or default)
