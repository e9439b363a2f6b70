"""What the APPI asks of the letters, in both languages: the principal named, the method, the
notice article of each type, dates and amounts as Japanese letters write them, and never the
law blamed for the company's own decision."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlmodel import Session, select

from dsrflow.outbound_mail.models import OutboxMessage
from dsrflow.outbound_mail.render import LetterRenderer
from dsrflow.requests import service
from dsrflow.requests.schemas import PaymentIn, TransitionIn
from dsrflow.runtime import Runtime
from tests.conftest import WORKFLOWS, make_request

AGENT = {"name": "佐藤 花子", "email": "agent@example.jp", "relation": "appointed_agent"}
PRINCIPAL = {
    "ja": "ご本人：山田 太郎 様（代理人：佐藤 花子 様）",
    "en": "Principal: 山田 太郎 (agent: 佐藤 花子)",
}
NOTICE = {
    "disclosure": ("第33条第3項", "Art. 33(3)"),
    "third_party_record_disclosure": ("第33条第5項において準用する同条第3項", "Art. 33(5)"),
    "correction": ("第34条第3項", "Art. 34(3)"),
    "suspension": ("第35条第7項", "Art. 35(7)"),
    "third_party_cessation": ("第35条第7項", "Art. 35(7)"),
    "purpose_notice": ("第32条第3項", "Art. 32(3)"),
}
BLAMING_THE_LAW = ("法令の定めにより", "The law does not allow", "as the law allows")


def outbox(rt: Runtime, request_id: str) -> list[OutboxMessage]:
    with Session(rt.db) as session:
        return list(
            session.exec(select(OutboxMessage).where(OutboxMessage.request_id == request_id))
        )


def decide(rt: Runtime, request_id: str, trigger: str, **fields: Any) -> None:
    with Session(rt.db, expire_on_commit=False) as session:
        service.transition(
            rt, session, request_id, TransitionIn(trigger=trigger, **fields), actor="test"
        )


@pytest.mark.parametrize("language", ["ja", "en"])
@pytest.mark.parametrize("request_type", sorted(NOTICE))
def test_every_requester_letter_names_the_principal_and_outcomes_cite_the_notice_article(
    request_type: str, language: str, rt: Runtime
) -> None:
    article = NOTICE[request_type][0 if language == "ja" else 1]
    refused = make_request(rt, request_type, "awaiting_requester", language=language, agent=AGENT)
    decide(rt, refused.id, "refuse", reason_code="PROC_NOT_SPECIFIED", explanation="説明")
    partial = make_request(rt, request_type, "identity_verified", language=language, agent=AGENT)
    wf = rt.definitions.workflow(request_type)
    reason = next(
        r
        for r in rt.definitions.reasons_for(request_type, "identity_verified")
        if "withheld" in r.uses
    )
    fields: dict[str, Any] = {
        "summary": "対応しました。",
        "withheld": [{"reason_code": reason.code, "explanation": "説明"}],
    }
    if wf.disclosure_methods:
        fields["method_used"] = wf.disclosure_methods[0]
    if wf.fee:
        with Session(rt.db, expire_on_commit=False) as session:
            payment = PaymentIn(amount_jpy=1000, method="cash")
            service.record_payment(rt, session, partial.id, payment, actor="test")
    decide(rt, partial.id, "fulfill", **fields)

    for request in (refused, partial):
        rows = outbox(rt, request.id)
        to_requester = [r for r in rows if r.recipient == AGENT["email"]]
        assert to_requester, request_type
        for row in to_requester:
            assert PRINCIPAL[language] in row.body, (row.letter, request_type)
            for words in BLAMING_THE_LAW:
                assert words not in row.body, (row.letter, words)
        outcome = next(
            r for r in rows if r.letter in ("refused", "fulfilled", "correction_fulfilled")
        )
        assert article in outcome.body, (request_type, outcome.letter)
        # Art. 36: the reason is explained.
        assert ("第36条" if language == "ja" else "Art. 36") in outcome.body


@pytest.mark.parametrize(
    ("language", "method_words", "received", "fee"),
    [
        (
            "ja",
            "ご指定の開示の方法：書面の交付による方法（郵送）",
            "2026年4月6日 10時15分",
            "1,000円",
        ),
        (
            "en",
            "Method of disclosure you designated: a paper copy (by post)",
            "6 April 2026, 10:15",
            "JPY 1,000",
        ),
    ],
)
def test_the_acknowledgment_shows_the_method_dates_and_fee_as_letters_write_them(
    language: str, method_words: str, received: str, fee: str, rt: Runtime
) -> None:
    arrival = datetime(2026, 4, 6, 10, 15, tzinfo=ZoneInfo("Asia/Tokyo"))
    request = make_request(
        rt,
        "disclosure",
        language=language,
        disclosure_method="paper",
        postal_address="東京都港区芝公園四丁目2番8号",
        received_at=arrival,
    )
    (ack,) = [r for r in outbox(rt, request.id) if r.letter == "acknowledgment"]
    assert method_words in ack.body
    assert received in ack.body
    assert fee in ack.body
    due = "2026年4月20日（月）" if language == "ja" else "Monday, 20 April 2026"
    assert due in ack.body
    assert "2026-04-20" not in ack.body


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        ("ja", ("2026年4月20日（月）", "2026年4月6日 9時05分", "1,000円")),
        ("en", ("Monday, 20 April 2026", "6 April 2026, 09:05", "JPY 1,000")),
    ],
)
def test_the_renderers_filters(language: str, expected: tuple[str, str, str]) -> None:
    renderer = LetterRenderer(WORKFLOWS / "templates")
    moment = datetime(2026, 4, 6, 9, 5, tzinfo=ZoneInfo("Asia/Tokyo"))
    assert renderer.format("long_date", date(2026, 4, 20), language) == expected[0]
    assert renderer.format("long_datetime", moment, language) == expected[1]
    assert renderer.format("yen", 1000, language) == expected[2]


def test_no_python_literal_holds_a_weekday_name() -> None:
    # Weekday names live in workflows/templates/formats.yaml, like every Japanese word.
    source = (WORKFLOWS.parent / "src" / "dsrflow" / "outbound_mail" / "render.py").read_text(
        encoding="utf-8"
    )
    assert "月" not in source
    assert "Monday" not in source


FULFILLED_ARTICLE = {
    "disclosure": ("第33条第2項", "Art. 33(2)"),
    "correction": ("第34条第3項", "Art. 34(3)"),
    "suspension": ("第35条第7項", "Art. 35(7)"),
    "third_party_cessation": ("第35条第7項", "Art. 35(7)"),
    "purpose_notice": ("第32条第2項", "Art. 32(2)"),
}


@pytest.mark.parametrize("language", ["ja", "en"])
@pytest.mark.parametrize("request_type", sorted(FULFILLED_ARTICLE))
def test_a_full_fulfilment_states_what_was_done_under_which_article(
    request_type: str, language: str, rt: Runtime
) -> None:
    request = make_request(rt, request_type, "fulfilled", language=language)
    (letter,) = [
        r for r in outbox(rt, request.id) if r.letter in ("fulfilled", "correction_fulfilled")
    ]
    assert FULFILLED_ARTICLE[request_type][0 if language == "ja" else 1] in letter.body
