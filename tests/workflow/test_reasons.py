"""Each legal reason fits only the types and states the reference's catalog gives it."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

import pytest

from dsrflow.errors import Invalid
from dsrflow.outbound_mail.render import LetterRenderer
from dsrflow.requests.letters import reason_context
from dsrflow.runtime import Runtime
from dsrflow.workflow.definitions import load_definitions
from dsrflow.workflow.engine import GUARDS, Engine, Subject
from tests.conftest import WORKFLOWS

ALL = {
    "disclosure",
    "third_party_record_disclosure",
    "correction",
    "suspension",
    "third_party_cessation",
    "purpose_notice",
}
DISC = {"disclosure", "third_party_record_disclosure"}
CEASE = {"suspension", "third_party_cessation"}
# From ../shared/reference/appi-request-handling.md as amended after the legal review, written
# out here on purpose: code -> (types, states, uses).
FEE = {"disclosure", "third_party_record_disclosure", "purpose_notice"}
PROC_STATES = {"received", "identity_verified", "awaiting_requester"}
AFTER = {"identity_verified"}
BOTH = {"refuse", "withheld"}
REFUSE = {"refuse"}
CATALOG: dict[str, tuple[set[str], set[str], set[str]]] = {
    "DISC_HARM_RIGHTS": (DISC, AFTER, BOTH),
    "DISC_BUSINESS_IMPEDIMENT": (DISC, AFTER, BOTH),
    "DISC_VIOLATES_LAW": (DISC, AFTER, BOTH),
    "DISC_OTHER_LAW_REGIME": ({"disclosure"}, AFTER, BOTH),
    "TPR_NOT_A_RECORD": ({"third_party_record_disclosure"}, AFTER, BOTH),
    "NOT_HELD_DATA": (ALL, AFTER, BOTH),
    "PURPOSE_ALREADY_KNOWN": ({"purpose_notice"}, AFTER, BOTH),
    "PURPOSE_EXEMPT": ({"purpose_notice"}, AFTER, BOTH),
    "CORR_NOT_INACCURATE": ({"correction"}, AFTER, BOTH),
    "CORR_NOT_NEEDED": ({"correction"}, AFTER, BOTH),
    "CORR_OTHER_LAW": ({"correction"}, AFTER, BOTH),
    "CEASE_NO_VIOLATION_USE": ({"suspension"}, AFTER, BOTH),
    "CEASE_NO_VIOLATION_PROVISION": ({"third_party_cessation"}, AFTER, BOTH),
    "CEASE_P5_NOT_MET": (CEASE, AFTER, BOTH),
    "CEASE_NECESSARY_LIMIT": (CEASE, AFTER, {"withheld"}),
    "PROC_NONCONFORMING": (ALL, PROC_STATES, REFUSE),
    "PROC_ID_UNVERIFIED": (ALL, PROC_STATES, REFUSE),
    "PROC_AGENT_INVALID": (ALL, PROC_STATES, REFUSE),
    "PROC_FEE_UNPAID": (FEE, PROC_STATES, REFUSE),
    "PROC_NOT_SPECIFIED": (ALL, {"awaiting_requester"}, REFUSE),
}
# Retired as reason codes: non-existence is report_not_held, a measure instead is substitute.
RETIRED = ("DISC_NOT_EXIST", "TPR_EXCLUDED", "CEASE_ALTERNATIVE_MEASURE")
STATES = ("received", "identity_verified", "awaiting_requester")

ENGINE = Engine(load_definitions(WORKFLOWS, guards=GUARDS))


def test_the_catalog_has_exactly_the_reference_codes() -> None:
    assert set(ENGINE.definitions.reasons) == set(CATALOG)


@pytest.mark.parametrize("code", sorted(CATALOG))
@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("request_type", sorted(ALL))
def test_reason_fits_only_where_the_catalog_says(code: str, state: str, request_type: str) -> None:
    types, states, uses = CATALOG[code]
    fits = request_type in types and state in states and "refuse" in uses
    fields = {"reason_code": code, "explanation": "説明"}
    # A fee reason fits only while the fee is unpaid.
    subject = Subject(state, fee_outstanding=True)
    if fits:
        outcome = ENGINE.fire(request_type, subject, "refuse", fields)
        assert outcome.dest == "refused"
    else:
        with pytest.raises(Invalid) as caught:
            ENGINE.fire(request_type, subject, "refuse", fields)
        assert "reason_code" in caught.value.errors


@pytest.mark.parametrize("code", sorted(CATALOG))
@pytest.mark.parametrize("request_type", sorted(ALL))
def test_withheld_parts_take_only_substantive_reasons(code: str, request_type: str) -> None:
    types, states, uses = CATALOG[code]
    fits = request_type in types and "identity_verified" in states and "withheld" in uses
    wf = ENGINE.definitions.workflow(request_type)
    fields: dict[str, Any] = {
        "summary": "開示しました。",
        "withheld": [{"reason_code": code, "explanation": "説明"}],
    }
    if wf.disclosure_methods:
        fields["method_used"] = wf.disclosure_methods[0]
    subject = Subject("identity_verified")
    if fits:
        assert ENGINE.fire(request_type, subject, "fulfill", fields).dest == "fulfilled"
    else:
        with pytest.raises(Invalid) as caught:
            ENGINE.fire(request_type, subject, "fulfill", fields)
        assert "withheld[0].reason_code" in caught.value.errors


@pytest.mark.parametrize("code", RETIRED)
def test_retired_codes_are_no_reason_and_say_what_to_fire(code: str) -> None:
    assert code not in ENGINE.definitions.reasons
    with pytest.raises(Invalid) as caught:
        ENGINE.fire(
            "third_party_record_disclosure"
            if code != "CEASE_ALTERNATIVE_MEASURE"
            else "suspension",
            Subject("identity_verified"),
            "refuse",
            {"reason_code": code, "explanation": "説明"},
        )
    assert "no reason code" in caught.value.errors["reason_code"]


@pytest.mark.parametrize("request_type", sorted(FEE))
def test_the_fee_reason_stops_fitting_once_paid(request_type: str) -> None:
    fields = {"reason_code": "PROC_FEE_UNPAID", "explanation": "未納です。"}
    assert ENGINE.fire(request_type, Subject("received", fee_outstanding=True), "refuse", fields)
    with pytest.raises(Invalid) as caught:
        ENGINE.fire(request_type, Subject("received", fee_outstanding=False), "refuse", fields)
    assert "payments cover" in caught.value.errors["reason_code"]


def test_legal_reasons_for_a_type_and_state_list_only_what_fits() -> None:
    listed = {r.code for r in ENGINE.definitions.reasons_for("correction", "awaiting_requester")}
    assert listed == {
        c for c, (t, s, _) in CATALOG.items() if "correction" in t and "awaiting_requester" in s
    }
    assert "PROC_FEE_UNPAID" not in listed  # correction has no fee


def test_every_reason_has_japanese_and_english_text() -> None:
    for reason in ENGINE.definitions.reasons.values():
        assert reason.statutory_text.ja
        assert reason.statutory_text.en
        assert reason.label.ja
        assert reason.label.en


def test_every_reason_has_a_formal_japanese_citation() -> None:
    for reason in ENGINE.definitions.reasons.values():
        citation = reason.citation.ja
        assert citation.startswith("個人情報の保護に関する法律"), reason.code
        assert "第" in citation, reason.code
        assert "条" in citation, reason.code
        assert reason.citation.en.startswith("Act on the Protection of Personal Information, "), (
            reason.code
        )


@pytest.mark.parametrize("code", sorted(CATALOG))
@pytest.mark.parametrize("language", ["ja", "en"])
def test_refusal_letter_cites_the_reason(code: str, language: str) -> None:
    # The reason's context comes from the service, as in letter_context.
    rt = cast(Runtime, SimpleNamespace(definitions=ENGINE.definitions))
    context: dict[str, Any] = {
        "company_name": "株式会社サンプル",
        "handler_email": "privacy@example.jp",
        "reference": "DSR-2024-0001",
        "type_title": "保有個人データの開示",
        "principal_name": "山田 太郎",
        "agent_name": None,
        "notice": {
            "article": "第33条第3項",
            "request": "ご請求",
            "refused": "開示しない旨の決定をいたしました",
            "withheld": "",
            "not_held": "",
        },
        "reason": reason_context(rt, code, language),
        "explanation": "説明",
    }
    letter = LetterRenderer(WORKFLOWS / "templates").render("refused", language, context)
    citation = ENGINE.definitions.reasons[code].citation.for_language(language)
    prefix = "根拠条項：" if language == "ja" else "Legal basis: "
    assert prefix + citation in letter.body


def test_the_shared_machines_fire_safely_from_many_threads() -> None:
    # Regression: equal-looking subjects and the shared model list broke under concurrency.
    import threading
    from concurrent.futures import ThreadPoolExecutor

    barrier = threading.Barrier(16)

    def fire(i: int) -> str:
        barrier.wait()
        results = set()
        for _ in range(200):
            outcome = ENGINE.fire(
                "disclosure",
                Subject("received"),
                "verify_identity",
                {"method": "in_person", "evidence": "運転免許証"},
            )
            results.add(outcome.dest)
        return ",".join(sorted(results))

    with ThreadPoolExecutor(16) as pool:
        assert set(pool.map(fire, range(16))) == {"identity_verified"}
