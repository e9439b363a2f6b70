"""Each rule of what becomes of a message, alone, and their order (no database)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from dsrflow.inbound_mail import decisions
from dsrflow.inbound_mail.decisions import RULES, Decision, Facts, decide
from dsrflow.inbound_mail.schemas import InboundMail, IntakePolicy
from dsrflow.requests.models import Request

NOW = datetime(2026, 11, 30, 3, 0, tzinfo=UTC)
TYPES = frozenset({"disclosure", "suspension"})


def mail(**fields: Any) -> InboundMail:
    defaults: dict[str, Any] = {
        "message_id": "<m@example.jp>",
        "raw": b"",
        "raw_size": 0,
        "source": "file",
        "received_at": NOW,
        "received_at_source": "now",
        "from_address": "taro@example.jp",
        "from_name": "山田 太郎",
        "subject": "開示請求",
        "text": "保有個人データの開示を請求します。",
        "detected_type": "disclosure",
    }
    return InboundMail(**{**defaults, **fields})


def request(reference: str = "DSR-2026-000001", state: str = "received", **fields: Any) -> Request:
    return Request(
        id=reference.replace("-", "").lower(),
        reference=reference,
        type="disclosure",
        state=state,
        requester_name="山田 太郎",
        requester_email=fields.pop("requester_email", "taro@example.jp"),
        details="-",
        received_at=NOW,
        due_at=NOW,
        status_token_hash=reference,
        **fields,
    )


def facts(**fields: Any) -> Facts:
    defaults: dict[str, Any] = {
        "mail": mail(),
        "closed_states": frozenset({"closed"}),
        "configured_types": TYPES,
    }
    return Facts(**{**defaults, **fields})


A, B = request(), request("DSR-2026-000002")


def test_not_understood() -> None:
    assert decisions.not_understood(facts()) is None
    got = decisions.not_understood(facts(mail=mail(quarantine_reason="no header fields")))
    assert got == Decision("quarantined", "no header fields")


def test_not_understood_keeps_the_request_it_is_about() -> None:
    got = decisions.not_understood(facts(mail=mail(quarantine_reason="x"), answered=(A,)))
    assert got is not None
    assert got.about is A


def test_automatic_mail() -> None:
    assert decisions.automatic_mail(facts()) is None
    got = decisions.automatic_mail(facts(mail=mail(ignore_reason="bounce (subject)")))
    assert got == Decision("ignored", "bounce (subject)")


def test_our_own_letter() -> None:
    assert decisions.our_own_letter(facts()) is None
    got = decisions.our_own_letter(facts(ours=True))
    assert got is not None
    assert got.status == "ignored"
    assert "our own" in (got.reason or "")


def test_answers_several_requests() -> None:
    assert decisions.answers_several_requests(facts(answered=(A,))) is None
    got = decisions.answers_several_requests(facts(answered=(B, A)))
    assert got is not None
    assert got.status == "triage"
    assert got.about is None
    assert "DSR-2026-000001, DSR-2026-000002" in (got.reason or "")


def test_answers_a_closed_request() -> None:
    assert decisions.answers_a_closed_request(facts(answered=(A,))) is None
    closed = request(state="closed")
    got = decisions.answers_a_closed_request(facts(answered=(closed,)))
    assert got is not None
    assert got.status == "triage"
    assert got.about is closed
    assert "closed" in (got.reason or "")
    # Named in the text only counts as well.
    quoted = facts(mail=mail(body_references=("DSR-2026-000001",)), quoted=(closed,))
    assert decisions.answers_a_closed_request(quoted) is not None


def test_answers_a_request() -> None:
    assert decisions.answers_a_request(facts()) is None
    assert decisions.answers_a_request(facts(answered=(A,))) == Decision("joined", about=A)


def test_names_an_unknown_reference() -> None:
    assert decisions.names_an_unknown_reference(facts()) is None
    got = decisions.names_an_unknown_reference(
        facts(mail=mail(named_references=("DSR-2026-000099",)))
    )
    assert got is not None
    assert got.status == "triage"
    assert "DSR-2026-000099" in (got.reason or "")


@pytest.mark.parametrize(
    ("quoted", "sender", "status", "words"),
    [
        ((A, B), "taro@example.jp", "triage", "several requests"),
        ((), "taro@example.jp", "triage", "unknown reference"),
        ((A,), "someone@example.com", "triage", "not its requester"),
        ((A,), "TARO@example.jp", "joined", None),
    ],
)
def test_text_names_a_request(
    quoted: tuple[Request, ...], sender: str, status: str, words: str | None
) -> None:
    message = mail(body_references=("DSR-2026-000001",), from_address=sender)
    got = decisions.text_names_a_request(facts(mail=message, quoted=quoted))
    assert got is not None
    assert got.status == status
    if words:
        assert words in (got.reason or "")
    else:
        assert got.about is A


def test_text_names_no_request() -> None:
    assert decisions.text_names_a_request(facts()) is None


def test_no_single_type() -> None:
    assert decisions.no_single_type(facts()) is None
    got = decisions.no_single_type(facts(mail=mail(detected_type=None)))
    assert got == Decision("triage", "no request type recognised")
    problem = "forwarded message: the sender may not be the requester"
    got = decisions.no_single_type(facts(mail=mail(type_problem=problem)))
    assert got == Decision("triage", problem)


def test_no_sender() -> None:
    assert decisions.no_sender(facts()) is None
    assert decisions.no_sender(facts(mail=mail(from_address=None))) is not None


def test_sender_over_limit() -> None:
    policy = IntakePolicy(requests_per_sender=2, sender_window=timedelta(hours=12))
    assert decisions.sender_over_limit(facts(policy=policy, recent_requests=1)) is None
    got = decisions.sender_over_limit(facts(policy=policy, recent_requests=2))
    assert got is not None
    assert got.status == "triage"
    assert "2 request(s) in the last 12 hours" in (got.reason or "")


def test_new_request() -> None:
    got = decisions.new_request(facts())
    assert got is not None
    assert got.status == "created"
    assert got.create is not None
    assert (got.create.type, got.create.email, got.create.name) == (
        "disclosure",
        "taro@example.jp",
        "山田 太郎",
    )
    assert got.create.language == "ja"
    english = decisions.new_request(facts(mail=mail(language="en", from_name=None)))
    assert english is not None
    assert english.create is not None
    assert (english.create.language, english.create.name) == ("en", "taro")


def test_new_request_of_an_unconfigured_type_waits() -> None:
    got = decisions.new_request(facts(configured_types=frozenset({"suspension"})))
    assert got == Decision("triage", "the type 'disclosure' is not configured")


def test_new_request_with_an_invalid_address_waits() -> None:
    got = decisions.new_request(facts(mail=mail(from_address="not-an-address@")))
    assert got is not None
    assert got.status == "triage"
    assert "invalid email" in (got.reason or "")


def test_the_first_rule_that_applies_decides() -> None:
    # A quarantined bounce of our letter that also names a type: quarantine comes first.
    both = facts(mail=mail(quarantine_reason="q", ignore_reason="i"), ours=True)
    assert decide(both).status == "quarantined"
    assert decide(dataclasses.replace(both, mail=mail(ignore_reason="i"))).status == "ignored"
    # A reply that names a type joins; it makes no new request.
    assert decide(facts(answered=(A,))).status == "joined"
    assert decide(facts()).status == "created"
    assert RULES[-1] is decisions.new_request
