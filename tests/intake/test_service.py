"""What the inbox service makes of a message against the database: limits, loops, threading."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlmodel import Session, col, func, select

from dsrflow.inbox.models import InboundAttachment, InboundMessage
from dsrflow.intake.mail import ingest, rules_for
from dsrflow.runtime import Runtime


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
        assert row is not None and row.raw == raw, "kept whole for a handler"
    shown = client.get(f"/api/v1/inbox/{outcome.inbound_id}", headers=auth).json()
    assert shown["status"] == "quarantined" and shown["attachments"] == []


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
        assert row is not None and row.attachments_omitted == n - limits.max_attachments
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
