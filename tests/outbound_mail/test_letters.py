"""Every letter of every request type, in both languages, through a real SMTP server.

The requests are driven through the request service, so the letters are the ones it queues;
what arrives at the server must decode to exactly what the outbox holds.
"""

from __future__ import annotations

from email.headerregistry import Address
from email.utils import parsedate_to_datetime

import pytest
from sqlmodel import Session

from dsrflow.requests import service
from dsrflow.requests.schemas import PaymentIn, TransitionIn
from dsrflow.runtime import Runtime
from tests.conftest import make_request, path_fields, request_body
from tests.outbound_mail.conftest import (
    assert_delivered_as_queued,
    by_message_id,
    company,
    flush,
    outbox,
)
from tests.services.smtp import SmtpServer

STATES = ["received", "awaiting_requester", "fulfilled", "refused", "not_held", "withdrawn"]
AGENT = {"name": "佐藤 花子", "email": "agent@example.jp", "relation": "appointed_agent"}


def partly_fulfilled(rt: Runtime, request_type: str, language: str) -> str:
    """A request fulfilled in part, each withheld part with its legal reason."""
    request = make_request(rt, request_type, "identity_verified", language=language)
    reasons = [
        r
        for r in rt.definitions.reasons_for(request_type, "identity_verified")
        if "withheld" in r.uses
    ][:2]
    withheld = [{"reason_code": r.code, "explanation": f"説明 {r.code}"} for r in reasons]
    fields = path_fields(rt, request_type, "fulfill", {"summary": "一部を開示しました。"})
    with Session(rt.db, expire_on_commit=False) as session:
        if rt.definitions.workflow(request_type).fee:
            payment = PaymentIn(amount_jpy=1000, method="bank_transfer")
            service.record_payment(rt, session, request.id, payment, actor="test")
        service.transition(
            rt,
            session,
            request.id,
            TransitionIn(trigger="fulfill", withheld=withheld, **fields),
            actor="test",
        )
    return request.id


def expected_letters(rt: Runtime, request_type: str) -> set[str]:
    """The letters intake and the handlers' decisions send (the scheduler's are tested there)."""
    wf = rt.definitions.workflow(request_type)
    intake = {
        wf.letters[key]
        for key in ("acknowledgment", "verification", "handler_notice", "agent_notice")
    }
    return intake | {t.letter for t in wf.transitions if t.letter}


@pytest.mark.parametrize("language", ["ja", "en"])
def test_every_letter_of_every_type_arrives_unchanged(
    mail_rt: Runtime, smtp: SmtpServer, language: str
) -> None:
    rt = mail_rt
    kinds: dict[str, tuple[str, bool]] = {}  # request id -> (type, by an agent)
    for request_type in rt.definitions.workflows:
        extra = (
            ["substituted"]
            if "substitute" in rt.definitions.workflow(request_type).triggers
            else []
        )
        for state in STATES + extra:
            request = make_request(rt, request_type, state, language=language)
            kinds[request.id] = (request_type, False)
        kinds[partly_fulfilled(rt, request_type, language)] = (request_type, False)
        agent = make_request(rt, request_type, "received", language=language, agent=AGENT)
        kinds[agent.id] = (request_type, True)

    rows = outbox(rt)
    report = flush(rt, batch_size=50)  # several batches
    assert (report.sent, report.retried, report.failed) == (len(rows), 0, 0)
    assert not report.unreachable
    delivered = by_message_id(smtp.wait_for(len(rows)))
    assert len(smtp.messages) == len(rows)

    seen: dict[str, set[str]] = {t: set() for t in rt.definitions.workflows}
    details = request_body()["details"]
    acknowledgments = {
        row.request_id: row.message_id for row in rows if row.dedup_key.endswith(":acknowledgment")
    }
    for row in rows:
        assert len(delivered[row.message_id]) == 1, row.letter
        arrived = delivered[row.message_id][0]
        message = arrived.parsed()
        assert_delivered_as_queued(message, row)
        request_type, by_agent = kinds[str(row.request_id)]
        seen[request_type].add(row.letter)

        # Envelope and headers.
        assert arrived.rcpt_tos == [row.recipient]
        assert arrived.mail_from == rt.settings.mail_from
        sender = message["From"].addresses[0]
        assert sender == Address(display_name=company(rt), addr_spec=rt.settings.mail_from)
        assert message["Auto-Submitted"] == "auto-generated"
        assert parsedate_to_datetime(str(message["Date"])) == row.created_at.replace(microsecond=0)
        assert f"[{row.reference}]" in str(message["Subject"])
        # Correctly MIME-encoded: nothing but 7-bit ASCII on the wire.
        assert arrived.data.isascii()
        assert details not in message.get_content()  # letters carry no request details

        if row.letter == "handler_notice":
            assert row.recipient == rt.settings.handler_email
            assert "山田" not in message.get_content()
            assert "taro@example.jp" not in message.get_content()
        elif row.letter == "agent_notice":
            # The principal is told that an agent asked in their name.
            assert by_agent
            assert row.recipient == "taro@example.jp"
            assert AGENT["name"] in message.get_content()
        elif by_agent:
            assert row.recipient == AGENT["email"]
            assert "山田 太郎" in message.get_content()  # every letter names the principal
        else:
            assert row.recipient == "taro@example.jp"
        if row.letter not in ("acknowledgment", "handler_notice", "agent_notice"):
            assert row.in_reply_to == acknowledgments[row.request_id], row.letter
            assert message["In-Reply-To"] == row.in_reply_to

    for request_type, letters in seen.items():
        assert letters == expected_letters(rt, request_type), request_type


def test_japanese_subject_is_encoded_words_and_body_is_base64(
    mail_rt: Runtime, smtp: SmtpServer
) -> None:
    make_request(mail_rt, "disclosure", "refused")
    rows = outbox(mail_rt)
    flush(mail_rt)
    delivered = by_message_id(smtp.wait_for(len(rows)))
    refused = next(r for r in rows if r.letter == "refused")
    raw = delivered[refused.message_id][0].data
    head, _, _ = raw.partition(b"\r\n\r\n")
    subject_line = next(line for line in head.split(b"\r\n") if line.startswith(b"Subject:"))
    assert b"=?utf-8?" in subject_line.lower()
    assert b"Content-Transfer-Encoding: base64" in head
    message = delivered[refused.message_id][0].parsed()
    assert "（ご通知）" in str(message["Subject"])
    assert "個人情報の保護に関する法律" in message.get_content()
    assert_delivered_as_queued(message, refused)


def test_a_new_requests_letters_are_queued_together_and_thread_under_the_acknowledgment(
    rt: Runtime,
) -> None:
    """The create queues its letters in one statement, with the acknowledgment's Message-ID
    chosen before: the verification link must still name exactly that one."""
    request = make_request(rt, "disclosure", agent=AGENT)
    rows = {row.letter: row for row in outbox(rt, request_id=request.id)}
    wf = rt.definitions.workflow("disclosure")
    ack = rows[wf.letters["acknowledgment"]]
    verification = rows[wf.letters["verification"]]
    assert ack.in_reply_to is None
    assert verification.in_reply_to == ack.message_id
    assert rows[wf.letters["agent_notice"]].recipient == request.requester_email
    assert rows[wf.letters["handler_notice"]].recipient == rt.settings.handler_email
    assert len({row.message_id for row in rows.values()}) == len(rows) == 4
