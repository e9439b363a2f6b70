"""Racing decisions: exactly one wins, the losers change nothing."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import event
from sqlmodel import Session, col, select

from dsrflow.audit.chain import append_event, verify_chains
from dsrflow.audit.models import Event
from dsrflow.db import utcnow
from dsrflow.errors import Conflict
from dsrflow.requests import repository, service
from dsrflow.requests.models import Request
from dsrflow.requests.schemas import RequestCreate, TransitionIn
from dsrflow.runtime import Runtime
from tests.conftest import make_request, request_body

RACERS = 32


def race(rt: Runtime, request_id: str, bodies: list[TransitionIn]) -> list[str]:
    barrier = threading.Barrier(len(bodies))

    def attempt(body: TransitionIn) -> str:
        with Session(rt.db, expire_on_commit=False) as session:
            barrier.wait()
            try:
                service.transition(rt, session, request_id, body, actor="racer")
                return "won"
            except Conflict:
                return "conflict"

    with ThreadPoolExecutor(max_workers=len(bodies)) as pool:
        return list(pool.map(attempt, bodies))


def closing_events(rt: Runtime, request_id: str) -> list[Event]:
    with Session(rt.db) as session:
        return list(
            session.exec(
                select(Event).where(
                    Event.request_id == request_id,
                    col(Event.to_state).in_(["fulfilled", "refused", "not_held", "withdrawn"]),
                )
            )
        )


def test_32_racing_closures_one_wins(rt: Runtime) -> None:
    request = make_request(rt, "correction", "identity_verified")
    bodies = [
        TransitionIn(trigger="fulfill", summary=f"訂正 {i}")
        if i % 2
        else TransitionIn(trigger="report_not_held", explanation=f"保有していません {i}")
        for i in range(RACERS)
    ]
    outcomes = race(rt, request.id, bodies)
    assert outcomes.count("won") == 1
    assert outcomes.count("conflict") == RACERS - 1
    assert len(closing_events(rt, request.id)) == 1
    with Session(rt.db) as session:
        final = service.repository.get(session, request.id)
        assert final is not None
        assert final.version == request.version + 1
        _, breaks = verify_chains(session)
        assert breaks == []


def test_32_racers_with_the_same_expected_version(rt: Runtime) -> None:
    request = make_request(rt, "suspension")
    bodies = [
        TransitionIn(trigger="withdraw", expected_version=request.version, note=str(i))
        for i in range(RACERS)
    ]
    outcomes = race(rt, request.id, bodies)
    assert outcomes.count("won") == 1
    assert len(closing_events(rt, request.id)) == 1


def test_first_intakes_of_a_year_race_for_the_counter(rt: Runtime) -> None:
    # Regression: the year's counter row was created check-then-insert, so concurrent first
    # intakes failed with a unique violation on PostgreSQL.
    barrier = threading.Barrier(RACERS)

    def submit(i: int) -> str:
        with Session(rt.db, expire_on_commit=False) as session:
            barrier.wait()
            data = RequestCreate(**request_body(email=f"p{i}@example.jp"))
            return service.submit(rt, session, data, channel="api").request.reference

    with ThreadPoolExecutor(max_workers=RACERS) as pool:
        references = list(pool.map(submit, range(RACERS)))
    numbers = sorted(int(ref.rsplit("-", 1)[1]) for ref in references)
    assert numbers == list(range(1, RACERS + 1))


@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres)])
def test_an_open_create_does_not_hold_up_the_next_on_postgresql(rt: Runtime) -> None:
    """The reference counter's row lock lasts one statement, not a whole create: a second create
    takes its number while the first is still writing its rows."""
    with Session(rt.db) as first:
        taken = service.open_request(
            rt, first, RequestCreate.model_validate(request_body()), channel="api"
        ).request.reference
        with Session(rt.db) as second:
            second.connection().exec_driver_sql("SET lock_timeout = '2s'")
            body = RequestCreate.model_validate(request_body())
            created = service.submit(rt, second, body, channel="api")
            assert created.request.reference > taken
        first.commit()
    with Session(rt.db) as session:
        references = session.exec(select(Request.reference)).all()
    assert sorted(references) == sorted([taken, created.request.reference])


@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_create_in_a_begun_session_takes_no_second_connection(rt: Runtime) -> None:
    """Mail intake reads before it creates: its number comes from its own transaction, so that
    one call never holds two of the pool's connections (40 threads, 30 connections)."""
    checkouts: list[object] = []

    def checked_out(*args: object) -> None:
        checkouts.append(args)

    with Session(rt.db) as session:
        session.exec(select(Request.id)).all()  # begun: holds a connection
        event.listen(rt.db, "checkout", checked_out)
        service.open_request(
            rt, session, RequestCreate.model_validate(request_body()), channel="mail"
        )
        event.remove(rt.db, "checkout", checked_out)
        session.commit()
    assert checkouts == []


@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_lock_that_waited_appends_after_the_event_it_waited_for(rt: Runtime) -> None:
    """The lock reads the request's audit head with the request. A lock that had to wait for
    another transaction's append must read the head that one left, not the head as it was when
    the wait began: the head is locked too, so both rows are read again once the wait ends."""
    request = make_request(rt, "correction")
    with Session(rt.db) as first:
        assert repository.lock(first, request.id) is not None
        append_event(first, request.id, kind="note_added", actor="first", at=utcnow())
        first.flush()
        backend_pid = first.connection().exec_driver_sql("SELECT pg_backend_pid()").scalar()
        failures: list[BaseException] = []

        def second() -> None:
            try:
                with Session(rt.db) as session:
                    assert repository.lock(session, request.id) is not None  # waits for first
                    append_event(
                        session, request.id, kind="note_added", actor="second", at=utcnow()
                    )
                    session.commit()
            except BaseException as exc:  # reported by the test's thread
                failures.append(exc)

        waiter = threading.Thread(target=second)
        waiter.start()
        with Session(rt.db) as watch:
            for _ in range(500):  # until the second is blocked on first's lock (at most 5 s)
                blocked = watch.connection().exec_driver_sql(
                    "SELECT count(*) FROM pg_stat_activity "
                    f"WHERE {int(backend_pid)} = ANY(pg_blocking_pids(pid))"
                )
                if blocked.scalar():
                    break
                watch.rollback()
                time.sleep(0.01)
            else:
                pytest.fail("the second lock never waited for the first")
        first.commit()
        waiter.join(timeout=30)
    assert not failures, failures
    with Session(rt.db) as session:
        actors = session.exec(
            select(Event.actor).where(Event.request_id == request.id).order_by(col(Event.seq))
        ).all()
        assert actors[-2:] == ["first", "second"]
        assert verify_chains(session)[1] == []
