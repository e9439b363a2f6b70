"""Every trigger from every state, for every type, through the API; reasons; explanations."""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from sqlmodel import Session

from dsrflow.app import create_app
from dsrflow.requests import service
from dsrflow.requests.schemas import PaymentIn
from dsrflow.runtime import Runtime
from tests.conftest import WORKFLOWS, make_request, request_body

TYPES = (
    "disclosure",
    "third_party_record_disclosure",
    "correction",
    "suspension",
    "third_party_cessation",
    "purpose_notice",
)
STATES = (
    "received",
    "identity_verified",
    "awaiting_requester",
    "fulfilled",
    "refused",
    "not_held",
    "substituted",
    "withdrawn",
)
SUBSTITUTES = {"suspension", "third_party_cessation"}

# The contract's table (DESIGN.md), written out independently of workflows/.
ALLOWED = {
    "received": {"verify_identity", "request_info", "refuse", "withdraw"},
    "identity_verified": {"request_info", "fulfill", "report_not_held", "refuse", "withdraw"},
    "awaiting_requester": {"info_received", "refuse", "withdraw"},
    "fulfilled": set(),
    "refused": set(),
    "not_held": set(),
    "substituted": set(),
    "withdrawn": set(),
}


def allowed(request_type: str, state: str) -> set[str]:
    extra = (
        {"substitute"} if state == "identity_verified" and request_type in SUBSTITUTES else set()
    )
    return ALLOWED[state] | extra


def states_of(request_type: str) -> list[str]:
    return [s for s in STATES if s != "substituted" or request_type in SUBSTITUTES]


EXPECTED_DEST = {
    ("received", "verify_identity"): "identity_verified",
    ("received", "request_info"): "awaiting_requester",
    ("received", "refuse"): "refused",
    ("received", "withdraw"): "withdrawn",
    ("identity_verified", "request_info"): "awaiting_requester",
    ("identity_verified", "fulfill"): "fulfilled",
    ("identity_verified", "report_not_held"): "not_held",
    ("identity_verified", "substitute"): "substituted",
    ("awaiting_requester", "refuse"): "refused",
    ("identity_verified", "refuse"): "refused",
    ("identity_verified", "withdraw"): "withdrawn",
    ("awaiting_requester", "info_received"): "received",  # it left "received" (make_request)
    ("awaiting_requester", "withdraw"): "withdrawn",
}


def body_for(
    trigger: str, state: str, rt: Runtime | None = None, request_type: str = ""
) -> dict[str, Any]:
    reason = {
        "received": "PROC_ID_UNVERIFIED",
        "awaiting_requester": "PROC_NOT_SPECIFIED",
    }.get(state, "PROC_NONCONFORMING")
    fulfill: dict[str, Any] = {"summary": "ご請求の個人データを開示しました。"}
    if rt is not None and rt.definitions.workflow(request_type).disclosure_methods:
        fulfill["method_used"] = rt.definitions.workflow(request_type).disclosure_methods[0]
    return {
        "verify_identity": {"method": "id_document_copy", "evidence": "運転免許証の写し"},
        "request_info": {"message": "対象のサービスを教えてください。"},
        "info_received": {"note": "電話で回答を得た"},
        "fulfill": fulfill,
        "report_not_held": {"explanation": "ご請求のサービスには登録がございません。"},
        "substitute": {"measure": "利用を停止しました。", "explanation": "消去は困難です。"},
        "refuse": {"reason_code": reason, "explanation": "所定の手続によるご請求ではありません。"},
        "withdraw": {"note": "本人から電話"},
    }[trigger]


def pay(rt: Runtime, request_id: str) -> None:
    with Session(rt.db) as s:
        service.record_payment(
            rt, s, request_id, PaymentIn(amount_jpy=1000, method="bank_transfer"), actor="test"
        )


def fire(client: TestClient, auth: dict[str, str], request_id: str, trigger: str, **fields: Any):  # type: ignore[no-untyped-def]
    return client.post(
        f"/api/v1/requests/{request_id}/transitions",
        json={"trigger": trigger, **fields},
        headers=auth,
    )


@pytest.mark.parametrize("request_type", TYPES)
def test_every_trigger_from_every_state(
    request_type: str, rt: Runtime, client: TestClient, auth: dict[str, str]
) -> None:
    triggers = set().union(*ALLOWED.values())
    for state in states_of(request_type):
        # Not allowed: 409 with the current state and version, and nothing changes.
        request = make_request(rt, request_type, state)
        shown = client.get(f"/api/v1/requests/{request.id}", headers=auth).json()
        assert set(shown["allowed_triggers"]) == allowed(request_type, state), (request_type, state)
        for trigger in sorted(triggers - allowed(request_type, state)):
            body = body_for(trigger, state, rt, request_type)
            response = fire(client, auth, request.id, trigger, **body)
            assert response.status_code == 409, (request_type, state, trigger, response.text)
            problem = response.json()
            assert response.headers["content-type"].startswith("application/problem+json")
            assert (problem["state"], problem["version"]) == (state, request.version)
        after = client.get(f"/api/v1/requests/{request.id}", headers=auth).json()
        assert (after["state"], after["version"]) == (state, request.version)
        # Allowed: each succeeds (on a fresh request) and lands where the contract says.
        for trigger in sorted(allowed(request_type, state)):
            fresh = make_request(rt, request_type, state)
            if trigger == "fulfill" and rt.definitions.workflow(request_type).fee:
                pay(rt, fresh.id)
            body = body_for(trigger, state, rt, request_type)
            response = fire(client, auth, fresh.id, trigger, **body)
            assert response.status_code == 200, (request_type, state, trigger, response.text)
            result = response.json()
            assert result["state"] == EXPECTED_DEST[(state, trigger)]
            assert result["version"] == fresh.version + 1
            assert result["history"][-1]["trigger"] == trigger


def test_info_received_returns_to_the_state_it_left(
    rt: Runtime, client: TestClient, auth: dict[str, str]
) -> None:
    request = make_request(rt, "correction", "identity_verified")
    assert (
        fire(client, auth, request.id, "request_info", message="訂正後の住所は？").json()["state"]
        == "awaiting_requester"
    )
    response = fire(client, auth, request.id, "info_received")
    assert response.json()["state"] == "identity_verified"
    assert "fulfill" in response.json()["allowed_triggers"]


def test_unknown_trigger_is_409(rt: Runtime, client: TestClient, auth: dict[str, str]) -> None:
    request = make_request(rt, "disclosure")
    response = fire(client, auth, request.id, "to_fulfilled")
    assert response.status_code == 409
    assert "to_fulfilled" in response.json()["detail"]


@pytest.mark.parametrize(
    ("fields", "bad_field"),
    [
        ({"reason_code": "PROC_ID_UNVERIFIED"}, "explanation"),
        ({"reason_code": "PROC_ID_UNVERIFIED", "explanation": "   "}, "explanation"),
        ({"explanation": "理由"}, "reason_code"),
        ({"reason_code": "NO_SUCH_REASON", "explanation": "理由"}, "reason_code"),
        # A substantive reason does not fit before identity is verified.
        ({"reason_code": "DISC_HARM_RIGHTS", "explanation": "理由"}, "reason_code"),
        # Non-existence is no reason code.
        ({"reason_code": "DISC_NOT_EXIST", "explanation": "理由"}, "reason_code"),
        # A correction reason does not fit a disclosure request.
        ({"reason_code": "CORR_NOT_NEEDED", "explanation": "理由"}, "reason_code"),
    ],
)
def test_refusal_needs_a_fitting_reason_and_an_explanation(
    fields: dict[str, Any], bad_field: str, rt: Runtime, client: TestClient, auth: dict[str, str]
) -> None:
    request = make_request(rt, "disclosure")
    response = fire(client, auth, request.id, "refuse", **fields)
    assert response.status_code == 422, response.text
    assert bad_field in response.json()["errors"]
    after = client.get(f"/api/v1/requests/{request.id}", headers=auth).json()
    assert after["state"] == "received"
    assert after["version"] == request.version


def test_identity_method_must_be_accepted(
    rt: Runtime, client: TestClient, auth: dict[str, str]
) -> None:
    request = make_request(rt, "disclosure")
    response = fire(client, auth, request.id, "verify_identity", method="telepathy")
    assert response.status_code == 422
    assert "method" in response.json()["errors"]
    response = fire(client, auth, request.id, "verify_identity")
    assert response.status_code == 422


def test_partial_fulfilment_checks_each_withheld_part(
    rt: Runtime, client: TestClient, auth: dict[str, str]
) -> None:
    request = make_request(rt, "disclosure", "identity_verified")
    pay(rt, request.id)
    bad = fire(
        client,
        auth,
        request.id,
        "fulfill",
        summary="一部開示",
        method_used="electronic",
        withheld=[
            {"reason_code": "CORR_NOT_NEEDED", "explanation": "x"},
            {"reason_code": "DISC_HARM_RIGHTS", "explanation": ""},
        ],
    )
    assert bad.status_code == 422
    assert set(bad.json()["errors"]) == {"withheld[0].reason_code", "withheld[1].explanation"}
    good = fire(
        client,
        auth,
        request.id,
        "fulfill",
        summary="一部開示",
        method_used="electronic",
        withheld=[{"reason_code": "DISC_HARM_RIGHTS", "explanation": "第三者の情報を含むため"}],
    )
    assert good.status_code == 200
    assert good.json()["history"][-1]["detail"]["withheld"][0]["reason_code"] == "DISC_HARM_RIGHTS"


def test_fields_a_trigger_does_not_take_are_refused(
    rt: Runtime, client: TestClient, auth: dict[str, str]
) -> None:
    request = make_request(rt, "disclosure")
    response = fire(client, auth, request.id, "withdraw", reason_code="PROC_NONCONFORMING")
    assert response.status_code == 422
    assert "reason_code" in response.json()["errors"]
    assert fire(client, auth, request.id, "withdraw", colour="blue").status_code == 422
    # A handler's withdrawal says why.
    response = fire(client, auth, request.id, "withdraw")
    assert response.status_code == 422
    assert "note" in response.json()["errors"]


def test_stale_expected_version_is_409_with_current_state(
    rt: Runtime, client: TestClient, auth: dict[str, str]
) -> None:
    request = make_request(rt, "suspension")
    ok = fire(
        client,
        auth,
        request.id,
        "verify_identity",
        method="in_person",
        evidence="運転免許証を窓口で確認",
        expected_version=request.version,
    )
    assert ok.status_code == 200
    stale = fire(
        client,
        auth,
        request.id,
        "refuse",
        expected_version=request.version,
        reason_code="PROC_NONCONFORMING",
        explanation="x",
    )
    assert stale.status_code == 409
    problem = stale.json()
    assert problem["state"] == "identity_verified"
    assert problem["version"] == request.version + 1
    assert "fulfill" in problem["allowed_triggers"]


def test_editing_a_workflow_file_changes_behaviour(
    rt: Runtime, tmp_path: Path, auth: dict[str, str]
) -> None:
    """A privacy officer's edit to workflows/ takes effect on restart, with no Python change."""
    workflows = tmp_path / "workflows"
    shutil.copytree(WORKFLOWS, workflows)
    path = workflows / "correction.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    for transition in data["transitions"]:
        if transition["trigger"] == "refuse":
            transition["source"] = ["identity_verified"]  # no refusal before identity
    data["deadline"]["days"] = 30
    data["deadline"]["confirm_past_art39"] = True  # past the Art. 39 date, knowingly
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    edited = Runtime.load(rt.settings.model_copy(update={"workflows_dir": workflows}), db=rt.db)
    with TestClient(create_app(edited)) as client:
        created = client.post("/api/v1/requests", json=request_body("correction")).json()
        due = datetime.fromisoformat(created["due_at"]) - datetime.fromisoformat(
            created["received_at"]
        )
        assert timedelta(days=30) <= due < timedelta(days=31)
        refused = fire(
            client, auth, created["id"], "refuse", reason_code="PROC_NONCONFORMING", explanation="x"
        )
        assert refused.status_code == 409
        assert "refuse" not in refused.json()["allowed_triggers"]
