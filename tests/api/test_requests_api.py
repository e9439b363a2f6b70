"""Public intake, the handler queue, and errors as problem details."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient
from sqlmodel import Session, select

from dsrflow.app import create_app
from dsrflow.outbound_mail.models import OutboxMessage
from dsrflow.runtime import Runtime
from tests.conftest import make_request, request_body


def test_intake_answers_201_with_reference_and_due_date(
    rt: Runtime, client: TestClient, auth: dict[str, str]
) -> None:
    response = client.post("/api/v1/requests", json=request_body("disclosure"))
    assert response.status_code == 201, response.text
    created = response.json()
    assert set(created) == {"id", "reference", "type", "state", "received_at", "due_at"}
    year = datetime.now(rt.settings.tz).year
    assert created["reference"] == f"DSR-{year}-000001"
    assert created["state"] == "received"
    received = datetime.fromisoformat(created["received_at"])
    due = datetime.fromisoformat(created["due_at"])
    assert timedelta(days=14) <= due - received < timedelta(days=15)
    second = client.post("/api/v1/requests", json=request_body("correction")).json()
    assert second["reference"] == f"DSR-{year}-000002"
    assert len(created["id"]) == 32
    assert created["id"] != second["id"]


def test_intake_queues_acknowledgment_verification_and_handler_notice(
    rt: Runtime, client: TestClient
) -> None:
    created = client.post("/api/v1/requests", json=request_body("suspension")).json()
    with Session(rt.db) as session:
        rows = session.exec(select(OutboxMessage)).all()
    by_letter = {row.letter: row for row in rows}
    assert set(by_letter) == {"acknowledgment", "verification", "handler_notice"}
    assert by_letter["handler_notice"].recipient == "info@innovativeai.co.jp"
    assert by_letter["acknowledgment"].recipient == "taro@example.jp"
    for row in rows:
        assert f"[{created['reference']}]" in row.subject
    # The handlers' notice carries no more personal data than triage needs.
    assert "山田" not in by_letter["handler_notice"].body
    assert "taro@example.jp" not in by_letter["handler_notice"].body


def test_agent_requests_are_answered_to_the_agent(rt: Runtime, client: TestClient) -> None:
    agent = {"name": "山田 花子", "email": "hanako@example.jp", "relation": "legal_representative"}
    created = client.post("/api/v1/requests", json=request_body(agent=agent)).json()
    with Session(rt.db) as session:
        ack = session.exec(
            select(OutboxMessage).where(OutboxMessage.letter == "verification")
        ).one()
    assert ack.recipient == "hanako@example.jp"
    assert "戸籍" in ack.body  # what proves the agent's authority
    assert created["state"] == "received"


def test_intake_validation_errors_are_problem_details(client: TestClient) -> None:
    cases = [
        (request_body("deletion"), "type"),
        (request_body(email="not-an-address"), "email"),
        (request_body(details=""), "details"),
        (request_body("correction", disclosure_method="paper"), "disclosure_method"),
        (request_body(agent={"name": "x", "email": "x@example.jp", "relation": "friend"}), "agent"),
        (request_body(name="a\r\nBcc: victim@example.com"), "name"),
        (
            request_body(
                agent={
                    "name": "x\nBcc: v@example.com",
                    "email": "x@example.jp",
                    "relation": "appointed_agent",
                }
            ),
            "agent.name",
        ),
        ({**request_body(), "unexpected": 1}, "unexpected"),
    ]
    for body, field in cases:
        response = client.post("/api/v1/requests", json=body)
        assert response.status_code == 422, (field, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        problem = response.json()
        assert problem["status"] == 422
        assert any(key.startswith(field) for key in problem["errors"]), (field, problem)


def test_oversized_body_is_413(client: TestClient, rt: Runtime) -> None:
    body = request_body(details="あ" * rt.settings.max_body_bytes)
    response = client.post("/api/v1/requests", json=body)
    assert response.status_code == 413
    assert response.headers["content-type"].startswith("application/problem+json")


def test_oversized_chunked_body_is_413(client: TestClient, rt: Runtime) -> None:
    # Regression: without Content-Length the JSON route turned the cut-off body into a 400.
    chunk = b" " * 8192

    def chunks(limit: int):  # type: ignore[no-untyped-def]
        yield b'{"type": "disclosure", "details": "'
        for _ in range(limit // len(chunk) + 2):
            yield chunk
        yield b'"}'

    for path, kind, limit, answer in (
        (
            "/api/v1/requests",
            "application/json",
            rt.settings.max_body_bytes,
            "application/problem+json",
        ),
        ("/", "application/x-www-form-urlencoded", rt.settings.max_form_bytes, "text/html"),
    ):
        response = client.post(path, content=chunks(limit), headers={"content-type": kind})
        assert response.status_code == 413, (path, response.text)
        assert response.headers["content-type"].startswith(answer)


def test_public_intake_is_rate_limited(rt: Runtime) -> None:
    limited = rt.settings.model_copy(update={"rate_limit_per_minute": 3})
    rt_limited = Runtime.load(limited, db=rt.db)
    with TestClient(create_app(rt_limited)) as client:
        codes = [client.post("/api/v1/requests", json=request_body()).status_code for _ in range(5)]
        assert codes == [201, 201, 201, 429, 429]
        response = client.post("/api/v1/requests", json=request_body())
        assert int(response.headers["retry-after"]) > 0
        # The form shares the intake budget.
        assert client.post("/", data=request_body()).status_code == 429


def test_queue_filters_and_paging(rt: Runtime, client: TestClient, auth: dict[str, str]) -> None:
    now = datetime.now(UTC)
    old = make_request(rt, "disclosure", received_at=now - timedelta(days=30))
    closed_old = make_request(rt, "correction", "withdrawn", received_at=now - timedelta(days=40))
    new = make_request(rt, "correction", "identity_verified")
    listing = client.get("/api/v1/requests", headers=auth).json()
    assert [item["id"] for item in listing["items"]] == [new.id, old.id, closed_old.id]
    assert listing["total"] == 3

    def ids(**params: str) -> list[str]:
        response = client.get("/api/v1/requests", params=params, headers=auth)
        assert response.status_code == 200, response.text
        return [item["id"] for item in response.json()["items"]]

    assert ids(state="identity_verified") == [new.id]
    assert ids(type="correction") == [new.id, closed_old.id]
    assert ids(overdue="true") == [old.id]  # the closed one is not overdue
    # A disclosure waiting for the requester has its clock paused, but once its Art. 39 date
    # has come it is overdue whatever the pause says.
    paused = make_request(
        rt, "disclosure", "awaiting_requester", received_at=now - timedelta(days=20)
    )
    assert ids(overdue="true") == [paused.id, old.id]
    assert ids(state="awaiting_requester") == [paused.id]
    assert ids(due_before=(now + timedelta(days=1)).isoformat()) == [
        paused.id,
        old.id,
        closed_old.id,
    ]
    assert ids(limit="1", offset="2") == [old.id]
    assert client.get("/api/v1/requests?limit=0", headers=auth).status_code == 422
    naive = client.get("/api/v1/requests?due_before=2026-01-01T00:00:00", headers=auth)
    assert naive.status_code == 422


def test_one_request_with_history(rt: Runtime, client: TestClient, auth: dict[str, str]) -> None:
    request = make_request(rt, "correction", "fulfilled")
    shown = client.get(f"/api/v1/requests/{request.id}", headers=auth).json()
    assert shown["version"] == 3
    assert shown["allowed_triggers"] == []
    assert [e["kind"] for e in shown["history"]] == ["submitted", "transition", "transition"]
    assert [e["to_state"] for e in shown["history"]] == [
        "received",
        "identity_verified",
        "fulfilled",
    ]
    assert shown["identity_method"] == "id_document_copy"
    assert shown["identity_verified_at"]
    assert shown["closed_at"]
    assert shown["art39_date"]


def test_unknown_id_is_404_problem(client: TestClient, auth: dict[str, str]) -> None:
    for response in (
        client.get("/api/v1/requests/nope", headers=auth),
        client.post(
            "/api/v1/requests/nope/transitions", json={"trigger": "withdraw"}, headers=auth
        ),
    ):
        assert response.status_code == 404
        assert response.headers["content-type"].startswith("application/problem+json")


def test_definitions_are_public(client: TestClient) -> None:
    workflows = client.get("/api/v1/workflows").json()
    assert {wf["id"] for wf in workflows} >= {"disclosure", "purpose_notice"}
    one = client.get("/api/v1/workflows/correction").json()
    assert one["deadline"]["days"] == 14
    assert client.get("/api/v1/workflows/deletion").status_code == 404
    reasons = client.get("/api/v1/legal-reasons").json()
    assert len(reasons) == 20


def test_health_and_openapi(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    spec = client.get("/openapi.json").json()
    assert "/api/v1/requests/{request_id}/transitions" in spec["paths"]
    schemas = spec["components"]["schemas"]
    assert schemas["RequestCreate"]["examples"][0]["type"] == "disclosure"
    assert schemas["TransitionIn"]["examples"]
    assert client.get("/docs").status_code == 200
