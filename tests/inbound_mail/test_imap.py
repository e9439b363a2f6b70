"""The IMAP poller against real dovecot: exactly once, flags, UIDVALIDITY, crashes, two pollers."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import update
from sqlmodel import Session, col, select

from dsrflow.inbound_mail import imap as poller
from dsrflow.inbound_mail import reading
from dsrflow.inbound_mail.imap import KEYWORD, PollReport, poll_once, watch
from dsrflow.inbound_mail.models import ImapSyncState, InboundMessage
from dsrflow.inbound_mail.rules_file import rules_for
from dsrflow.outbound_mail.models import OutboxMessage
from dsrflow.requests.models import Request
from dsrflow.runtime import Runtime
from tests.inbound_mail.conftest import corpus, count, imap_runtime, imap_server
from tests.services.imap import ImapServer

ROOT = Path(__file__).resolve().parents[2]
JST = timezone(timedelta(hours=9))


def message(n: int, *, subject: str = "Disclosure request", sender: str | None = None) -> bytes:
    sender = sender or f"person{n}@example.jp"
    return (
        f"From: Person {n} <{sender}>\r\nTo: info@innovativeai.co.jp\r\n"
        f"Subject: {subject} {n}\r\nMessage-ID: <imap-{n}@example.jp>\r\n"
        "Date: Fri, 20 Nov 2026 10:00:00 +0900\r\n\r\n"
        "Please disclose the personal data you hold about me.\r\n"
    ).encode()


def poll(rt: Runtime, **kwargs: object) -> PollReport:
    return asyncio.run(poll_once(rt, **kwargs))  # type: ignore[arg-type]


def rows(rt: Runtime) -> list[InboundMessage]:
    with Session(rt.db) as session:
        return list(session.exec(select(InboundMessage).order_by(col(InboundMessage.id))))


def assert_each_once(rt: Runtime, expected: int) -> None:
    """Every delivered message is recorded once, made one request, acknowledged once."""
    recorded = rows(rt)
    assert len(recorded) == expected
    assert len({r.message_id for r in recorded}) == expected
    assert count(rt, Request) == expected
    with Session(rt.db) as session:
        acks = session.exec(
            select(OutboxMessage.request_id).where(OutboxMessage.letter == "acknowledgment")
        ).all()
    assert len(acks) == expected
    assert len(set(acks)) == expected


def assert_all_flagged(server: ImapServer) -> None:
    for uid, flags, _ in server.fetch_all():
        assert "\\Seen" in flags, (uid, flags)
        assert KEYWORD in flags, (uid, flags)


@pytest.mark.parametrize("ssl_mode", ["none", "starttls", "tls"])
def test_poll_reads_each_message_once_and_flags_it(
    rt: Runtime, ssl_mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with imap_server(ssl_mode) as server:  # type: ignore[arg-type]
        irt = imap_runtime(rt, server)
        if ssl_mode == "tls":  # the documented way to trust a private CA
            assert server.cert_path is not None
            monkeypatch.setenv("SSL_CERT_FILE", str(server.cert_path))
        context = server.client_ssl_context() if ssl_mode == "starttls" else None
        arrived = datetime(2026, 11, 20, 9, 30, tzinfo=JST)
        for n in range(3):
            server.deliver(message(n), internal_date=arrived + timedelta(minutes=n))

        report = poll(irt, ssl_context=context)
        assert report.error is None, report.error
        assert (report.fetched, report.recorded, report.flagged) == (3, 3, 3)
        assert [o.status for o in report.outcomes] == ["created"] * 3
        recorded = rows(irt)
        assert [r.received_at for r in recorded] == [
            (arrived + timedelta(minutes=n)).astimezone(UTC) for n in range(3)
        ], "the arrival is the mailbox's INTERNALDATE"
        assert {r.received_at_source for r in recorded} == {"internaldate"}
        assert [r.imap_uid for r in recorded] == [1, 2, 3]
        assert {r.source for r in recorded} == {"imap"}
        assert_all_flagged(server)

        assert poll(irt, ssl_context=context).fetched == 0, "nothing is read twice"
        server.deliver(message(3))
        report = poll(irt, ssl_context=context)
        assert (report.fetched, report.recorded) == (1, 1)
        assert_each_once(irt, 4)
        if ssl_mode != "none":
            assert server.log_path is not None
            logins = [line for line in server.log_path.read_text().splitlines() if "Login:" in line]
            assert logins, "no login logged"
            assert all("TLS" in line for line in logins), "never in plain text"


def test_an_untrusted_certificate_is_refused(rt: Runtime) -> None:
    with imap_server("tls") as server:
        server.deliver(message(1))
        report = poll(imap_runtime(rt, server))
        assert report.error is not None
        assert "CERTIFICATE" in report.error.upper()
        assert rows(rt) == []


def test_starttls_is_required_when_configured(rt: Runtime, imap: ImapServer) -> None:
    """A server without STARTTLS is an error, never a fall back to sending the password."""
    imap.deliver(message(1))
    assert imap.log_path is not None
    logged = len(imap.log_path.read_text())
    report = poll(imap_runtime(rt, imap, imap_security="starttls"))
    assert report.error == "the server does not offer STARTTLS"
    assert rows(rt) == []
    assert "Login:" not in imap.log_path.read_text()[logged:]


def test_not_configured_is_skipped(rt: Runtime) -> None:
    report = poll(rt)
    assert report.skipped
    assert not report.error
    assert "not configured" in report.summary()


def test_bad_password_is_reported(rt: Runtime, imap: ImapServer) -> None:
    report = poll(imap_runtime(rt, imap, imap_password="wrong"))
    assert report.error is not None
    assert "login" in report.error.lower()


def test_every_kind_of_message_is_flagged(imap_rt: Runtime, imap: ImapServer) -> None:
    """Ignored, quarantined and triage messages are recorded and flagged like the rest."""
    names = [
        "26_en_autoreply_x_autoreply.eml",
        "28_en_bounce_dsn.eml",
        "34_ja_general_question_triage.eml",
        "40_not_an_email_quarantined.eml",
        "06_ja_third_party_record_cp50220.eml",
    ]
    for name in names:
        imap.deliver(corpus(name))
    report = poll(imap_rt)
    assert [o.status for o in report.outcomes] == [
        "ignored",
        "ignored",
        "triage",
        "quarantined",
        "created",
    ]
    assert_all_flagged(imap)
    for row, name in zip(rows(imap_rt), names, strict=True):
        kept, sent = row.raw.replace(b"\r\n", b"\n"), corpus(name).replace(b"\r\n", b"\n")
        if b"\x00" in sent:  # dovecot stores a NUL byte as 0x80
            kept, sent = kept[1:], sent[1:]
        assert kept == sent, name


def test_the_same_message_delivered_twice_is_one(imap_rt: Runtime, imap: ImapServer) -> None:
    imap.deliver(message(1))
    imap.deliver(message(1))
    report = poll(imap_rt)
    assert [o.duplicate for o in report.outcomes] == [False, True]
    assert report.flagged == 2
    assert_each_once(imap_rt, 1)


def test_a_message_over_the_size_limit_is_kept_as_its_header(
    imap_rt: Runtime, imap: ImapServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    rules = rules_for(imap_rt)
    small = dataclasses.replace(
        rules, limits=rules.limits.model_copy(update={"max_message_bytes": 2000})
    )
    # The poller reads the size limit; intake reads the same rules.
    monkeypatch.setattr(poller, "rules_for", lambda rt: small)
    monkeypatch.setattr(reading, "rules_for", lambda rt: small)
    big = message(1).replace(b"\r\n\r\n", b"\r\n\r\n" + b"x" * 5000 + b"\r\n", 1)
    imap.deliver(big)
    report = poll(imap_rt)
    assert [o.status for o in report.outcomes] == ["quarantined"]
    (row,) = rows(imap_rt)
    assert row.raw_size == len(big)
    assert row.raw.startswith(b"From: Person 1")
    assert b"xxxx" not in row.raw
    assert row.reason is not None
    assert "the limit is 2000" in row.reason
    assert row.from_address == "person1@example.jp", "the handlers still see who sent it"
    assert_all_flagged(imap)


def test_uidvalidity_change_reads_the_folder_again_without_duplicates(
    imap_rt: Runtime, imap: ImapServer
) -> None:
    for n in range(2):
        imap.deliver(message(n))
    assert poll(imap_rt).recorded == 2
    # The server renumbers the folder (a restore, a migration): UIDVALIDITY is new and every
    # flag of ours may be gone.
    with Session(imap_rt.db) as session:
        session.execute(update(ImapSyncState).values(uidvalidity=1))
        session.commit()
    client = imap.connect()
    client.select(imap.folder)
    client.uid("STORE", "1:*", "-FLAGS", f"({KEYWORD})")
    client.logout()
    imap.deliver(message(2))

    report = poll(imap_rt)
    assert report.reset
    assert [o.duplicate for o in report.outcomes] == [True, True, False]
    assert_each_once(imap_rt, 3)
    assert_all_flagged(imap)
    with Session(imap_rt.db) as session:
        state = session.exec(select(ImapSyncState)).one()
    assert state.uidvalidity == report.uidvalidity != 1
    assert state.last_uid == 3
    assert state.claimed_by is None


CRASHING_POLLER = """
import asyncio, json, os, sys
from dsrflow.config import Settings
from dsrflow.db import make_engine
from dsrflow.inbound_mail import mailbox
from dsrflow.inbound_mail import imap
from dsrflow.runtime import Runtime

settings = Settings(_env_file=None, **json.loads(sys.argv[1]))
rt = Runtime.load(settings, db=make_engine(settings.database_url))
calls = []
if sys.argv[2] == "before-commit":
    advance = mailbox.advance
    def crash(session, origin, now):
        calls.append(origin.uid)
        if len(calls) == 2:  # the second message is written, not committed: die here
            session.flush()
            os._exit(3)
        return advance(session, origin, now)
    mailbox.advance = crash
else:
    async def crash(client, uids, flags):  # the first message is committed, not flagged
        os._exit(3)
    imap._flag = crash
asyncio.run(imap.poll_once(rt, lease_seconds=1))
sys.exit(0)
"""


def run_crashing_poller(rt: Runtime, database_url: str, where: str) -> None:
    settings = {
        key: value.get_secret_value()
        if isinstance(value, SecretStr)
        else str(value)
        if isinstance(value, Path)
        else value
        for key, value in rt.settings.model_dump().items()
        if key in {"data_dir", "workflows_dir", "base_url"} or key.startswith("imap_")
    }
    settings["database_url"] = database_url
    result = subprocess.run(
        [sys.executable, "-c", CRASHING_POLLER, json.dumps(settings), where],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 3, result.stderr[-3000:]


def test_a_crash_between_fetch_and_commit_loses_nothing_and_duplicates_nothing(
    imap_rt: Runtime, imap: ImapServer, database_url: str
) -> None:
    for n in range(4):
        imap.deliver(message(n))
    run_crashing_poller(imap_rt, database_url, "before-commit")

    assert [r.message_id for r in rows(imap_rt)] == ["<imap-0@example.jp>"]
    flags = {uid: flags for uid, flags, _ in imap.fetch_all()}
    assert KEYWORD in flags[1], "flagged after the commit"
    assert KEYWORD not in flags[2], "flagged only after the commit"

    time.sleep(1.2)  # the dead poller's claim runs out
    report = poll(imap_rt)
    assert report.error is None, report.error
    assert [o.status for o in report.outcomes] == ["created"] * 3
    assert_each_once(imap_rt, 4)
    assert_all_flagged(imap)


def test_a_crash_between_commit_and_flag_is_repaired(
    imap_rt: Runtime, imap: ImapServer, database_url: str
) -> None:
    for n in range(3):
        imap.deliver(message(n))
    run_crashing_poller(imap_rt, database_url, "before-flag")
    assert len(rows(imap_rt)) == 1
    assert all(KEYWORD not in flags for _, flags, _ in imap.fetch_all())

    time.sleep(1.2)
    report = poll(imap_rt)
    assert report.repaired == 1, "recorded before the crash: flagged now, not read again"
    assert report.recorded == 2
    assert_each_once(imap_rt, 3)
    assert_all_flagged(imap)


def test_a_second_poller_waits_while_the_first_holds_the_folder(
    imap_rt: Runtime, imap: ImapServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for n in range(3):
        imap.deliver(message(n))
    holding, release = threading.Event(), threading.Event()
    read = poller._read

    async def slow_read(*args: object, **kwargs: object) -> None:
        holding.set()
        await asyncio.to_thread(release.wait, 30)
        await read(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(poller, "_read", slow_read)
    first: list[PollReport] = []
    thread = threading.Thread(target=lambda: first.append(poll(imap_rt)))
    thread.start()
    try:
        assert holding.wait(30)
        monkeypatch.setattr(poller, "_read", read)
        second = poll(imap_rt)
        assert second.busy
        assert second.fetched == 0
        assert rows(imap_rt) == []
    finally:
        release.set()
        thread.join(60)
    assert first[0].recorded == 3
    assert_each_once(imap_rt, 3)


def test_two_pollers_at_once_take_each_message_once(imap_rt: Runtime, imap: ImapServer) -> None:
    total = 12
    for n in range(total):
        imap.deliver(message(n))
    reports: list[PollReport] = []
    lock = threading.Lock()

    def run() -> None:
        for _ in range(40):
            report = poll(imap_rt, batch_size=2)
            with lock:
                reports.append(report)
            if len(rows(imap_rt)) == total and not report.busy and not report.more:
                return

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not [r.error for r in reports if r.error]
    taken = Counter(o.inbound_id for r in reports for o in r.outcomes)
    assert all(n == 1 for n in taken.values()), "no message was read by both"
    assert_each_once(imap_rt, total)
    assert_all_flagged(imap)


def test_watch_reads_new_mail_as_it_arrives(imap_rt: Runtime, imap: ImapServer) -> None:
    """With IDLE, a message is read within seconds, long before the next poll is due."""
    loop_ready = threading.Event()
    state: dict[str, object] = {}

    def run() -> None:
        async def main() -> None:
            stop = asyncio.Event()
            state["stop"], state["loop"] = stop, asyncio.get_running_loop()
            loop_ready.set()
            await watch(imap_rt, stop=stop, poll_interval=300)

        asyncio.run(main())

    thread = threading.Thread(target=run)
    thread.start()
    try:
        assert loop_ready.wait(10)
        time.sleep(1.0)  # the first poll is done and IDLE is waiting
        imap.deliver(message(1))
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not rows(imap_rt):
            time.sleep(0.1)
        assert len(rows(imap_rt)) == 1
    finally:
        loop = state["loop"]
        stop = state["stop"]
        assert isinstance(loop, asyncio.AbstractEventLoop)
        assert isinstance(stop, asyncio.Event)
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)
    assert not thread.is_alive()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and KEYWORD not in imap.fetch_all()[0][1]:
        time.sleep(0.1)
    assert_all_flagged(imap)


def test_a_folder_with_a_japanese_name(rt: Runtime, imap: ImapServer) -> None:
    client = imap.connect()
    assert client.create(poller.quote_mailbox("請求窓口"))[0] == "OK"
    client.logout()
    imap.deliver(message(1), folder=poller.quote_mailbox("請求窓口"))
    report = poll(imap_runtime(rt, imap, imap_folder="請求窓口"))
    assert report.error is None
    assert report.recorded == 1
    assert report.mailbox is not None
    assert report.mailbox.endswith("/請求窓口")


def test_a_server_without_custom_flags_still_reads_each_message_once(
    imap_rt: Runtime, imap: ImapServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    select = poller._select

    async def without_keywords(client: object, folder: str) -> poller._Folder:
        return dataclasses.replace(await select(client, folder), keywords=False)  # type: ignore[arg-type]

    monkeypatch.setattr(poller, "_select", without_keywords)
    for n in range(2):
        imap.deliver(message(n))
    assert poll(imap_rt).recorded == 2
    assert [flags for _, flags, _ in imap.fetch_all()] == [("\\Seen",), ("\\Seen",)]
    imap.deliver(message(2))
    report = poll(imap_rt)
    assert (report.fetched, report.recorded) == (1, 1), "the UID alone says what is new"
    assert_each_once(imap_rt, 3)


def test_the_scheduler_reads_mail_in_serve_and_stops_cleanly(
    imap_rt: Runtime, imap: ImapServer
) -> None:
    """`dsrflow serve` and `dsrflow scheduler` run the IMAP poll job and the IDLE watcher."""
    from dsrflow.scheduler.runner import running_scheduler

    async def main() -> None:
        async with running_scheduler(imap_rt) as scheduler:
            assert scheduler.get_job("imap_poll") is not None
            await asyncio.sleep(1.5)
            imap.deliver(message(7))
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and not rows(imap_rt):
                await asyncio.sleep(0.1)

    started = time.monotonic()
    asyncio.run(main())
    assert len(rows(imap_rt)) == 1
    assert time.monotonic() - started < 30  # the watcher stopped with the scheduler
