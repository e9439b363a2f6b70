"""Retention and purge (issue 12, section 5): personal data goes, a record that identifies no one
stays, and the audit chain still verifies; older chains are resealed by migration 0005."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from dsrflow.audit.chain import GENESIS, event_hash, verify_chains
from dsrflow.audit.models import Event
from dsrflow.db import make_engine, migrate, utcnow
from dsrflow.inbound_mail.models import InboundAttachment, InboundMessage
from dsrflow.inbound_mail.reading import ingest
from dsrflow.outbound_mail.models import OutboxMessage
from dsrflow.requests import service
from dsrflow.requests.models import Request
from dsrflow.requests.schemas import TransitionIn
from dsrflow.retention import purge
from dsrflow.runtime import Runtime
from tests.conftest import make_request

PERSONAL = ("山田", "taro@example.jp", "会員情報", "確認できません")


def reply_with_attachment(rt: Runtime, request: Request, tag: str) -> int:
    raw = (
        "From: taro@example.jp\r\nTo: info@innovativeai.co.jp\r\n"
        f"Subject: Re: [{request.reference}] 本人確認書類\r\n"
        f"Message-ID: <{tag}-{request.id}@example.jp>\r\n"
        'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n山田です。書類を送ります。\r\n"
        '--b\r\nContent-Type: image/png\r\nContent-Disposition: attachment; filename="card.png"\r\n'
        "Content-Transfer-Encoding: base64\r\n\r\niVBORw0KGgoAAAANSUhEUg==\r\n--b--\r\n"
    ).encode()
    outcome = ingest(rt, raw)
    assert outcome.status == "joined"
    return outcome.inbound_id


def everything_stored(rt: Runtime, request_id: str) -> str:
    """Every stored value about a request, as one text (to search for personal data)."""
    with Session(rt.db) as s:
        parts: list[object] = [s.get(Request, request_id)]
        parts += s.exec(select(Event).where(Event.request_id == request_id)).all()
        parts += s.exec(select(OutboxMessage).where(OutboxMessage.request_id == request_id)).all()
        for m in s.exec(select(InboundMessage).where(InboundMessage.request_id == request_id)):
            parts += [m, m.raw.decode(errors="replace")]
            parts += s.exec(
                select(InboundAttachment).where(InboundAttachment.inbound_message_id == m.id)
            ).all()
    return "\n".join(repr(p) for p in parts)


def test_purge_removes_personal_data_and_the_chain_still_verifies(rt: Runtime) -> None:
    closed = make_request(rt, "disclosure", "received")
    inbound = reply_with_attachment(rt, closed, "closed")
    with Session(rt.db, expire_on_commit=False) as s:
        refusal = TransitionIn(
            trigger="refuse", reason_code="PROC_ID_UNVERIFIED", explanation="確認できません。"
        )
        closed = service.transition(rt, s, closed.id, refusal, actor="handler:1")
    still_open = make_request(rt, "disclosure", "received")
    assert all(word in everything_stored(rt, closed.id) for word in PERSONAL)

    later = utcnow() + timedelta(days=rt.settings.retention_closed_days + 1)
    planned = purge(rt, dry_run=True, now=later)
    assert planned.requests == [closed.reference]
    assert all(word in everything_stored(rt, closed.id) for word in PERSONAL)  # dry run

    done = purge(rt, now=later)
    assert done.requests == [closed.reference]
    stored = everything_stored(rt, closed.id)
    for word in PERSONAL:
        assert word not in stored
    with Session(rt.db) as s:
        record = s.get(Request, closed.id)
        assert record is not None
        # What stays identifies no one: reference, type, dates, outcome, reason code.
        assert (record.reference, record.type, record.state) == (
            closed.reference,
            "disclosure",
            "refused",
        )
        assert record.received_at == closed.received_at
        assert record.closed_at is not None
        assert record.purged_at is not None
        refusal = s.exec(
            select(Event).where(Event.request_id == closed.id, Event.to_state == "refused")
        ).one()
        assert refusal.detail == {"reason_code": "PROC_ID_UNVERIFIED"}
        kinds = [e.kind for e in s.exec(select(Event).where(Event.request_id == closed.id))]
        assert kinds[-1] == "purged"
        message = s.get(InboundMessage, inbound)
        assert message is not None
        assert message.raw == b""
        assert message.text == ""
        opened = s.get(Request, still_open.id)
        assert opened is not None
        assert opened.requester_name == "山田 太郎"
        _, breaks = verify_chains(s)
    assert breaks == []
    assert purge(rt, now=later).requests == []  # once


def test_id_documents_and_raw_mail_go_sooner(rt: Runtime) -> None:
    verified = make_request(rt, "disclosure", "identity_verified")
    inbound = reply_with_attachment(rt, verified, "id")
    days = rt.settings.retention_id_documents_days
    assert purge(rt, now=utcnow() + timedelta(days=days - 1)).attachments == 0
    report = purge(rt, now=utcnow() + timedelta(days=days + 1))
    assert report.attachments == 1
    assert report.requests == []
    with Session(rt.db) as s:
        attachment = s.exec(
            select(InboundAttachment).where(InboundAttachment.inbound_message_id == inbound)
        ).one()
        assert attachment.content is None
        assert attachment.erased_reason == "retention"
        message = s.get(InboundMessage, inbound)
        assert message is not None
        assert message.raw == b""
        assert "山田です" in message.text  # the words stay while the request does
        _, breaks = verify_chains(s)
    assert breaks == []


def test_a_my_number_card_is_erased_when_a_handler_marks_it(
    rt: Runtime, client: TestClient, auth: dict[str, str]
) -> None:
    request = make_request(rt, "disclosure", "received")
    inbound = reply_with_attachment(rt, request, "mynumber")
    message = client.get(f"/api/v1/inbox/{inbound}", headers=auth).json()
    attachment_id = message["attachments"][0]["id"]
    url = f"/api/v1/inbox/{inbound}/attachments/{attachment_id}"
    assert client.get(url, headers=auth).status_code == 200
    marked = client.post(f"{url}/my-number", headers=auth)
    assert marked.status_code == 204
    assert client.get(url, headers=auth).status_code == 404
    assert client.get(f"/api/v1/inbox/{inbound}/raw", headers=auth).content == b""
    unknown = f"/api/v1/inbox/{inbound}/attachments/999999/my-number"
    assert client.post(unknown, headers=auth).status_code == 404
    history = client.get(f"/api/v1/requests/{request.id}", headers=auth).json()["history"]
    assert history[-1]["kind"] == "attachment_erased"
    assert history[-1]["detail"]["erased"] == "my_number"
    with Session(rt.db) as s:
        _, breaks = verify_chains(s)
    assert breaks == []


def test_migration_0005_reseals_old_chains_and_keeps_old_breaks(
    rt: Runtime, database_url: str
) -> None:
    intact = make_request(rt, "disclosure", "refused")
    broken = make_request(rt, "disclosure", "fulfilled")
    rt.db.dispose()
    old: Engine = make_engine(database_url)
    # A database as 0004 left it: no 0005 columns, both chains hashed in format 1.
    with old.begin() as c:
        for table, column in DROPPED:
            c.execute(text(f"ALTER TABLE {table} DROP COLUMN {column}"))
        c.execute(text("UPDATE alembic_version SET version_num = '0004'"))
        for request_id in (intact.id, broken.id):
            prev = GENESIS
            rows = c.execute(
                text("SELECT * FROM events WHERE request_id = :r ORDER BY seq"), {"r": request_id}
            ).mappings()
            for row in list(rows):
                detail = row["detail"]
                fields = {
                    **{k: row[k] for k in FORMAT1_KEYS},
                    "at": _aware(row["at"]).isoformat(timespec="microseconds"),
                    "detail": json.loads(detail) if isinstance(detail, str) else detail,
                }
                new = event_hash(prev, fields)
                c.execute(
                    text("UPDATE events SET prev_hash = :p, hash = :h WHERE id = :i"),
                    {"p": prev, "h": new, "i": row["id"]},
                )
                prev = new
            c.execute(
                text("UPDATE audit_heads SET hash = :h WHERE request_id = :r"),
                {"h": prev, "r": request_id},
            )
        c.execute(
            text("UPDATE events SET actor = 'someone else' WHERE request_id = :r AND seq = 2"),
            {"r": broken.id},
        )
    migrate(old)
    with Session(old) as s:
        _, breaks = verify_chains(s)
        formats = {e.format for e in s.exec(select(Event).where(Event.request_id == intact.id))}
        old_format = {e.format for e in s.exec(select(Event).where(Event.request_id == broken.id))}
    old.dispose()
    assert {b.request_id for b in breaks} == {broken.id}
    assert formats == {2}
    assert old_format == {1}


DROPPED = [
    ("events", "format"),
    ("events", "detail_digest"),
    ("events", "detail_salts"),
    ("requests", "purged_at"),
    ("inbound_messages", "raw_purged_at"),
    ("inbound_attachments", "erased_at"),
    ("inbound_attachments", "erased_reason"),
]
FORMAT1_KEYS = ("request_id", "seq", "kind", "trigger", "from_state", "to_state", "actor")


def _aware(value: object) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
