"""What the inbox service makes of a message against the database: limits, loops, threading."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event
from sqlmodel import Session, col, func, select

from dsrflow.inbound_mail import repository as inbound_repository
from dsrflow.inbound_mail.models import InboundAttachment, InboundMessage
from dsrflow.inbound_mail.reading import ingest
from dsrflow.inbound_mail.rules_file import rules_for
from dsrflow.outbound_mail.models import OutboxMessage
from dsrflow.requests import repository as requests
from dsrflow.requests.models import Request
from dsrflow.runtime import Runtime
from tests.conftest import make_request
from tests.inbound_mail.conftest import ACK_MESSAGE_ID, Seeded, count


def many_parts(n: int, subject: str = "disclosure request") -> bytes:
    parts = b"".join(b"--B\nContent-Type: a/b\n\nx\n" for _ in range(n))
    return (
        (
            f"From: a@example.jp\r\nSubject: {subject}\r\nMessage-ID: <parts-{n}@example.jp>\r\n"
            "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n"
        ).encode()
        + parts
        + b"--B--\r\n"
    )


def attachment_rows(rt: Runtime) -> int:
    with Session(rt.db) as session:
        return int(session.exec(select(func.count()).select_from(InboundAttachment)).one())


def test_a_message_of_thousands_of_parts_is_quarantined_unread(
    rt: Runtime, client: TestClient, auth: dict[str, str]
) -> None:
    limits = rules_for(rt).limits
    raw = many_parts(20_000)
    outcome = ingest(rt, raw)
    assert outcome.status == "quarantined"
    assert f"more than {limits.max_parts} MIME parts" in (outcome.reason or "")
    assert attachment_rows(rt) == 0
    with Session(rt.db) as session:
        row = session.get(InboundMessage, outcome.inbound_id)
        assert row is not None
        assert row.raw == raw, "kept whole for a handler"
    shown = client.get(f"/api/v1/inbox/{outcome.inbound_id}", headers=auth).json()
    assert shown["status"] == "quarantined"
    assert shown["attachments"] == []


def test_attachment_rows_are_capped_and_the_rest_counted(
    rt: Runtime, client: TestClient, auth: dict[str, str]
) -> None:
    limits = rules_for(rt).limits
    n = limits.max_parts - 1  # within the part limit, far over the attachment limit
    outcome = ingest(rt, many_parts(n))
    assert outcome.status == "created"
    assert attachment_rows(rt) == limits.max_attachments
    with Session(rt.db) as session:
        row = session.get(InboundMessage, outcome.inbound_id)
        assert row is not None
        assert row.attachments_omitted == n - limits.max_attachments
    listed = client.get("/api/v1/inbox", headers=auth).json()["items"][0]
    assert listed["attachment_count"] == n
    shown = client.get(f"/api/v1/inbox/{outcome.inbound_id}", headers=auth).json()
    assert shown["attachment_count"] == n
    assert len(shown["attachments"]) == limits.max_attachments
    with Session(rt.db) as session:
        ids = session.exec(select(col(InboundAttachment.id))).all()
    assert len(ids) == limits.max_attachments


def test_a_colleagues_request_from_our_domain_is_a_request(rt: Runtime) -> None:
    raw = (
        "From: Yamada <yamada@innovativeai.co.jp>\r\nTo: info@innovativeai.co.jp\r\n"
        "Subject: 開示請求\r\nMessage-ID: <3f2a9c1e-1111@innovativeai.co.jp>\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\n私の人事情報の開示を請求します。\r\n"
    ).encode()
    outcome = ingest(rt, raw)
    assert outcome.status == "created", outcome


def letters_to(rt: Runtime, address: str) -> list[OutboxMessage]:
    with Session(rt.db) as session:
        return list(session.exec(select(OutboxMessage).where(OutboxMessage.recipient == address)))


def plain(sender: str, subject: str, message_id: str, text: str, **headers: str) -> bytes:
    extra = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return (
        f"From: {sender}\r\nSubject: {subject}\r\nMessage-ID: <{message_id}>\r\n{extra}"
        f"Content-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n"
    ).encode()


def responder_round(i: int, subject: str) -> bytes:
    """An auto-responder that sets no auto-reply header, threads nothing and quotes our letter
    (its reference and the words of a request type) under a subject of its own."""
    return plain(
        "bot@example.org",
        subject,
        f"r{i}-{len(subject)}@example.org",
        "ただいま不在です。以下のメールを受信しました。\r\n"
        f"件名: [DSR-2026-00000{i}] 開示請求を受け付けました",
    )


def test_an_auto_responder_without_headers_makes_no_loop(rt: Runtime) -> None:
    first = ingest(rt, plain("bot@example.org", "開示請求", "r0@example.org", "開示請求します"))
    assert first.status == "created"
    letters = len(letters_to(rt, "bot@example.org"))
    for i in range(1, 4):
        outcome = ingest(rt, responder_round(i, "ただいま不在にしております"))
        assert outcome.status == "ignored", outcome
    for i in range(1, 4):  # the same under a subject no rule knows
        outcome = ingest(rt, responder_round(i, "Re: お知らせ"))
        assert outcome.status in ("joined", "triage"), outcome
    assert count(rt, Request) == 1
    assert len(letters_to(rt, "bot@example.org")) == letters, "no letter after the first round"


def test_a_text_naming_a_request_never_makes_one(rt: Runtime) -> None:
    request = make_request(rt, "disclosure", "received", email="taro@example.jp")
    quoting = f"> [{request.reference}] 開示請求を受け付けました\r\n利用停止もお願いします"
    joined = ingest(rt, plain("taro@example.jp", "追加のお願い", "q1@example.jp", quoting))
    assert (joined.status, joined.request_id) == ("joined", request.id)
    stranger = ingest(rt, plain("eve@example.org", "追加のお願い", "q2@example.org", quoting))
    assert stranger.status == "triage"
    assert stranger.request_id == request.id
    assert "not its requester" in (stranger.reason or "")
    unknown = ingest(
        rt, plain("eve@example.org", "開示請求", "q3@example.org", "DSR-2026-999999 開示請求")
    )
    assert unknown.status == "triage"
    assert "unknown reference" in (unknown.reason or "")
    assert count(rt, Request) == 1


def test_requests_made_by_mail_are_capped_per_sender(rt: Runtime) -> None:
    first = ingest(rt, plain("hana@example.jp", "開示請求", "c1@example.jp", "開示請求します"))
    second = ingest(rt, plain("HANA@example.jp", "利用停止", "c2@example.jp", "利用停止します"))
    other = ingest(rt, plain("ken@example.jp", "利用停止", "c3@example.jp", "利用停止します"))
    assert [first.status, second.status, other.status] == ["created", "triage", "created"]
    assert "possible mail loop" in (second.reason or "")


@pytest.mark.parametrize("backend", ["sqlite"])
def test_the_per_sender_limit_reads_only_the_window_s_rows(backend: str, rt: Runtime) -> None:
    # Not every message ever created, nor every one of the window (a backlog of new requests):
    # the query reads the index on (lower(from_address), created_at), the sender's rows only.
    since = datetime.now(UTC) - timedelta(hours=24)
    seen: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, params: Any, *args: Any) -> None:
        seen.append((statement, params))

    with Session(rt.db) as session:
        event.listen(rt.db, "before_cursor_execute", capture)
        try:
            inbound_repository.requests_created_from(session, "Hana@example.jp", since)
        finally:
            event.remove(rt.db, "before_cursor_execute", capture)
        statement, params = next((q, p) for q, p in seen if "count(" in q)
        plan = session.connection().exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params)
        assert "ix_inbound_messages_sender_created" in str(plan.all())


def test_a_phishing_like_subject_is_suspect_only_from_a_stranger(rt: Runtime) -> None:
    # The relation to us is looked up only for such a subject: it must still be looked up.
    make_request(rt, "disclosure", "received", email="Taro@example.jp")
    subject, text = "アカウントがロックされました", "ログインできません。"
    known = ingest(rt, plain("taro@example.jp", subject, "p1@example.jp", text))
    stranger = ingest(rt, plain("eve@example.org", subject, "p2@example.org", text))
    assert (known.status, stranger.status) == ("triage", "triage")
    assert "phishing-like" not in (known.reason or "")
    assert "phishing-like subject" in (stranger.reason or "")


def test_two_requests_named_go_to_triage(rt: Runtime, seeded: Seeded) -> None:
    both = f"Re: [{seeded.b.reference}] and [{seeded.a.reference}]"
    outcome = ingest(rt, plain("taro@example.jp", both, "two@example.jp", "which one?"))
    assert outcome.status == "triage"
    assert outcome.request_id is None
    assert seeded.a.reference in (outcome.reason or "")
    assert seeded.b.reference in (outcome.reason or "")
    # The subject names A, and In-Reply-To B's acknowledgment.
    crossed = plain(
        "taro@example.jp",
        f"Re: [{seeded.a.reference}]",
        "crossed@example.jp",
        "answer",
        **{"In-Reply-To": ACK_MESSAGE_ID},
    )
    outcome = ingest(rt, crossed)
    assert outcome.status == "triage"
    assert "several requests" in (outcome.reason or "")
    with Session(rt.db) as session:
        assert all(e.kind != "message" for e in requests.history(session, seeded.a.id)[1:])


@pytest.mark.parametrize("state", ["fulfilled", "refused", "withdrawn"])
def test_mail_about_a_closed_request_waits_for_a_handler(rt: Runtime, state: str) -> None:
    request = make_request(rt, "disclosure", state)
    subject = f"Re: [{request.reference}] 追加で開示請求します"
    outcome = ingest(rt, plain("taro@example.jp", subject, "closed@example.jp", "もう一度"))
    assert outcome.status == "triage", outcome
    assert outcome.request_id == request.id, "the handler sees which request"
    assert f"{request.reference}, which is closed ({state})" in (outcome.reason or "")
    assert count(rt, Request) == 1


def bounce_of(message_id: str, n: int) -> bytes:
    return (
        "Return-Path: <>\r\nFrom: MAILER-DAEMON@mx.example.jp\r\nAuto-Submitted: auto-replied\r\n"
        f"Subject: Undelivered Mail Returned to Sender\r\nMessage-ID: <dsn-{n}@mx.example.jp>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: multipart/report; report-type=delivery-status; boundary=r\r\n\r\n"
        "--r\r\nContent-Type: text/plain\r\n\r\nCould not be delivered.\r\n"
        "--r\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.jp\r\n"
        "\r\nFinal-Recipient: rfc822; hanako@example.jp\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        "Diagnostic-Code: smtp; 550 5.1.1 <hanako@example.jp>: user unknown\r\n"
        f"--r\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: {message_id}\r\n"
        "--r--\r\n"
    ).encode()


def test_a_bounced_letter_is_reported_to_the_handlers_once(rt: Runtime, seeded: Seeded) -> None:
    to_requester = len(letters_to(rt, seeded.b.requester_email))
    first = ingest(rt, bounce_of(ACK_MESSAGE_ID, 1))
    second = ingest(rt, bounce_of(ACK_MESSAGE_ID, 2))  # another report on the same letter
    assert (first.status, second.status) == ("ignored", "ignored")
    assert first.request_id == seeded.b.id
    with Session(rt.db) as session:
        notices = session.exec(
            select(OutboxMessage).where(OutboxMessage.letter == "delivery_failed")
        ).all()
    assert [(n.recipient, n.reference) for n in notices] == [
        (rt.settings.handler_email, seeded.b.reference)
    ]
    assert "5.1.1" in notices[0].body
    assert "hanako@example.jp" not in notices[0].body
    assert len(letters_to(rt, seeded.b.requester_email)) == to_requester, "nothing to them"
