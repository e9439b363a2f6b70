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
# From ../shared/reference/appi-request-handling.md, written out here on purpose.
CATALOG = {
    "DISC_HARM_RIGHTS": DISC,
    "DISC_BUSINESS_IMPEDIMENT": DISC,
    "DISC_VIOLATES_LAW": DISC,
    "DISC_NOT_EXIST": DISC,
    "DISC_OTHER_LAW_REGIME": {"disclosure"},
    "TPR_EXCLUDED": {"third_party_record_disclosure"},
    "TPR_NOT_A_RECORD": {"third_party_record_disclosure"},
    "NOT_HELD_DATA": ALL,
    "PURPOSE_ALREADY_KNOWN": {"purpose_notice"},
    "PURPOSE_EXEMPT": {"purpose_notice"},
    "CORR_NOT_INACCURATE": {"correction"},
    "CORR_NOT_NEEDED": {"correction"},
    "CORR_OTHER_LAW": {"correction"},
    "CEASE_NO_VIOLATION": CEASE,
    "CEASE_P5_NOT_MET": CEASE,
    "CEASE_ALTERNATIVE_MEASURE": CEASE,
    "PROC_NONCONFORMING": ALL,
    "PROC_ID_UNVERIFIED": ALL,
    "PROC_AGENT_INVALID": ALL,
    "PROC_FEE_UNPAID": {"disclosure", "third_party_record_disclosure", "purpose_notice"},
}

ENGINE = Engine(load_definitions(WORKFLOWS, guards=GUARDS))


def test_the_catalog_has_exactly_the_reference_codes() -> None:
    assert set(ENGINE.definitions.reasons) == set(CATALOG)


@pytest.mark.parametrize("code", sorted(CATALOG))
@pytest.mark.parametrize("state", ["received", "identity_verified"])
@pytest.mark.parametrize("request_type", sorted(ALL))
def test_reason_fits_only_where_the_catalog_says(code: str, state: str, request_type: str) -> None:
    # PROC_* fit before identity is verified; substantive reasons only after.
    fits = request_type in CATALOG[code] and (
        state == "identity_verified" or code.startswith("PROC_")
    )
    fields = {"reason_code": code, "explanation": "説明"}
    if fits:
        outcome = ENGINE.fire(request_type, Subject(state), "refuse", fields)
        assert outcome.dest == "refused"
    else:
        with pytest.raises(Invalid) as caught:
            ENGINE.fire(request_type, Subject(state), "refuse", fields)
        assert "reason_code" in caught.value.errors


def test_every_reason_has_japanese_and_english_text() -> None:
    for reason in ENGINE.definitions.reasons.values():
        assert reason.statutory_text.ja and reason.statutory_text.en
        assert reason.label.ja and reason.label.en


def test_every_reason_has_a_formal_japanese_citation() -> None:
    for reason in ENGINE.definitions.reasons.values():
        citation = reason.citation.ja
        assert citation.startswith("個人情報の保護に関する法律"), reason.code
        assert "第" in citation and "条" in citation, reason.code
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
        "requester_name": "山田 太郎",
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
                "disclosure", Subject("received"), "verify_identity", {"method": "in_person"}
            )
            results.add(outcome.dest)
        return ",".join(sorted(results))

    with ThreadPoolExecutor(16) as pool:
        assert set(pool.map(fire, range(16))) == {"identity_verified"}
