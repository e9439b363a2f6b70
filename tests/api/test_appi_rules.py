"""The APPI rules of the contract (DESIGN.md, issue 9): each one refused where it is broken.

Identity and agency (Art. 37(1)/(3), Cabinet Order 12-13), the disclosure method (Art. 33(1)-(3),
Rules Art. 30), every outcome (not_held, substituted, refuse from awaiting_requester), fees
(Art. 38, Cabinet Order 12(iv)) and a handler's withdrawal.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event
from sqlmodel import Session, select

from dsrflow.errors import Invalid
from dsrflow.outbound_mail.models import OutboxMessage
from dsrflow.runtime import Runtime
from dsrflow.workflow.engine import Subject
from tests.conftest import make_request, request_body

AGENT = {"name": "佐藤 花子", "email": "agent@example.jp", "relation": "legal_representative"}
EVIDENCE = "運転免許証の写し（氏名・住所一致）"


def fire(client: TestClient, auth: dict[str, str], request_id: str, trigger: str, **fields: Any):  # type: ignore[no-untyped-def]
    return client.post(
        f"/api/v1/requests/{request_id}/transitions",
        json={"trigger": trigger, **fields},
        headers=auth,
    )


def pay(client: TestClient, auth: dict[str, str], request_id: str, amount: int = 1000):  # type: ignore[no-untyped-def]
    return client.post(
        f"/api/v1/requests/{request_id}/payments",
        json={"amount_jpy": amount, "method": "bank_transfer", "note": "振込確認"},
        headers=auth,
    )


def letters(rt: Runtime, request_id: str, letter: str) -> list[OutboxMessage]:
    with Session(rt.db) as session:
        return list(
            session.exec(
                select(OutboxMessage).where(
                    OutboxMessage.request_id == request_id, OutboxMessage.letter == letter
                )
            )
        )


# Identity and agency


def test_email_link_is_refused_where_the_workflow_calls_it_insufficient(
    rt: Runtime, client: TestClient, auth: dict[str, str]
) -> None:
    request = make_request(rt, "disclosure")
    response = fire(client, auth, request.id, "verify_identity", method="email_link")
    assert response.status_code == 422
    assert "does not verify identity" in response.json()["errors"]["method"]


def test_email_link_needs_the_link_opened_and_no_agent(rt: Runtime) -> None:
    engine = rt.engine
    fields = {"method": "email_link"}
    with pytest.raises(Invalid) as caught:
        engine.fire("purpose_notice", Subject("received"), "verify_identity", fields)
    assert "confirmed the address" in caught.value.errors["method"]
    with pytest.raises(Invalid) as caught:
        engine.fire(
            "purpose_notice",
            Subject("received", email_confirmed=True, agent=True),
            "verify_identity",
            {**fields, "authority_document": "family_register", "agent_method": "in_person"},
        )
    assert "agent" in caught.value.errors["method"]
    confirmed = Subject("received", email_confirmed=True)
    assert engine.fire("purpose_notice", confirmed, "verify_identity", fields).dest == (
        "identity_verified"
    )


def test_a_handler_cannot_claim_email_link_before_the_link_is_opened(
    rt: Runtime, client: TestClient, auth: dict[str, str]
) -> None:
    request = make_request(rt, "purpose_notice")
    response = fire(client, auth, request.id, "verify_identity", method="email_link")
    assert response.status_code == 422
    assert "method" in response.json()["errors"]


def test_every_method_but_email_link_records_what_was_checked(
    rt: Runtime, client: TestClient, auth: dict[str, str]
) -> None:
    request = make_request(rt, "correction")
    missing = fire(client, auth, request.id, "verify_identity", method="in_person")
    assert missing.status_code == 422
    assert "evidence" in missing.json()["errors"]
    blank = fire(client, auth, request.id, "verify_identity", method="in_person", evidence="  ")
    assert blank.status_code == 422
    assert "evidence" in blank.json()["errors"]
    ok = fire(client, auth, request.id, "verify_identity", method="in_person", evidence=EVIDENCE)
    assert ok.status_code == 200, ok.text
    shown = ok.json()
    assert (shown["identity_method"], shown["identity_evidence"]) == ("in_person", EVIDENCE)
    assert shown["history"][-1]["detail"]["evidence"] == EVIDENCE


def test_an_agent_request_records_the_authority_and_the_agents_own_check(
    rt: Runtime, client: TestClient, auth: dict[str, str]
) -> None:
    request = make_request(rt, "suspension", agent=AGENT)
    base = {"method": "id_document_copy", "evidence": EVIDENCE}
    response = fire(client, auth, request.id, "verify_identity", **base)
    assert response.status_code == 422
    assert {"authority_document", "agent_method"} <= set(response.json()["errors"])
    unknown = fire(
        client,
        auth,
        request.id,
        "verify_identity",
        **base,
        authority_document="a_note_from_mum",
        agent_method="email_link",
    )
    assert unknown.status_code == 422
    assert {"authority_document", "agent_method"} <= set(unknown.json()["errors"])
    ok = fire(
        client,
        auth,
        request.id,
        "verify_identity",
        **base,
        authority_document="family_register",
        agent_method="in_person",
    )
    assert ok.status_code == 200, ok.text
    shown = ok.json()
    assert (shown["authority_document"], shown["agent_method"]) == ("family_register", "in_person")


def test_authority_fields_are_only_for_agents(
    rt: Runtime, client: TestClient, auth: dict[str, str]
) -> None:
    request = make_request(rt, "suspension")
    response = fire(
        client,
        auth,
        request.id,
        "verify_identity",
        method="in_person",
        evidence=EVIDENCE,
        authority_document="family_register",
    )
    assert response.status_code == 422
    assert "authority_document" in response.json()["errors"]


def test_every_workflow_lists_authority_documents(rt: Runtime) -> None:
    for wf in rt.definitions.workflows.values():
        assert wf.authority_documents, wf.id


def test_the_principal_is_told_when_an_agent_files(rt: Runtime) -> None:
    request = make_request(rt, "disclosure", agent=AGENT)
    (notice,) = letters(rt, request.id, "agent_notice")
    assert notice.recipient == "taro@example.jp"  # the principal's own address
    assert AGENT["name"] in notice.body
    assert "法定代理人" in notice.body
    assert "お心当たりがない場合" in notice.body  # how to object
    (ack,) = letters(rt, request.id, "acknowledgment")
    assert ack.recipient == AGENT["email"]
    assert "ご本人：山田 太郎 様（代理人：佐藤 花子 様）" in ack.body
    # No agent, no notice.
    assert letters(rt, make_request(rt, "disclosure").id, "agent_notice") == []


# Disclosure method


def test_no_method_is_stored_that_the_requester_did_not_choose(
    client: TestClient, auth: dict[str, str], rt: Runtime
) -> None:
    created = client.post("/api/v1/requests", json=request_body("disclosure")).json()
    shown = client.get(f"/api/v1/requests/{created['id']}", headers=auth).json()
    assert shown["disclosure_method"] is None
    (ack,) = letters(rt, created["id"], "acknowledgment")
    # The method the company presents is shown, so the requester can object (Guideline 3-8-2).
    assert "ご指定がございませんでしたので" in ack.body


def test_paper_needs_a_postal_address_and_the_acknowledgment_shows_the_method(
    client: TestClient, rt: Runtime
) -> None:
    body = request_body("disclosure", disclosure_method="paper")
    response = client.post("/api/v1/requests", json=body)
    assert response.status_code == 422
    assert "postal_address" in response.json()["errors"]
    body["postal_address"] = "東京都千代田区千代田1-1"
    created = client.post("/api/v1/requests", json=body)
    assert created.status_code == 201
    (ack,) = letters(rt, created.json()["id"], "acknowledgment")
    assert "ご指定の開示の方法：書面の交付による方法（郵送）" in ack.body


def test_fulfilling_a_disclosure_needs_the_method_used(
    rt: Runtime, client: TestClient, auth: dict[str, str]
) -> None:
    request = make_request(rt, "disclosure", "identity_verified")
    assert pay(client, auth, request.id).status_code == 200
    missing = fire(client, auth, request.id, "fulfill", summary="開示しました。")
    assert missing.status_code == 422
    assert "method_used" in missing.json()["errors"]
    unknown = fire(
        client, auth, request.id, "fulfill", summary="開示", method_used="carrier_pigeon"
    )
    assert unknown.status_code == 422
    assert "method_used" in unknown.json()["errors"]
    ok = fire(client, auth, request.id, "fulfill", summary="開示しました。", method_used="paper")
    assert ok.status_code == 200, ok.text  # none was designated: any offered method
    assert ok.json()["method_used"] == "paper"


def test_a_non_disclosure_type_takes_no_method(
    rt: Runtime, client: TestClient, auth: dict[str, str]
) -> None:
    request = make_request(rt, "correction", "identity_verified")
    response = fire(
        client, auth, request.id, "fulfill", summary="訂正しました。", method_used="paper"
    )
    assert response.status_code == 422
    assert "method_used" in response.json()["errors"]


@pytest.mark.parametrize("language", ["ja", "en"])
def test_another_method_than_the_designated_one_needs_the_difficulty_and_notifies_it(
    language: str, rt: Runtime, client: TestClient, auth: dict[str, str]
) -> None:
    request = make_request(
        rt,
        "third_party_record_disclosure",
        "identity_verified",
        disclosure_method="electronic",
        language=language,
    )
    assert pay(client, auth, request.id).status_code == 200
    silent = fire(client, auth, request.id, "fulfill", summary="開示", method_used="paper")
    assert silent.status_code == 422
    assert "method_difficulty" in silent.json()["errors"]
    difficulty = "旧システムの帳票のみで保存されているため"
    ok = fire(
        client,
        auth,
        request.id,
        "fulfill",
        summary="書面でお送りしました。",
        method_used="paper",
        method_difficulty=difficulty,
    )
    assert ok.status_code == 200, ok.text
    (letter,) = letters(rt, request.id, "fulfilled")
    assert difficulty in letter.body
    if language == "ja":
        assert "ご指定の方法（電磁的記録の提供による方法" in letter.body
        assert "第33条第5項において準用する同条第3項に基づきお知らせいたします" in letter.body
    else:
        assert "Disclosure by the method you designated (electronic records" in letter.body
        assert "Art. 33(3), as applied by Art. 33(5)" in letter.body


def test_the_same_method_takes_no_difficulty(
    rt: Runtime, client: TestClient, auth: dict[str, str]
) -> None:
    request = make_request(rt, "disclosure", "identity_verified", disclosure_method="electronic")
    assert pay(client, auth, request.id).status_code == 200
    response = fire(
        client,
        auth,
        request.id,
        "fulfill",
        summary="開示",
        method_used="electronic",
        method_difficulty="なし",
    )
    assert response.status_code == 422
    assert "method_difficulty" in response.json()["errors"]


# Fees


def test_disclosure_waits_for_payment_and_the_fee_reason_fits_only_while_unpaid(
    rt: Runtime, client: TestClient, auth: dict[str, str]
) -> None:
    request = make_request(rt, "disclosure", "identity_verified")
    shown = client.get(f"/api/v1/requests/{request.id}", headers=auth).json()
    assert (shown["fee_due_jpy"], shown["payments"]) == (1000, [])
    early = fire(client, auth, request.id, "fulfill", summary="開示", method_used="electronic")
    assert early.status_code == 422
    assert "payments" in early.json()["errors"]
    paid = pay(client, auth, request.id, 600)
    assert paid.status_code == 200
    assert paid.json()["fee_due_jpy"] == 400
    paid = pay(client, auth, request.id, 400).json()
    assert paid["fee_due_jpy"] == 0
    assert [p["amount_jpy"] for p in paid["payments"]] == [600, 400]
    assert paid["history"][-1]["kind"] == "payment_recorded"
    refused = fire(
        client, auth, request.id, "refuse", reason_code="PROC_FEE_UNPAID", explanation="未納"
    )
    assert refused.status_code == 422
    assert "reason_code" in refused.json()["errors"]
    assert (
        fire(
            client, auth, request.id, "fulfill", summary="開示", method_used="electronic"
        ).status_code
        == 200
    )


def test_a_request_is_shown_with_its_payments_read_only_when_its_history_records_one(
    rt: Runtime, client: TestClient, auth: dict[str, str]
) -> None:
    """A payment's row commits with its ``payment_recorded`` event: a history without one
    needs no read of the payments table, and a history with one still shows every payment."""
    request = make_request(rt, "disclosure", "identity_verified")
    reads: list[str] = []

    def seen(_c: Any, _cur: Any, statement: str, *_args: Any) -> None:
        if "FROM payments" in statement:
            reads.append(statement)

    event.listen(rt.db, "before_cursor_execute", seen)
    try:
        shown = client.get(f"/api/v1/requests/{request.id}", headers=auth).json()
        assert (shown["fee_due_jpy"], shown["payments"], reads) == (1000, [], [])
        assert pay(client, auth, request.id, 600).status_code == 200
        reads.clear()
        shown = client.get(f"/api/v1/requests/{request.id}", headers=auth).json()
    finally:
        event.remove(rt.db, "before_cursor_execute", seen)
    assert [p["amount_jpy"] for p in shown["payments"]] == [600]
    assert shown["fee_due_jpy"] == 400
    assert len(reads) == 1


def test_payments_need_a_fee_an_open_request_and_a_past_date(
    rt: Runtime, client: TestClient, auth: dict[str, str]
) -> None:
    no_fee = make_request(rt, "correction")
    assert pay(client, auth, no_fee.id).status_code == 422
    closed = make_request(rt, "disclosure", "withdrawn")
    assert pay(client, auth, closed.id).status_code == 409
    request = make_request(rt, "disclosure")
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    response = client.post(
        f"/api/v1/requests/{request.id}/payments",
        json={"amount_jpy": 1000, "method": "cash", "paid_at": future},
        headers=auth,
    )
    assert response.status_code == 422
    assert "paid_at" in response.json()["errors"]
    assert pay(client, auth, "nope").status_code == 404


# Outcomes


@pytest.mark.parametrize("language", ["ja", "en"])
@pytest.mark.parametrize(
    ("request_type", "article"),
    [
        ("disclosure", ("第33条第3項", "Art. 33(3)")),
        ("correction", ("第34条第3項", "Art. 34(3)")),
        ("suspension", ("第35条第7項", "Art. 35(7)")),
        ("purpose_notice", ("第32条第3項", "Art. 32(3)")),
    ],
)
def test_not_held_is_an_answer_citing_the_notice_article(
    request_type: str,
    article: tuple[str, str],
    language: str,
    rt: Runtime,
    client: TestClient,
    auth: dict[str, str],
) -> None:
    request = make_request(rt, request_type, "identity_verified", language=language, agent=AGENT)
    empty = fire(client, auth, request.id, "report_not_held", explanation=" ")
    assert empty.status_code == 422
    response = fire(client, auth, request.id, "report_not_held", explanation="登録はありません。")
    assert response.status_code == 200
    assert response.json()["state"] == "not_held"
    (letter,) = letters(rt, request.id, "not_held")
    assert article[0 if language == "ja" else 1] in letter.body
    assert "登録はありません。" in letter.body
    principal = (
        "ご本人：山田 太郎 様（代理人：佐藤 花子 様）"
        if language == "ja"
        else "Principal: 山田 太郎 (agent: 佐藤 花子)"
    )
    assert principal in letter.body
    # Neutral words: no refusal, no apology, nothing that names an exclusion.
    for word in ("応じることはいたしかねます", "申し訳", "unable", "sorry", "存否"):
        assert word not in letter.body


def test_substitute_states_the_measure_and_only_where_stopping_is_asked(
    rt: Runtime, client: TestClient, auth: dict[str, str]
) -> None:
    request = make_request(rt, "third_party_cessation", "identity_verified")
    missing = fire(client, auth, request.id, "substitute", explanation="困難です。")
    assert missing.status_code == 422
    assert "measure" in missing.json()["errors"]
    ok = fire(
        client,
        auth,
        request.id,
        "substitute",
        measure="提供先に利用停止を要請しました。",
        explanation="提供済みの記録を回収することは困難です。",
    )
    assert ok.status_code == 200
    assert ok.json()["state"] == "substituted"
    (letter,) = letters(rt, request.id, "substituted")
    assert "提供先に利用停止を要請しました。" in letter.body
    assert "第35条第7項" in letter.body
    assert "第36条" in letter.body
    correction = make_request(rt, "correction", "identity_verified")
    refused = fire(client, auth, correction.id, "substitute", measure="x", explanation="y")
    assert refused.status_code == 409


def test_a_request_waiting_for_the_requester_can_end_with_proc_not_specified(
    rt: Runtime, client: TestClient, auth: dict[str, str]
) -> None:
    request = make_request(rt, "disclosure", "awaiting_requester")
    substantive = fire(
        client, auth, request.id, "refuse", reason_code="DISC_HARM_RIGHTS", explanation="x"
    )
    assert substantive.status_code == 422
    ok = fire(
        client,
        auth,
        request.id,
        "refuse",
        reason_code="PROC_NOT_SPECIFIED",
        explanation="対象をお尋ねしましたが、ご回答がありませんでした。",
    )
    assert ok.status_code == 200
    assert ok.json()["state"] == "refused"
    (letter,) = letters(rt, request.id, "refused")
    assert "第37条第2項" in letter.body
    assert "第33条第3項" in letter.body
    # PROC_NOT_SPECIFIED fits only once the requester was asked.
    fresh = make_request(rt, "disclosure")
    early = fire(
        client, auth, fresh.id, "refuse", reason_code="PROC_NOT_SPECIFIED", explanation="x"
    )
    assert early.status_code == 422


def test_a_handlers_withdrawal_needs_a_note(
    rt: Runtime, client: TestClient, auth: dict[str, str]
) -> None:
    request = make_request(rt, "disclosure")
    response = fire(client, auth, request.id, "withdraw")
    assert response.status_code == 422
    assert "note" in response.json()["errors"]
    assert fire(client, auth, request.id, "withdraw", note="  ").status_code == 422
    ok = fire(client, auth, request.id, "withdraw", note="本人から電話で取下げの申出")
    assert ok.status_code == 200
    assert ok.json()["history"][-1]["detail"]["note"] == "本人から電話で取下げの申出"


def test_legal_reasons_filter_by_type_and_state(client: TestClient) -> None:
    everything = client.get("/api/v1/legal-reasons").json()
    assert len(everything) == 20
    waiting = client.get(
        "/api/v1/legal-reasons", params={"type": "correction", "state": "awaiting_requester"}
    ).json()
    assert {r["code"] for r in waiting} == {
        "PROC_NONCONFORMING",
        "PROC_ID_UNVERIFIED",
        "PROC_AGENT_INVALID",
        "PROC_NOT_SPECIFIED",
    }
    fee = client.get(
        "/api/v1/legal-reasons", params={"type": "disclosure", "state": "received"}
    ).json()
    assert "PROC_FEE_UNPAID" in {r["code"] for r in fee}
    assert client.get("/api/v1/legal-reasons", params={"type": "nope"}).status_code == 404
