"""Extending a request's internal target date through the handler API."""

from __future__ import annotations

from datetime import datetime, timedelta

from fastapi.testclient import TestClient
from sqlmodel import Session, select

from dsrflow.outbound_mail.models import OutboxMessage
from dsrflow.runtime import Runtime
from tests.conftest import auth_header, make_request


def extend(client: TestClient, auth: dict[str, str], request_id: str, **body: object):  # type: ignore[no-untyped-def]
    return client.post(f"/api/v1/requests/{request_id}/extensions", json=body, headers=auth)


def test_extension_moves_the_target_not_art39_and_tells_the_requester(
    rt: Runtime, client: TestClient, auth: dict[str, str]
) -> None:
    request = make_request(rt, "disclosure", "identity_verified")
    body = {"days": 7, "reason": "記録の取り寄せに時間を要するため"}
    # The new target is past the Art. 39 date: refused unless the handler confirms it.
    unconfirmed = extend(client, auth, request.id, **body)
    assert unconfirmed.status_code == 422
    assert "confirm_past_art39" in unconfirmed.json()["errors"]
    response = extend(
        client,
        auth,
        request.id,
        **body,
        expected_version=request.version,
        confirm_past_art39=True,
    )
    assert response.status_code == 200, response.text
    shown = response.json()
    assert datetime.fromisoformat(shown["due_at"]) - request.due_at == timedelta(days=7)
    assert shown["art39_date"] == request.art39_date.isoformat()  # type: ignore[union-attr]
    assert shown["version"] == request.version + 1
    event = shown["history"][-1]
    assert event["kind"] == "deadline_extended"
    assert event["detail"]["days"] == 7
    assert event["detail"]["reason"]
    assert event["detail"]["confirmed_past_art39"] is True
    with Session(rt.db) as session:
        letter = session.exec(
            select(OutboxMessage).where(OutboxMessage.letter == "deadline_extended")
        ).one()
    assert letter.recipient == "taro@example.jp"
    assert "記録の取り寄せに時間を要するため" in letter.body
    due = datetime.fromisoformat(shown["due_at"]).astimezone(rt.settings.tz).date()
    assert f"{due.year}年{due.month}月{due.day}日" in letter.body  # 2026年4月20日（月）


def test_extension_limits(rt: Runtime, client: TestClient, auth: dict[str, str]) -> None:
    request = make_request(rt, "disclosure")
    assert (
        extend(client, auth, request.id, days=10, reason="a", confirm_past_art39=True).status_code
        == 200
    )
    too_far = extend(client, auth, request.id, days=5, reason="b")
    assert too_far.status_code == 422
    assert "at most 4" in too_far.json()["errors"]["days"]
    assert extend(client, auth, request.id, days=2, reason="").status_code == 422
    assert (
        extend(client, auth, request.id, days=2, reason="c", expected_version=1).status_code == 409
    )
    # A workflow that allows none.
    correction = make_request(rt, "correction")
    refused = extend(client, auth, correction.id, days=1, reason="x")
    assert refused.status_code == 422
    # Closed requests cannot be extended.
    closed = make_request(rt, "disclosure", "fulfilled")
    assert extend(client, auth, closed.id, days=1, reason="x").status_code == 409
    assert extend(client, auth, "nope", days=1, reason="x").status_code == 404


def test_auditors_may_not_extend(rt: Runtime, client: TestClient) -> None:
    request = make_request(rt, "disclosure")
    response = extend(client, auth_header(rt, "auditor"), request.id, days=1, reason="x")
    assert response.status_code == 403
