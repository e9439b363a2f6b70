"""Mail naming someone else's reference joins only from the requester or the agent; from anyone
else it waits in triage, flagged "sender differs", and the handlers' notice says so."""

from __future__ import annotations

from sqlmodel import Session, select

from dsrflow.audit.models import Event
from dsrflow.inbound_mail.models import InboundMessage
from dsrflow.inbound_mail.reading import ingest
from dsrflow.outbound_mail.models import OutboxMessage
from dsrflow.runtime import Runtime
from tests.conftest import make_request


def reply(sender: str, reference: str, n: int) -> bytes:
    return (
        f"From: {sender}\r\nTo: info@innovativeai.co.jp\r\n"
        f"Subject: Re: [{reference}] ご請求を受け付けました\r\n"
        f"Message-ID: <reply-{n}@example.jp>\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\n"
        "本人確認書類を添付します。\r\n"
    ).encode()


def message_events(rt: Runtime, request_id: str) -> list[Event]:
    with Session(rt.db) as session:
        return list(
            session.exec(
                select(Event).where(Event.request_id == request_id, Event.kind == "message")
            )
        )


def test_only_the_requester_or_agent_joins_by_reference(rt: Runtime) -> None:
    request = make_request(
        rt, agent={"name": "代理 人", "email": "agent@example.jp", "relation": "appointed_agent"}
    )
    assert ingest(rt, reply("taro@example.jp", request.reference, 1)).status == "joined"
    assert ingest(rt, reply("AGENT@example.jp", request.reference, 2)).status == "joined"
    stranger = ingest(rt, reply("mallory@example.net", request.reference, 3))
    assert stranger.status == "triage"
    assert (stranger.reason or "").startswith("sender differs")
    assert len(message_events(rt, request.id)) == 2  # the stranger's mail did not join
    with Session(rt.db) as session:
        row = session.get(InboundMessage, stranger.inbound_id)
        assert row is not None
        assert row.status == "triage"
        assert row.request_id == request.id  # flagged against the request it names
        notices = session.exec(
            select(OutboxMessage).where(OutboxMessage.letter == "sender_differs")
        ).all()
    assert len(notices) == 1
    [notice] = notices
    assert notice.recipient == rt.settings.handler_email
    assert notice.subject.startswith(f"[{request.reference}] 【要確認・送信元不一致】")
    assert f"/api/v1/inbox/{stranger.inbound_id}" in notice.body
    assert "mallory" not in notice.body  # the notice points to the mail, it does not copy it
    # Nothing goes to the stranger.
    with Session(rt.db) as session:
        recipients = session.exec(select(OutboxMessage.recipient)).all()
    assert "mallory@example.net" not in recipients


def test_the_same_stranger_mail_twice_is_one_notice(rt: Runtime) -> None:
    request = make_request(rt)
    raw = reply("mallory@example.net", request.reference, 9)
    assert ingest(rt, raw).status == "triage"
    assert ingest(rt, raw).status == "triage"
    with Session(rt.db) as session:
        notices = session.exec(
            select(OutboxMessage).where(OutboxMessage.letter == "sender_differs")
        ).all()
    assert len(notices) == 1
