"""The connection pool on PostgreSQL: a connection that died while idle is replaced, not lent;
one in steady use costs no ping; writes sent in a pipeline fail as a statement would."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, func, select

from dsrflow import db as db_module
from dsrflow.auth.models import Handler
from dsrflow.db import make_engine, pipelined

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
