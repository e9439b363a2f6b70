"""Sweeps at scale: several scheduler processes, one database; the sweep query uses its index."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from dsrflow.deadlines.repository import due_for_sweep_query, taken_keys
from dsrflow.requests import service
from dsrflow.requests.schemas import RequestCreate
from dsrflow.runtime import Runtime
from tests.conftest import ROOT, request_body

TOKYO = ZoneInfo("Asia/Tokyo")
# Enough for three processes to contend over every batch; 1,500 proved nothing more.
REFERENCE = re.compile(r"DSR-\d{4}-\d{6}")
DUE_REQUESTS = 300


def bulk_requests(rt: Runtime, count: int, received_at: datetime) -> None:
    with Session(rt.db, expire_on_commit=False) as session:
        for i in range(count):
            submitted = service.open_request(
                rt,
                session,
                RequestCreate(**request_body("correction", email=f"p{i}@example.jp")),
                channel="api",
                received_at=received_at,
            )
            if i % 250 == 249:
                session.commit()
        session.commit()
    del submitted


# Several scheduler processes on one database is the PostgreSQL deployment.
@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"])
def test_three_scheduler_processes_send_each_reminder_once(
    backend: str, rt: Runtime, database_url: str
) -> None:
    bulk_requests(rt, DUE_REQUESTS, datetime(2026, 4, 1, 10, tzinfo=TOKYO))
    env = {
        **os.environ,
        "DSRFLOW_DATABASE_URL": database_url,
        "DSRFLOW_WORKFLOWS_DIR": str(rt.settings.workflows_dir),
    }
    # 4/16 09:00: every request is overdue (day 1) and its identity is still unverified.
    command = [sys.executable, "-m", "dsrflow.cli", "sweep", "--as-of", "2026-04-16T09:00:00+09:00"]
    processes = [
        subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(3)
    ]
    results = [p.communicate(timeout=300) for p in processes]
    assert [p.returncode for p in processes] == [0, 0, 0], [r[1][-2000:] for r in results]
    lines = [line for out, _ in results for line in out.decode().splitlines()]
    # Each request: one overdue escalation, one identity reminder, one identity escalation, and
    # the Art. 39 alert (its Art. 39 date, 4/15, has passed).
    assert len(lines) == 4 * DUE_REQUESTS
    assert sum("\tart39_alert:" in line for line in lines) == DUE_REQUESTS
    assert len(set(lines)) == len(lines)
    with Session(rt.db) as session:
        letters = session.execute(
            text(
                "SELECT letter, recipient, body FROM outbox WHERE letter IN "
                "('overdue', 'identity_reminder', 'identity_escalation', 'art39_alert')"
            )
        ).all()
        references = sorted(session.execute(text("SELECT reference FROM requests")).scalars())
        reminders = session.execute(text("SELECT count(*) FROM reminders")).scalar_one()
    # Every reminder recorded once; the requester's are letters of their own, the handlers'
    # come as mails listing the requests (one per recipient and run, so up to one per process),
    # never one per request: each recipient finds each request in exactly one of its lists.
    assert reminders == 4 * DUE_REQUESTS
    assert sum(letter == "identity_reminder" for letter, _, _ in letters) == DUE_REQUESTS
    for kind in ("overdue", "identity_escalation", "art39_alert"):
        listed: dict[str, list[str]] = {}
        for letter, recipient, body in letters:
            if letter == kind:
                listed.setdefault(recipient, []).extend(REFERENCE.findall(body))
        assert listed, kind
        for recipient, found in listed.items():
            assert sorted(found) == references, (kind, recipient)
    # And a fourth run finds everything already sent.
    again = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, timeout=300)
    assert again.returncode == 0
    assert again.stdout == b""


def test_sweep_query_uses_the_next_sweep_index(backend: str, rt: Runtime) -> None:
    now = datetime.now(TOKYO)
    query = due_for_sweep_query(now, (now - timedelta(days=1), "0" * 32), 500)
    bulk_requests(rt, 50, datetime.now(TOKYO))
    with rt.db.connect() as connection:
        if backend == "sqlite":
            sql = str(
                query.compile(dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True})
            )
            plan = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}").all()
        else:
            sql = str(
                query.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True})
            )
            connection.exec_driver_sql("ANALYZE requests")
            # With 50 rows a sequential scan is cheaper; forbid it to see that the index serves.
            connection.exec_driver_sql("SET enable_seqscan = off")
            plan = connection.exec_driver_sql(f"EXPLAIN {sql}").all()
    text_plan = "\n".join(str(row) for row in plan)
    assert "ix_requests_next_sweep_at" in text_plan, text_plan


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"])
@pytest.mark.parametrize("plan_cache_mode", ["force_custom_plan", "force_generic_plan"])
def test_key_lookup_reads_its_array_once_per_statement(
    backend: str, rt: Runtime, plan_cache_mode: str
) -> None:
    """A sweep's lookup of thousands of keys among thousands of reminders: with the table's
    statistics stale (just after a sweep queued them, before autovacuum analyzes it) the
    planner scans it, and an array cast from text inside the filter was parsed again for each
    row, a 10,000-key lookup taking seconds. The array must reach the filter as a value."""
    statements: list[tuple[str, object]] = []

    def capture(
        conn: object, cursor: object, statement: str, parameters: object, *_: object
    ) -> None:
        statements.append((statement, parameters))

    keys = [f"{i:032d}:overdue:2026-11-27:5:desk@example.jp" for i in range(3)]
    with Session(rt.db) as session:
        event.listen(rt.db, "before_cursor_execute", capture)
        try:
            assert taken_keys(session, keys) == set()
        finally:
            event.remove(rt.db, "before_cursor_execute", capture)
    [(statement, parameters)] = statements
    [(name, literal)] = dict(parameters).items()  # type: ignore[call-overload]
    with rt.db.connect() as connection:
        # What stale statistics lead to on a table this size: a scan, the filter on each row.
        connection.exec_driver_sql("SET enable_indexscan = off")
        connection.exec_driver_sql("SET enable_bitmapscan = off")
        # A statement psycopg prepares (the sixth run of the same text) may get a generic plan.
        connection.exec_driver_sql(f"SET plan_cache_mode = {plan_cache_mode}")
        connection.exec_driver_sql(f"PREPARE lookup AS {statement.replace(f'%({name})s', '$1')}")
        plan = "\n".join(
            row[0]
            for row in connection.exec_driver_sql(
                "EXPLAIN (VERBOSE) EXECUTE lookup('{}')".format(literal.replace("'", "''"))
            )
        )
    [condition] = re.findall(r"Filter: (.*)", plan)
    assert "= ANY (" in condition, plan
    # A cast applied in the filter is evaluated per row; a constant or a parameter is not.
    assert not re.search(r"\)::text\[\]\)", condition), plan
