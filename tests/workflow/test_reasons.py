"""Each legal reason fits only the types and states the reference's catalog gives it."""

from __future__ import annotations

import pytest

from dsrflow.workflow.definitions import load_definitions
from dsrflow.workflow.engine import GUARDS, Engine, InvalidFields, Subject
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
        with pytest.raises(InvalidFields) as caught:
            ENGINE.fire(request_type, Subject(state), "refuse", fields)
        assert "reason_code" in caught.value.errors


def test_every_reason_has_japanese_and_english_text() -> None:
    for reason in ENGINE.definitions.reasons.values():
        assert reason.statutory_text.ja and reason.statutory_text.en
        assert reason.label.ja and reason.label.en
