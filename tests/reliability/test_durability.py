"""Durable by default (issue 12, section 3): SQLite syncs each commit; a 201 or 200 is only
ever sent after the commit succeeded; read-only work never takes SQLite's write lock."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, func, select

from dsrflow import db as db_module
from dsrflow.app import create_app
from dsrflow.db import (
    ReadOnlyViolation,
    WriteGate,
    _gate_for,
    make_engine,
    read_session,
    reading,
    write_session,
)
from dsrflow.requests.models import Request
from dsrflow.runtime import Runtime
from tests.conftest import make_request, request_body


@pytest.fixture
def backend() -> str:
    return "sqlite"


def synchronous(url: str, **kwargs: str) -> int:
    engine = make_engine(url, **kwargs)  # type: ignore[arg-type]
    with engine.connect() as c:
        value = int(c.exec_driver_sql("PRAGMA synchronous").scalar_one())
    engine.dispose()
    return value


def test_sqlite_syncs_every_commit_unless_told(database_url: str) -> None:
    assert synchronous(database_url) == 2  # FULL
    assert synchronous(database_url, sqlite_synchronous="NORMAL") == 1


def count(rt: Runtime) -> int:
    with Session(rt.db) as s:
        return int(s.exec(select(func.count()).select_from(Request)).one())


def test_no_success_is_sent_before_the_commit(
    rt: Runtime, auth: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    request = make_request(rt, "disclosure")
    before = count(rt)

    def failing_commit(self: Session) -> None:
        raise OperationalError("COMMIT", {}, sqlite3.OperationalError("disk I/O error"))

    monkeypatch.setattr(Session, "commit", failing_commit)
    with TestClient(create_app(rt), raise_server_exceptions=False) as client:
        created = client.post("/api/v1/requests", json=request_body())
        refused = client.post(
            f"/api/v1/requests/{request.id}/transitions",
            json={"trigger": "withdraw", "note": "x"},
            headers=auth,
        )
    assert created.status_code >= 500
    assert refused.status_code >= 500
    monkeypatch.undo()
    assert count(rt) == before
    with Session(rt.db) as s:
        current = s.get(Request, request.id)
        assert current is not None
        assert current.state == "received"


def test_read_sessions_do_not_take_the_write_lock(rt: Runtime, database_url: str) -> None:
    make_request(rt, "disclosure")
    path = Path(database_url.removeprefix("sqlite:///"))
    holder = sqlite3.connect(path, timeout=0.1, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        with read_session(rt.db) as s:
            assert s.exec(select(func.count()).select_from(Request)).one() == 1
            with pytest.raises(ReadOnlyViolation):
                s.add(Request(**{**make_fields(), "reference": "DSR-1999-000001"}))
                s.flush()
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_a_write_session_only_reads_after_its_first_commit(rt: Runtime) -> None:
    with write_session(rt.db, reads_after_commit=True) as s:
        s.add(_numbered(2))
        s.commit()
        assert s.exec(select(func.count()).select_from(Request)).one() == 1
        with pytest.raises(ReadOnlyViolation):
            s.add(_numbered(3))
            s.flush()
    # Both sessions read through one option engine, made once: not one per call.
    assert reading(rt.db) is reading(rt.db) is reading(reading(rt.db))
    with write_session(rt.db) as s:  # without reads_after_commit it goes on writing
        s.add(_numbered(4))
        s.commit()
        s.add(_numbered(5))
        s.commit()


def _numbered(n: int) -> Request:
    return Request(
        **{**make_fields(), "reference": f"DSR-1999-{n:06d}", "status_token_hash": f"{n:064d}"}
    )


def make_fields() -> dict[str, object]:
    from dsrflow.db import utcnow

    now = utcnow()
    return {
        "type": "disclosure",
        "state": "received",
        "requester_name": "x",
        "requester_email": "x@example.jp",
        "details": "x",
        "received_at": now,
        "due_at": now,
        "status_token_hash": "x" * 64,
    }


def test_writers_in_one_process_take_turns_in_arrival_order() -> None:
    gate = WriteGate()
    assert gate.acquire(timeout=1)
    order: list[int] = []
    threads = []
    for n in range(5):
        thread = threading.Thread(target=lambda n=n: gate.acquire(60) and order.append(n))
        thread.start()
        while len(gate._waiters) <= n:  # queued in this order
            time.sleep(0.001)
        threads.append(thread)
    for served in range(1, 6):
        gate.release()
        wait_until(lambda served=served: len(order) == served)
    for thread in threads:
        thread.join()
    assert order == [0, 1, 2, 3, 4]
    gate.release()
    assert gate.acquire(timeout=0)  # free again once everyone has gone


def test_a_waiting_writer_gives_up_after_its_timeout_and_leaves_the_queue() -> None:
    gate = WriteGate()
    assert gate.acquire(timeout=1)
    assert not gate.acquire(timeout=0.05)
    assert not gate._waiters
    gate.release()
    assert gate.acquire(timeout=0)


@pytest.mark.parametrize("end", ["commit", "rollback", "close"])
def test_every_end_of_a_write_transaction_frees_the_gate(database_url: str, end: str) -> None:
    engine = make_engine(database_url)
    gate = _gate_for(engine.url.database)
    session = Session(engine)
    session.exec(select(func.count()).select_from(Request)).one()  # BEGIN IMMEDIATE: gate held
    assert not gate.acquire(timeout=0)
    if end == "close":
        session.connection().connection.dbapi_connection.close()  # type: ignore[union-attr]
        session.invalidate()
    else:
        getattr(session, end)()
    assert gate.acquire(timeout=0)
    gate.release()
    with read_session(engine) as reader:  # a reader never queues for the gate
        assert gate.acquire(timeout=0)
        reader.exec(select(func.count()).select_from(Request)).one()
        gate.release()
    engine.dispose()


def test_a_failed_begin_gives_the_gate_back(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make_engine(database_url)
    gate = _gate_for(engine.url.database)

    def disk_error(_connection: object) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(db_module, "_take_write_lock", disk_error)
    with Session(engine) as session, pytest.raises(sqlite3.OperationalError):
        session.connection()
    assert gate.acquire(timeout=0)
    gate.release()
    engine.dispose()


def wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.001)


def test_a_new_connection_waits_for_the_lock_to_switch_to_wal(tmp_path: Path) -> None:
    """Processes that open a new database together (serve and scheduler starting): SQLite
    refuses the switch to WAL at once while another connection writes, busy handler or not."""
    path = tmp_path / "new.sqlite3"
    released = threading.Event()

    def writer() -> None:
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("CREATE TABLE t (x)")
        other.execute("BEGIN IMMEDIATE")
        other.execute("INSERT INTO t VALUES (1)")
        started.set()
        time.sleep(0.3)
        other.execute("COMMIT")
        other.close()
        released.set()

    started = threading.Event()
    thread = threading.Thread(target=writer)
    thread.start()
    started.wait(10)
    engine = make_engine(f"sqlite:///{path}")
    with engine.connect() as connection:
        mode = connection.exec_driver_sql("PRAGMA journal_mode").scalar_one()
    thread.join()
    assert released.is_set()
    assert mode == "wal"
    engine.dispose()
