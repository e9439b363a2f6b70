"""A SIGKILL loop under load (issue 12, section 7), on SQLite and PostgreSQL.

`dsrflow serve` (API and scheduler, so the outbox dispatcher dies with it) runs against the
test's database and an aiosmtpd sink while clients file requests and refuse them; it is killed
with SIGKILL at random moments and started again, ``DSRFLOW_RELIABILITY_KILLS`` times (5 by
default, 20 under `make reliability`). Afterwards:

- every acknowledged operation (a 201 intake, a 200 decision) is in the database;
- no request is in a state without the event that put it there, and `dsrflow audit verify`
  passes;
- after a final flush every letter reached the sink, and only a letter in flight at a kill was
  delivered twice (at most one per kill), under its stable Message-ID;
- the server's logs of the whole scenario hold no requester name, address or token.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlmodel import Session, col, select

from dsrflow.audit.chain import verify_chains
from dsrflow.audit.models import Event
from dsrflow.auth.service import add_handler
from dsrflow.db import utcnow
from dsrflow.outbound_mail.dispatch import DEFAULT_LEASE, flush_outbox
from dsrflow.outbound_mail.models import OutboxMessage
from dsrflow.requests.models import Request
from dsrflow.runtime import Runtime
from tests.outbound_mail.conftest import by_message_id
from tests.services import free_port
from tests.services.smtp import SmtpServer

pytestmark = [pytest.mark.slow, pytest.mark.smtp]

KILLS = int(os.environ.get("DSRFLOW_RELIABILITY_KILLS", "5"))
CLIENTS = 3
REFUSE = {
    "trigger": "refuse",
    "reason_code": "PROC_ID_UNVERIFIED",
    "explanation": "ご本人であることを確認できませんでした。",
}


@dataclass
class Tally:
    created: dict[str, str] = field(default_factory=dict)  # id -> email
    refused: set[str] = field(default_factory=set)
    attempts: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class Service:
    """`dsrflow serve` in a child process, killed and restarted at will."""

    def __init__(self, env: dict[str, str], port: int, log: Path):
        self.env, self.port, self.log = env, port, log
        self.process: subprocess.Popen[bytes] | None = None
        self.startups: list[float] = []
        self.url = f"http://127.0.0.1:{port}"

    def start(self) -> None:
        began = time.monotonic()
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "dsrflow.cli", "serve", "--port", str(self.port)],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    self.startups.append(time.monotonic() - began)
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise AssertionError(f"dsrflow serve did not start; see {self.log}")

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.kill()


def client_loop(url: str, token: str, n: int, tally: Tally, stop: threading.Event) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    i = 0
    with httpx.Client(base_url=url, timeout=10) as http:
        while not stop.is_set():
            i += 1
            email = f"crash-{n}-{i}@example.jp"
            body = {"type": "disclosure", "name": f"障害 太郎{n}x{i}", "email": email}
            body["details"] = f"開示請求 {n}-{i}"
            with tally.lock:
                tally.attempts += 1
            try:
                created = http.post("/api/v1/requests", json=body)
                assert created.status_code < 500, created.text
                if created.status_code != 201:
                    continue
                request_id = created.json()["id"]
                with tally.lock:
                    tally.created[request_id] = email
                decided = http.post(
                    f"/api/v1/requests/{request_id}/transitions", json=REFUSE, headers=headers
                )
                assert decided.status_code < 500, decided.text
                if decided.status_code == 200:
                    with tally.lock:
                        tally.refused.add(request_id)
            except httpx.HTTPError:
                time.sleep(0.05)  # the server is down: not acknowledged, try again


@pytest.fixture
def sink() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


def test_sigkill_loop_loses_nothing_acknowledged(
    rt: Runtime, database_url: str, sink: SmtpServer, tmp_path: Path
) -> None:
    with Session(rt.db) as s:
        _, token = add_handler(s, "crash test", "crash@example.jp", "handler")
    env = {
        **os.environ,
        "DSRFLOW_DATABASE_URL": database_url,
        "DSRFLOW_WORKFLOWS_DIR": str(rt.settings.workflows_dir),
        "DSRFLOW_DATA_DIR": str(tmp_path / "var"),
        "DSRFLOW_SMTP_HOST": sink.host,
        "DSRFLOW_SMTP_PORT": str(sink.port),
        "DSRFLOW_RATE_LIMIT_PER_MINUTE": "1000000",
        "DSRFLOW_BASE_URL": "http://127.0.0.1",
    }
    log = tmp_path / "serve.log"
    service = Service(env, free_port(), log)
    tally, stop = Tally(), threading.Event()
    rng = random.Random(12)
    service.start()
    clients = [
        threading.Thread(target=client_loop, args=(service.url, token, n, tally, stop))
        for n in range(CLIENTS)
    ]
    for c in clients:
        c.start()
    try:
        for _ in range(KILLS):
            time.sleep(rng.uniform(0.8, 2.0))
            service.kill()
            service.start()
        time.sleep(1.0)
    finally:
        stop.set()
        for c in clients:
            c.join()
        service.stop()

    assert tally.created, "no request was acknowledged"
    with Session(rt.db) as s:
        requests = {r.id: r for r in s.exec(select(Request))}
        events = list(s.exec(select(Event).order_by(col(Event.request_id), col(Event.seq))))
        _, breaks = verify_chains(s)
    # Every acknowledged operation is there.
    assert set(tally.created) <= set(requests)
    assert all(requests[i].state == "refused" for i in tally.refused)
    # No state without its event.
    last_state: dict[str, str] = {}
    for event in events:
        if event.to_state:
            last_state[event.request_id] = event.to_state
    assert {i: r.state for i, r in requests.items()} == last_state
    assert breaks == []
    assert (
        subprocess.run(
            [sys.executable, "-m", "dsrflow.cli", "audit", "verify"], env=env, capture_output=True
        ).returncode
        == 0
    )

    # Whatever the kills left in the outbox goes out now, and each letter once (a letter in
    # flight at a kill may go twice: at most one per kill).
    # Rows claimed by a killed dispatcher wait out its lease; then the next flush takes them.
    after_lease = utcnow() + DEFAULT_LEASE + timedelta(seconds=1)
    mail = Runtime.load(
        rt.settings.model_copy(update={"smtp_host": sink.host, "smtp_port": sink.port}), db=rt.db
    )
    report = asyncio.run(flush_outbox(mail.db, mail.settings, mail.letters, now=after_lease))
    assert report.error is None
    with Session(rt.db) as s:
        rows = list(s.exec(select(OutboxMessage)))
    assert {r.status for r in rows} == {"sent"}
    delivered = by_message_id(sink.messages)
    assert {r.message_id for r in rows} == set(delivered)
    twice = [m for m, copies in delivered.items() if len(copies) > 1]
    assert len(twice) <= KILLS
    assert all(len(copies) <= 2 for copies in delivered.values())

    # No personal data or token in the logs of the whole scenario.
    text = log.read_text(errors="replace")
    assert token not in text
    secrets = re.findall(r"/(?:verify|status)/([A-Za-z0-9_\-]{16,})", "".join(r.body for r in rows))
    for secret in secrets:
        assert secret not in text
    for email in tally.created.values():
        assert email not in text
    assert "障害 太郎" not in text

    print(
        f"\ncrash loop ({rt.db.dialect.name}): {KILLS} kills, {tally.attempts} intake attempts, "
        f"{len(tally.created)} intakes and {len(tally.refused)} decisions acknowledged, 0 lost; "
        f"{len(events)} events verified; {len(rows)} letters, {len(twice)} delivered twice"
    )
