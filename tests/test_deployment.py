"""The scale-out deployment: two `dsrflow serve` and two `dsrflow scheduler` processes on one
PostgreSQL database, under load. No request is lost and no reminder or letter is sent twice."""

from __future__ import annotations

import json
import mailbox
import os
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlmodel import Session

from dsrflow.db import utcnow
from dsrflow.deadlines import art39
from dsrflow.requests import service
from dsrflow.requests.schemas import RequestCreate
from dsrflow.runtime import Runtime
from tests.conftest import ROOT, request_body
from tests.services import free_port

CREATES = 120  # over HTTP, while the schedulers run
OVERDUE = 60  # waiting in the database, each with reminders due


def _expected_kinds(rt: Runtime) -> Counter[str]:
    """The reminders each overdue request gets: its overdue escalation, identity reminder and
    escalation, and the Art. 39 alert (received 20 days ago, its Art. 39 date has passed) from
    the reminders' hour of the Japanese day on. The test runs at any hour, before it too."""
    with rt.db.connect() as connection:
        art39_date = connection.execute(text("SELECT min(art39_date) FROM requests")).scalar_one()
    wf = rt.definitions.workflow("correction")
    kinds = Counter({"overdue": OVERDUE, "identity": OVERDUE, "identity_escalation": OVERDUE})
    if art39.alert_days_left(rt, wf, art39_date, utcnow()) is not None:
        kinds["art39_alert"] = OVERDUE
    return kinds


def _start(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "dsrflow.cli", *argv],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _wait_healthy(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()[-3000:]
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"no answer on port {port}: {log.read_text()[-3000:]}")


def _create(port: int, i: int) -> str:
    body = json.dumps(request_body("correction", email=f"load{i}@example.jp")).encode()
    call = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v1/requests",
        data=body,
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(call, timeout=60) as answer:
        assert answer.status == 201
        return str(json.load(answer)["id"])


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.parametrize("backend", ["postgres"])
def test_two_servers_and_two_schedulers_lose_nothing_and_send_nothing_twice(
    backend: str, rt: Runtime, database_url: str, tmp_path: Path
) -> None:
    with Session(rt.db, expire_on_commit=False) as session:
        for i in range(OVERDUE):
            service.open_request(
                rt,
                session,
                RequestCreate(**request_body("correction", email=f"old{i}@example.jp")),
                channel="api",
                received_at=utcnow() - timedelta(days=20),
            )
        session.commit()
    data_dir = tmp_path / "shared"
    env = {
        **os.environ,
        "DSRFLOW_DATABASE_URL": database_url,
        "DSRFLOW_WORKFLOWS_DIR": str(rt.settings.workflows_dir),
        "DSRFLOW_DATA_DIR": str(data_dir),
        "DSRFLOW_RATE_LIMIT_PER_MINUTE": "100000",
        "DSRFLOW_SWEEP_INTERVAL_SECONDS": "2",
        "DSRFLOW_OUTBOX_INTERVAL_SECONDS": "1",
    }
    ports = [free_port(), free_port()]
    with ExitStack() as stack:
        processes = []
        for n, port in enumerate(ports):
            log = tmp_path / f"serve{n}.log"
            process = _start(["serve", "--no-scheduler", "--port", str(port)], env, log)
            processes.append((process, log))
            stack.callback(_stop, process)
        for n in range(2):
            log = tmp_path / f"scheduler{n}.log"
            process = _start(["scheduler"], env, log)
            processes.append((process, log))
            stack.callback(_stop, process)
        for (process, log), port in zip(processes, ports, strict=False):
            _wait_healthy(port, process, log)
        with ThreadPoolExecutor(8) as pool:
            created = list(pool.map(lambda i: _create(ports[i % 2], i), range(CREATES)))
        # Everything that was queued goes out, then the schedulers go on sweeping a while.
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            with rt.db.connect() as connection:
                waiting = connection.execute(
                    text("SELECT count(*) FROM outbox WHERE status <> 'sent'")
                ).scalar_one()
                reminders = connection.execute(text("SELECT count(*) FROM reminders")).scalar_one()
            if waiting == 0 and reminders >= _expected_kinds(rt).total():
                break
            time.sleep(1)
        time.sleep(5)  # a few more sweeps and flushes over the same state
        for process, log in processes:
            assert process.poll() is None, log.read_text()[-3000:]

    with rt.db.connect() as connection:
        stored = {r for (r,) in connection.execute(text("SELECT id FROM requests"))}
        letters = connection.execute(
            text("SELECT request_id, letter, status, message_id FROM outbox")
        ).all()
        keys = [k for (k,) in connection.execute(text("SELECT key FROM reminders"))]
    assert set(created) <= stored
    assert len(set(created)) == CREATES
    per_request = Counter((r, letter) for r, letter, _, _ in letters if r in set(created))
    assert all(per_request[(r, "acknowledgment")] == 1 for r in created)
    # Each reminder of each overdue request, once.
    expected = _expected_kinds(rt)
    assert len(keys) == len(set(keys)) == expected.total()
    assert Counter(k.split(":")[1] for k in keys) == expected
    assert all(status == "sent" for _, _, status, _ in letters)
    # And each message reached the (shared) mailbox exactly once.
    delivered = Counter(m["Message-ID"] for m in mailbox.Maildir(data_dir / "maildir"))
    assert delivered == Counter(message_id for _, _, _, message_id in letters)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
