"""The audit log's hash chains: tampering of any kind is caught by `dsrflow audit verify`."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlmodel import Session, col, select

from dsrflow.audit.chain import append_event, verify_chains
from dsrflow.audit.models import Event
from dsrflow.cli import main
from dsrflow.db import utcnow
from dsrflow.requests import repository
from dsrflow.runtime import Runtime
from tests.conftest import make_request


def verify(capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["audit", "verify"])
    return code, capsys.readouterr().out


def test_untouched_log_verifies(
    rt: Runtime, cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    make_request(rt, "disclosure", "fulfilled")
    make_request(rt, "correction", "refused")
    code, out = verify(capsys)
    assert code == 0, out
    assert "6 events checked, 0 breaks" in out  # 1+3 (a fee payment) and 1+1


@pytest.mark.parametrize(
    "tamper",
    [
        # an edited explanation
        'UPDATE events SET detail = \'{"summary": "something else"}\' WHERE seq = 3',
        # a back-dated decision
        "UPDATE events SET at = at - INTERVAL '1 day' WHERE seq = 3",
        # a deleted middle event
        "DELETE FROM events WHERE seq = 2",
        # a deleted last event
        "DELETE FROM events WHERE seq = 3",
    ],
    ids=["edited", "backdated", "deleted-middle", "deleted-tail"],
)
def test_tampering_is_detected(
    tamper: str, rt: Runtime, cli_env: None, capsys: pytest.CaptureFixture[str], backend: str
) -> None:
    request = make_request(rt, "disclosure", "fulfilled")
    if backend == "sqlite":
        tamper = tamper.replace("at - INTERVAL '1 day'", "datetime(at, '-1 day')")
    with rt.db.begin() as connection:
        connection.execute(text(tamper))
    code, out = verify(capsys)
    assert code == 1
    assert f"BROKEN request {request.id}" in out


def test_an_append_after_a_rolled_back_savepoint_follows_the_chain_as_it_is(rt: Runtime) -> None:
    """The lock's head serves the appends of the transaction it was read in; an append in a
    savepoint that rolls back is gone, and the next append must not follow it."""
    request = make_request(rt, "correction")
    with Session(rt.db) as session:
        assert repository.lock(session, request.id) is not None
        append_event(session, request.id, kind="note_added", actor="kept", at=utcnow())
        savepoint = session.begin_nested()
        append_event(session, request.id, kind="note_added", actor="rolled back", at=utcnow())
        savepoint.rollback()
        append_event(session, request.id, kind="note_added", actor="after", at=utcnow())
        session.commit()
    with Session(rt.db) as session:
        actors = session.exec(
            select(Event.actor).where(Event.request_id == request.id).order_by(col(Event.seq))
        ).all()
        assert actors[-2:] == ["kept", "after"]
        assert verify_chains(session)[1] == []
