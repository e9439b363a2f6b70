"""The desk hears of every requester event (reply, verification, withdrawal, upload) with the
requester's name and text: one mail per event, or one per batch."""

from __future__ import annotations

from email.message import EmailMessage

from sqlmodel import Session, col, select

from dsrflow.inbound_mail.reading import ingest
from dsrflow.outbound_mail.models import OutboxMessage
from dsrflow.requests import notices, repository, service
from dsrflow.requests.models import DeskNotice, Request
from dsrflow.requests.schemas import RequestCreate
from dsrflow.runtime import Runtime
from tests.conftest import make_request, request_body


def _desk_mail(rt: Runtime, letter: str) -> list[OutboxMessage]:
    with Session(rt.db) as s:
        return list(
            s.exec(
                select(OutboxMessage)
                .where(OutboxMessage.letter == letter)
                .order_by(col(OutboxMessage.id))
            )
        )


def _reply(request: Request, text: str, message_id: str = "<reply-1@example.jp>") -> bytes:
    mail = EmailMessage()
    mail["From"] = f"Taro <{request.requester_email}>"
    mail["To"] = "info@innovativeai.co.jp"
    mail["Subject"] = f"Re: [{request.reference}] ご請求について"
    mail["Message-ID"] = message_id
    mail["Date"] = "Tue, 01 Dec 2026 10:00:00 +0900"
    mail.set_content(text)
    return bytes(mail)


def _submitted(rt: Runtime, request_type: str = "purpose_notice") -> tuple[Request, str]:
    with Session(rt.db, expire_on_commit=False) as s:
        submitted = service.submit(
            rt, s, RequestCreate(**request_body(request_type)), channel="web"
        )
    return submitted.request, submitted.status_token


def _verify_token(rt: Runtime, request: Request) -> str:
    with Session(rt.db) as s:
        body = s.exec(
            select(OutboxMessage.body).where(
                OutboxMessage.request_id == request.id, OutboxMessage.letter == "verification"
            )
        ).one()
    return body.split("/verify/")[1].split()[0]


def test_a_reply_to_any_open_request_reaches_the_desk_with_name_and_text(rt: Runtime) -> None:
    request = make_request(rt, "disclosure", "identity_verified")  # not waiting for a reply
    outcome = ingest(
        rt, _reply(request, "登録したのは別のメールアドレスかもしれません。"), source="file"
    )
    assert outcome.status == "joined"
    (notice,) = _desk_mail(rt, "requester_event")
    assert notice.recipient == rt.settings.handler_email
    assert f"[{request.reference}]" in notice.subject
    assert "返信" in notice.subject
    assert "山田 太郎" in notice.subject
    assert "山田 太郎" in notice.body
    assert "登録したのは別のメールアドレスかもしれません。" in notice.body
    assert f"/console/requests/{request.id}" in notice.body
    # The same message again is one message, and one notice.
    ingest(rt, _reply(request, "登録したのは別のメールアドレスかもしれません。"), source="file")
    assert len(_desk_mail(rt, "requester_event")) == 1


def test_a_long_reply_is_quoted_in_part(rt: Runtime) -> None:
    request = make_request(rt, "disclosure", "awaiting_requester")
    ingest(rt, _reply(request, "あ" * (notices.MAX_QUOTED + 500)), source="file")
    (notice,) = _desk_mail(rt, "requester_event")
    assert "あ" * notices.MAX_QUOTED in notice.body
    assert "あ" * (notices.MAX_QUOTED + 1) not in notice.body
    assert "途中まで" in notice.body
    assert "info_received" in notice.body, "a reply awaited says what to do next"


def test_verification_and_withdrawal_reach_the_desk(rt: Runtime) -> None:
    request, status_token = _submitted(rt, "purpose_notice")
    with Session(rt.db) as s:
        outcome, _ = service.verify_email(rt, s, _verify_token(rt, request))
    with Session(rt.db) as s:
        service.withdraw_by_requester(rt, s, status_token)
    events = _desk_mail(rt, "requester_event")
    assert len(events) == 2
    verified, withdrawn = events
    expected = (
        "本人確認が完了" if outcome is service.EmailCheck.IDENTITY_VERIFIED else "確認しました"
    )
    assert expected in verified.subject
    assert "山田 太郎" in verified.body
    assert "取り下げ" in withdrawn.subject
    assert request.reference in withdrawn.subject


def test_a_handlers_withdrawal_is_no_requester_event(rt: Runtime) -> None:
    make_request(rt, "disclosure", "withdrawn")
    assert _desk_mail(rt, "requester_event") == []


def test_uploads_are_told_through_tell_desk(rt: Runtime) -> None:
    request = make_request(rt, "disclosure")
    with Session(rt.db) as s:
        current = repository.get(s, request.id)
        assert current is not None
        notices.tell_desk(
            rt,
            s,
            current,
            "upload",
            key="upload:1",
            text="運転免許証の写しです。",
            details={"files": 2},
        )
        s.commit()
    (notice,) = _desk_mail(rt, "requester_event")
    assert "アップロード" in notice.subject
    assert "運転免許証の写しです。" in notice.body
    assert "ファイル：2件" in notice.body


def test_batch_mode_sends_one_mail_for_many_events(rt: Runtime) -> None:
    rt.settings.requester_event_mail = "batch"
    first = make_request(rt, "disclosure", "identity_verified")
    second = make_request(
        rt, "correction", "identity_verified", name="佐藤 花子", email="h@example.jp"
    )
    ingest(rt, _reply(first, "一通目の返信です。", "<r1@example.jp>"), source="file")
    ingest(rt, _reply(second, "二通目の返信です。", "<r2@example.jp>"), source="file")
    assert _desk_mail(rt, "requester_event") == [], "nothing per event in batch mode"
    with Session(rt.db) as s:
        assert len(s.exec(select(DeskNotice)).all()) == 2

    assert notices.send_batch(rt) == 2
    (batch,) = _desk_mail(rt, "requester_events")
    assert batch.recipient == rt.settings.handler_email
    assert "2件" in batch.subject
    for text in (first.reference, second.reference, "一通目の返信です。", "二通目の返信です。"):
        assert text in batch.body
    assert "佐藤 花子" in batch.body
    assert "山田 太郎" in batch.body
    with Session(rt.db) as s:
        assert s.exec(select(DeskNotice)).all() == [], "sent events are deleted"
    assert notices.send_batch(rt) == 0, "nothing waits: no empty mail"
    assert len(_desk_mail(rt, "requester_events")) == 1


def test_a_status_page_upload_reaches_the_desk(rt: Runtime) -> None:
    from dsrflow.documents import service as documents

    request, status_token = _submitted(rt, "disclosure")
    with Session(rt.db) as s:
        documents.upload(
            rt,
            s,
            status_token,
            kind="identity",
            filename="licence.png",
            content=b"\x89PNG\r\n\x1a\n1",
        )
    (notice,) = _desk_mail(rt, "requester_event")
    assert "アップロード" in notice.subject
    assert request.reference in notice.subject
    assert "ファイル：1件" in notice.body
