"""The dispatcher against a real SMTP server, on SQLite and PostgreSQL: claims, retries,
failures, TLS and AUTH, parallel dispatchers, the Maildir default, the command line."""

from __future__ import annotations

import asyncio
import email
import email.policy
import logging
import mailbox
import socket
import threading
import time
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage

import pytest
from sqlalchemy import update
from sqlmodel import Session

from dsrflow.cli import main
from dsrflow.config import Settings
from dsrflow.db import make_engine, utcnow
from dsrflow.outbound_mail.dispatch import FlushReport, RetryPolicy, claim_due, flush_outbox
from dsrflow.outbound_mail.message import build_message
from dsrflow.outbound_mail.models import OutboxMessage
from dsrflow.outbound_mail.outbox import make_message_id
from dsrflow.outbound_mail.senders import MaildirSender, SmtpSender, sender_for
from dsrflow.runtime import Runtime
from tests.conftest import make_request
from tests.outbound_mail.conftest import (
    assert_delivered_as_queued,
    by_message_id,
    company,
    flush,
    outbox,
    parsed,
    pointed_at,
)
from tests.services import require
from tests.services.smtp import SmtpServer

BAD = "bad@example.jp"


def add_row(rt: Runtime, **values: object) -> OutboxMessage:
    """An outbox row written directly, bypassing enqueue's clean-up (for hostile values)."""
    fields: dict[str, object] = {
        "dedup_key": make_message_id("test"),
        "letter": "acknowledgment",
        "recipient": "taro@example.jp",
        "subject": "[DSR-2026-000001] 件名",
        "body": "本文です。\n",
        "reference": "DSR-2026-000001",
        "message_id": make_message_id("innovativeai.co.jp"),
        **values,
    }
    with Session(rt.db, expire_on_commit=False) as session:
        row = OutboxMessage(**fields)  # type: ignore[arg-type]
        session.add(row)
        session.commit()
        return row


def statuses(rt: Runtime) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in outbox(rt):
        counts[row.status] = counts.get(row.status, 0) + 1
    return counts


# ---------------------------------------------------------------------------- the message


def test_build_message_headers(settings: Settings) -> None:
    created = datetime(2026, 4, 1, 1, 2, 3, tzinfo=UTC)
    row = OutboxMessage(
        dedup_key="k",
        letter="refused",
        recipient="taro@example.jp",
        subject="[DSR-2026-000123] ご請求への対応について（ご通知）",
        body="山田 太郎 様\n\n本文。\n",
        message_id="<abc@innovativeai.co.jp>",
        in_reply_to="<ack@innovativeai.co.jp>",
        created_at=created,
    )
    message = parsed(build_message(row, settings, from_name="株式会社InnovativeAI").as_bytes())
    assert message["From"].addresses[0].display_name == "株式会社InnovativeAI"
    assert message["From"].addresses[0].addr_spec == settings.mail_from
    assert str(message["To"]) == "taro@example.jp"
    assert str(message["Subject"]) == row.subject
    assert str(message["Date"]) == "Wed, 01 Apr 2026 10:02:03 +0900"  # shown in Asia/Tokyo
    assert str(message["Message-ID"]) == "<abc@innovativeai.co.jp>"
    assert str(message["In-Reply-To"]) == "<ack@innovativeai.co.jp>"
    assert str(message["References"]) == "<ack@innovativeai.co.jp>"
    assert str(message["Auto-Submitted"]) == "auto-generated"
    assert message.get_content_type() == "text/plain"
    assert message.get_content_charset() == "utf-8"
    assert message.get_content().replace("\r\n", "\n") == row.body  # canonical CRLF in MIME
    # Without a display name, From is the bare address.
    assert str(build_message(row, settings)["From"]) == settings.mail_from


@pytest.mark.parametrize("recipient", ["taro@example.jp", "太郎@例え.jp"])
@pytest.mark.parametrize(
    "name", ["株式会社InnovativeAI", "株式会社" * 30, 'Plain, "Quoted" Ltd.', "", "x" * 200]
)
def test_from_is_folded_once_per_flush_and_reads_back(
    settings: Settings, recipient: str, name: str
) -> None:
    # From is folded once and reused; a name too long to store folded (an unbreakable UTF-8
    # run with an internationalised recipient) takes the ordinary path. Either way a reader
    # gets the name back and no line passes the limit.
    for subject in ("[DSR-2026-000001] 受付", "[DSR-2026-000001] Received"):
        row = OutboxMessage(
            dedup_key="k",
            letter="acknowledgment",
            recipient=recipient,
            subject=subject,
            body="本文\n",
            message_id="<m@innovativeai.co.jp>",
        )
        raw = build_message(row, settings, from_name=name).as_bytes()
        # As text: an SMTPUTF8 message carries raw UTF-8 in its headers.
        message = email.message_from_string(raw.decode("utf-8"), policy=email.policy.default)
        (group,) = message["From"].groups
        assert group.display_name is None  # one address, not a group named "From:"
        (sender,) = group.addresses
        assert sender.addr_spec == settings.mail_from
        # Python's reader keeps the folding space between two encoded words (RFC 2047 says to
        # drop it), so a name long enough to need several reads back with spaces in it.
        assert sender.display_name.replace(" ", "") == name.replace(" ", "")
        assert sender.display_name == name or not name.isascii()
        assert str(message["Subject"]) == subject
        assert len(message.keys()) == len(set(message.keys()))
        assert all(len(line) <= 998 for line in raw.split(b"\r\n"))


def test_header_injection_cannot_add_headers(mail_rt: Runtime, smtp: SmtpServer) -> None:
    hostile = add_row(
        mail_rt,
        subject="[DSR-2026-000001] 件名\r\nBcc: evil@example.com\r\nX-Injected: 1",
        in_reply_to="<a@innovativeai.co.jp>\r\nX-Injected: 2",
    )
    bad_recipient = add_row(mail_rt, recipient="taro@example.jp\r\nBcc: evil@example.com")
    report = flush(mail_rt, from_name="株式会社X\r\nX-Injected: 3")
    assert (report.sent, report.failed) == (2, 1)  # the hostile row, and the notice

    arrived = by_message_id(smtp.wait_for(2))[hostile.message_id][0]
    message = arrived.parsed()
    assert arrived.rcpt_tos == ["taro@example.jp"]
    assert message["Bcc"] is None
    assert message["X-Injected"] is None
    assert str(message["Subject"]) == "[DSR-2026-000001] 件名 Bcc: evil@example.com X-Injected: 1"
    assert str(message["Message-ID"]) == hostile.message_id
    # The unusable recipient is refused before anything reaches the server, and reported.
    (failed,) = outbox(mail_rt, id=bad_recipient.id)
    assert failed.status == "failed"
    assert "invalid" in (failed.last_error or "")
    assert str(message["From"].addresses[0].display_name) == "株式会社X X-Injected: 3"
    (notice,) = outbox(mail_rt, letter="delivery_failed")
    assert notice.status == "sent"
    assert notice.recipient == mail_rt.settings.handler_email
    assert all("evil@example.com" not in m.rcpt_tos for m in smtp.messages)


# ---------------------------------------------------------------------------- TLS and AUTH


@pytest.mark.smtp
def test_starttls_and_auth(rt: Runtime) -> None:
    with require(SmtpServer, starttls=True, auth=("app", "s3cret")) as server:
        secure = pointed_at(
            rt,
            server,
            smtp_security="starttls",
            smtp_username="app",
            smtp_password="s3cret",
            smtp_validate_certs=False,  # the test server's certificate is self-signed
        )
        make_request(secure, "disclosure", "received", language="en")
        rows = outbox(secure)
        report = flush(secure)
        assert report.sent == len(rows) == 3
        arrived = server.wait_for(3)
        assert all(m.tls and m.login == "app" for m in arrived)
        delivered = by_message_id(arrived)
        for row in rows:
            assert_delivered_as_queued(delivered[row.message_id][0].parsed(), row)


@pytest.mark.smtp
def test_certificate_is_verified_unless_told_not_to(rt: Runtime) -> None:
    with require(SmtpServer, starttls=True, auth=("app", "s3cret")) as server:
        secure = pointed_at(
            rt, server, smtp_security="starttls", smtp_username="app", smtp_password="s3cret"
        )
        make_request(secure, "disclosure")
        report = flush(secure)
        assert report.unreachable
        assert report.sent == 0
        assert "certificate" in (report.error or "").lower()
        assert server.messages == []
        assert all(r.status == "pending" and r.attempts == 0 for r in outbox(secure))


@pytest.mark.smtp
def test_wrong_password_leaves_everything_waiting(rt: Runtime) -> None:
    with require(SmtpServer, starttls=True, auth=("app", "s3cret")) as server:
        secure = pointed_at(
            rt,
            server,
            smtp_security="starttls",
            smtp_username="app",
            smtp_password="wrong",
            smtp_validate_certs=False,
        )
        make_request(secure, "disclosure")
        report = flush(secure)
        assert report.unreachable
        assert "535" in (report.error or "")
        assert (report.sent, report.retried, report.failed) == (0, 3, 0)
        assert all(r.status == "pending" and r.attempts == 0 for r in outbox(secure))


def test_one_connection_for_the_whole_flush(mail_rt: Runtime, smtp: SmtpServer) -> None:
    for _ in range(4):
        make_request(mail_rt, "correction")
    report = flush(mail_rt, batch_size=5)  # three batches, still one connection
    assert report.sent == 12
    assert len({m.peer for m in smtp.wait_for(12)}) == 1


# ---------------------------------------------------------------------------- outages


def test_smtp_down_while_requests_arrive_then_up(mail_rt: Runtime, smtp: SmtpServer) -> None:
    smtp.stop()
    make_request(mail_rt, "disclosure")
    first = flush(mail_rt)
    assert first.unreachable
    assert (first.sent, first.retried) == (0, 3)
    make_request(mail_rt, "suspension", "refused")
    second = flush(mail_rt)  # the first three are not due yet; the new four are tried
    assert second.unreachable
    assert (second.sent, second.retried) == (0, 4)
    rows = outbox(mail_rt)
    assert all(r.status == "pending" and r.attempts == 0 for r in rows)  # no attempt spent

    smtp.start()
    later = utcnow() + timedelta(minutes=2)
    third = flush(mail_rt, now=later)
    assert (third.sent, third.retried, third.failed, third.unreachable) == (7, 0, 0, False)
    assert flush(mail_rt, now=later + timedelta(hours=1)).sent == 0  # nothing left, nothing twice

    delivered = by_message_id(smtp.wait_for(7))
    assert len(smtp.messages) == len(rows) == 7
    assert {row.message_id for row in rows} == set(delivered)
    assert all(len(copies) == 1 for copies in delivered.values())
    assert statuses(mail_rt) == {"sent": 7}


class StopsAfterFirst:
    """SMTP whose server goes away right after accepting the first message."""

    def __init__(self, settings: Settings, server: SmtpServer):
        self.smtp, self.server = SmtpSender(settings), server

    async def send(self, message: EmailMessage, recipient: str) -> str:
        answer = await self.smtp.send(message, recipient)
        if self.server.running:
            await asyncio.to_thread(self.server.stop)
        return answer

    async def close(self) -> None:
        await self.smtp.close()


def test_server_going_away_mid_batch_loses_nothing(mail_rt: Runtime, smtp: SmtpServer) -> None:
    make_request(mail_rt, "disclosure", "refused")
    rows = outbox(mail_rt)
    sender = StopsAfterFirst(mail_rt.settings, smtp)
    report = flush(mail_rt, sender=sender)
    assert report.sent == 1
    assert report.failed == 0
    assert report.retried == len(rows) - 1
    assert report.error is not None
    assert not report.unreachable
    assert statuses(mail_rt) == {"sent": 1, "pending": len(rows) - 1}
    # At most the message in flight when the connection dropped spent an attempt.
    assert sum(r.attempts for r in outbox(mail_rt, status="pending")) <= 1

    smtp.start()
    report = flush(mail_rt, now=utcnow() + timedelta(minutes=5))
    assert report.sent == len(rows) - 1
    delivered = by_message_id(smtp.wait_for(len(rows)))
    assert len(smtp.messages) == len(rows)
    assert all(len(copies) == 1 for copies in delivered.values())


def test_a_silent_server_times_out(rt: Runtime) -> None:
    with socket.socket() as silent:  # accepts connections (the kernel does) but never speaks
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        host, port = silent.getsockname()
        quiet = Runtime.load(
            rt.settings.model_copy(
                update={"smtp_host": host, "smtp_port": port, "smtp_timeout_seconds": 0.5}
            ),
            db=rt.db,
        )
        make_request(quiet, "suspension")
        started = time.monotonic()
        report = flush(quiet)
        assert time.monotonic() - started < 10
    assert report.unreachable
    assert "Timeout" in (report.error or "")
    assert all(r.status == "pending" and r.attempts == 0 for r in outbox(quiet))


class SlowSender:
    """SMTP with a pause per message, so two dispatchers really overlap."""

    def __init__(self, settings: Settings):
        self.smtp = SmtpSender(settings)

    async def send(self, message: EmailMessage, recipient: str) -> str:
        await asyncio.sleep(0.01)
        return await self.smtp.send(message, recipient)

    async def close(self) -> None:
        await self.smtp.close()


@pytest.mark.parametrize("mode", ["threads", "tasks"])
def test_two_dispatchers_in_parallel_send_each_row_once(
    mail_rt: Runtime, smtp: SmtpServer, database_url: str, mode: str
) -> None:
    for request_type in mail_rt.definitions.workflows:
        make_request(mail_rt, request_type, "refused")
        make_request(mail_rt, request_type, "withdrawn", language="en")
    rows = outbox(mail_rt)
    assert len(rows) == 48
    settings, letters = mail_rt.settings, mail_rt.letters
    reports: list[FlushReport] = []

    if mode == "threads":  # two processes, in effect: own engine, own loop, own connection
        barrier = threading.Barrier(2)

        def dispatcher() -> None:
            engine = make_engine(database_url)
            try:
                barrier.wait()
                coroutine = flush_outbox(
                    engine, settings, letters, sender=SlowSender(settings), batch_size=4
                )
                reports.append(asyncio.run(coroutine))
            finally:
                engine.dispose()

        threads = [threading.Thread(target=dispatcher) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    else:  # two scheduler jobs in one event loop, sharing the engine

        async def both() -> list[FlushReport]:
            return list(
                await asyncio.gather(
                    *(
                        flush_outbox(
                            mail_rt.db, settings, letters, sender=SlowSender(settings), batch_size=4
                        )
                        for _ in range(2)
                    )
                )
            )

        reports = asyncio.run(both())

    assert len(reports) == 2
    assert all(r.sent > 0 for r in reports), "both dispatchers should have taken rows"
    assert sum(r.sent for r in reports) == len(rows)
    delivered = by_message_id(smtp.wait_for(len(rows)))
    assert len(smtp.messages) == len(rows)
    assert all(len(copies) == 1 for copies in delivered.values())
    assert statuses(mail_rt) == {"sent": len(rows)}


def test_a_claim_whose_lease_ran_out_is_taken_over(mail_rt: Runtime, smtp: SmtpServer) -> None:
    make_request(mail_rt, "disclosure")
    now = utcnow()
    crashed = claim_due(mail_rt.db, now, 100, lease=timedelta(minutes=10))  # then "crashes"
    assert len(crashed) == 3
    assert all(r.status == "sending" for r in outbox(mail_rt))

    assert flush(mail_rt, now=now + timedelta(minutes=5)).sent == 0  # still leased
    assert smtp.messages == []
    report = flush(mail_rt, now=now + timedelta(minutes=11))
    assert report.sent == 3
    assert all(r.status == "sent" and r.attempts == 2 for r in outbox(mail_rt))
    assert len(smtp.wait_for(3)) == 3


# ---------------------------------------------------------------------------- failures


def test_permanent_failure_is_reported_to_the_handlers(mail_rt: Runtime, smtp: SmtpServer) -> None:
    answer = "5.1.1 <bad@example.jp>: Recipient address rejected: User unknown"
    smtp.fail_with[BAD] = (550, answer)
    request = make_request(mail_rt, "disclosure", email=BAD)
    report = flush(mail_rt)
    assert (report.sent, report.retried, report.failed) == (3, 0, 2)  # + 2 notices sent

    failed = outbox(mail_rt, status="failed")
    assert {r.letter for r in failed} == {"acknowledgment", "verification"}
    assert all(r.last_error == f"550 {answer}" and r.attempts == 1 for r in failed)
    notices = outbox(mail_rt, letter="delivery_failed")
    assert len(notices) == 2
    assert all(n.status == "sent" for n in notices)
    assert sorted(report.notices) == sorted(n.id for n in notices)

    delivered = by_message_id(smtp.wait_for(3))
    for notice in notices:
        message = delivered[notice.message_id][0]
        assert message.rcpt_tos == [mail_rt.settings.handler_email]
        body = message.parsed().get_content()
        assert f"[{request.reference}]" in str(message.parsed()["Subject"])
        assert request.reference in body
        assert "550 5.1.1" in body
        (cause,) = [r for r in failed if notice.dedup_key == f"delivery_failed:{r.id}"]
        assert f"（{cause.letter}）" in body  # names the letter that did not arrive
        assert BAD not in body
        assert "[address]" in body
        assert "山田" not in body
        assert f"/console/requests/{request.id}" in body

    # A failed row is never tried again.
    assert flush(mail_rt, now=utcnow() + timedelta(days=2)).sent == 0
    assert all(r.attempts == 1 for r in outbox(mail_rt, status="failed"))
    assert not any(BAD in m.rcpt_tos for m in smtp.messages)


def test_a_failed_notice_does_not_start_a_chain(rt: Runtime, smtp: SmtpServer) -> None:
    smtp.fail_with["desk@example.jp"] = (550, "5.1.1 User unknown")
    desk = pointed_at(rt, smtp, handler_email="desk@example.jp")
    make_request(desk, "disclosure")
    report = flush(desk)
    assert (report.sent, report.failed) == (2, 2)  # the notice about the notice fails too...
    again = flush(desk)
    assert (again.sent, again.failed) == (0, 0)  # ...and nothing more is queued
    assert [r.letter for r in outbox(desk, status="failed")] == [
        "handler_notice",
        "delivery_failed",
    ]


def test_temporary_failure_is_retried_later_then_delivered(
    mail_rt: Runtime, smtp: SmtpServer
) -> None:
    make_request(mail_rt, "purpose_notice")
    smtp.temporary_failure = (451, "4.3.0 Try again later")
    now = utcnow()
    report = flush(mail_rt, now=now)
    assert (report.sent, report.retried, report.failed, report.unreachable) == (0, 3, 0, False)
    rows = outbox(mail_rt)
    assert all(r.status == "pending" and r.attempts == 1 for r in rows)
    assert all(r.last_error == "451 4.3.0 Try again later" for r in rows)
    assert all(r.next_attempt_at == now + timedelta(minutes=1) for r in rows)

    smtp.temporary_failure = None
    assert flush(mail_rt, now=now + timedelta(seconds=30)).sent == 0  # not due yet
    report = flush(mail_rt, now=now + timedelta(seconds=61))
    assert report.sent == 3
    assert all(r.status == "sent" and r.attempts == 2 for r in outbox(mail_rt))
    assert len(by_message_id(smtp.wait_for(3))) == 3


def test_a_bad_address_is_not_retried_forever(mail_rt: Runtime, smtp: SmtpServer) -> None:
    smtp.fail_with[BAD] = (452, "4.2.2 Mailbox full")
    add_row(mail_rt, recipient=BAD)
    retry = RetryPolicy(max_attempts=4)
    now = utcnow()
    waits = []
    for _ in range(3):
        assert flush(mail_rt, now=now, retry=retry).retried == 1
        (row,) = outbox(mail_rt, recipient=BAD)
        waits.append(row.next_attempt_at - now)
        now = row.next_attempt_at
    assert waits == [timedelta(minutes=1), timedelta(minutes=2), timedelta(minutes=4)]

    report = flush(mail_rt, now=now, retry=retry)
    assert report.failed == 1
    (row,) = outbox(mail_rt, recipient=BAD)
    assert row.status == "failed"
    assert row.attempts == 4
    assert row.last_error == "452 4.2.2 Mailbox full (gave up after 4 attempts)"
    assert len(outbox(mail_rt, letter="delivery_failed")) == 1


def test_backoff_doubles_up_to_the_cap() -> None:
    retry = RetryPolicy()
    assert [retry.delay(n).total_seconds() / 60 for n in range(1, 9)] == [
        1,
        2,
        4,
        8,
        16,
        32,
        60,
        60,
    ]
    assert retry.delay(1000) == timedelta(hours=1)


def test_logs_name_rows_not_people(
    mail_rt: Runtime, smtp: SmtpServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="dsrflow")
    smtp.fail_with[BAD] = (550, "5.1.1 <bad@example.jp> User unknown")
    make_request(mail_rt, "disclosure", email=BAD)
    request = make_request(mail_rt, "correction", "fulfilled")
    add_row(mail_rt, recipient="slow@example.jp")
    smtp.fail_with["slow@example.jp"] = (451, "4.7.1 <slow@example.jp> greylisted")
    flush(mail_rt)
    smtp.stop()
    make_request(mail_rt, "suspension")
    flush(mail_rt)

    ours = [r for r in caplog.records if r.name.startswith("dsrflow.outbound_mail")]
    text = "\n".join(r.getMessage() for r in ours)
    assert request.reference in text
    assert "sent" in text
    assert "failed" in text
    for personal in (BAD, "slow@example.jp", "taro@example.jp", "山田", "対応しました"):
        assert personal not in text


# ---------------------------------------------------------------------------- Maildir, CLI


def test_maildir_is_the_default_without_smtp(rt: Runtime) -> None:
    assert isinstance(sender_for(rt.settings), MaildirSender)
    make_request(rt, "disclosure", "fulfilled")
    rows = outbox(rt)
    report = flush(rt)
    assert report.sent == len(rows) == 4

    path = rt.settings.maildir_path
    assert len(list((path / "new").iterdir())) == 4
    box = mailbox.Maildir(str(path), factory=None, create=False)
    stored = {}
    for key in box.iterkeys():
        raw = box.get_bytes(key)
        assert b"\r\n" not in raw  # local line endings, as mail clients expect in a Maildir
        message = parsed(raw)
        stored[str(message["Message-ID"])] = message
    for row in rows:
        assert_delivered_as_queued(stored[row.message_id], row)
        assert stored[row.message_id]["From"].addresses[0].display_name == company(rt)


def test_cli_outbox_flush(
    rt: Runtime,
    smtp: SmtpServer,
    cli_env: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DSRFLOW_SMTP_HOST", smtp.host)
    monkeypatch.setenv("DSRFLOW_SMTP_PORT", str(smtp.port))
    make_request(rt, "disclosure")

    smtp.stop()
    assert main(["outbox", "flush"]) == 1  # the server could not be reached at all
    out, err = capsys.readouterr()
    assert "sent 0, retried later 3, failed 0" in out
    assert "mail server" in err

    smtp.start()
    with Session(rt.db) as session:  # make them due again without waiting a minute
        session.execute(update(OutboxMessage).values(next_attempt_at=utcnow()))
        session.commit()
    assert main(["outbox", "flush"]) == 0
    assert "sent 3, retried later 0, failed 0" in capsys.readouterr().out
    assert len(smtp.wait_for(3)) == 3
    assert main(["outbox", "flush"]) == 0
    assert "sent 0," in capsys.readouterr().out


def test_cli_outbox_flush_to_maildir(
    rt: Runtime, cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    make_request(rt, "disclosure", "withdrawn")
    assert main(["outbox", "flush"]) == 0
    assert "sent 4," in capsys.readouterr().out
    assert len(list((rt.settings.maildir_path / "new").iterdir())) == 4


def test_only_due_rows_are_claimed_oldest_first(mail_rt: Runtime) -> None:
    now = utcnow()
    late = add_row(mail_rt, next_attempt_at=now + timedelta(hours=1))
    early = add_row(mail_rt, next_attempt_at=now - timedelta(hours=1))
    earlier = add_row(mail_rt, next_attempt_at=now - timedelta(hours=2))
    claimed = claim_due(mail_rt.db, now, 10)
    assert [r.id for r in claimed] == [earlier.id, early.id]
    assert [r.status for r in outbox(mail_rt)] == ["pending", "sending", "sending"]
    assert outbox(mail_rt, id=late.id)[0].attempts == 0
