"""A forgiving queue API: state=open, several values, 422 for what names nothing, plain dates,
references in paths, and conflicts that say the current version."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient

from dsrflow.runtime import Runtime
from tests.conftest import VERIFY, make_request


def _ids(client: TestClient, auth: dict[str, str], query: str) -> list[str]:
    response = client.get(f"/api/v1/requests?{query}", headers=auth)
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


def test_state_open_closed_and_several_states(
    rt: Runtime, client: TestClient, auth: dict[str, str]
) -> None:
    received = make_request(rt, "disclosure")
    verified = make_request(rt, "correction", "identity_verified")
    withdrawn = make_request(rt, "correction", "withdrawn")
    refused = make_request(rt, "disclosure", "refused")
    assert sorted(_ids(client, auth, "state=open")) == sorted([received.id, verified.id])
    assert sorted(_ids(client, auth, "state=closed")) == sorted([withdrawn.id, refused.id])
    both = _ids(client, auth, "state=received,withdrawn")
    assert sorted(both) == sorted([received.id, withdrawn.id])
    assert sorted(_ids(client, auth, "state=received&state=refused")) == sorted(
        [received.id, refused.id]
    )
    assert _ids(client, auth, "state=open&type=correction") == [verified.id]


def test_unknown_filter_values_and_names_are_422(client: TestClient, auth: dict[str, str]) -> None:
    for query, field in (
        ("state=opne", "state"),
        ("state=open,recieved", "state"),
        ("type=deletion", "type"),
        ("stat=open", "stat"),
        ("due_before=tomorrow", "due_before"),
        ("due_before=2026-01-01T00:00:00", "due_before"),
    ):
        response = client.get(f"/api/v1/requests?{query}", headers=auth)
        assert response.status_code == 422, query
        assert response.headers["content-type"].startswith("application/problem+json")
        assert field in response.json()["errors"], (query, response.json())
    listed = client.get("/api/v1/requests?state=opne", headers=auth).json()
    assert "received" in listed["errors"]["state"], "the error lists what is accepted"


def test_due_before_takes_a_plain_date_as_the_end_of_that_day_in_japan(
    rt: Runtime, client: TestClient, auth: dict[str, str]
) -> None:
    request = make_request(rt, "disclosure")
    due_day = request.due_at.astimezone(rt.settings.tz).date()
    assert _ids(client, auth, f"due_before={due_day.isoformat()}") == [request.id]
    before = (due_day - timedelta(days=1)).isoformat()
    assert _ids(client, auth, f"due_before={before}") == []
    # A date-time whose "+" was not encoded (it arrives as a space) is still understood.
    moment = datetime.combine(due_day + timedelta(days=1), datetime.min.time())
    assert _ids(client, auth, f"due_before={moment.isoformat()}+09:00") == [request.id]
    assert _ids(client, auth, f"due_before={moment.isoformat()}Z") == [request.id]


def test_references_are_accepted_wherever_an_id_is(
    rt: Runtime, client: TestClient, auth: dict[str, str]
) -> None:
    request = make_request(rt, "disclosure")
    by_reference = client.get(f"/api/v1/requests/{request.reference}", headers=auth)
    assert by_reference.status_code == 200, by_reference.text
    assert by_reference.json()["id"] == request.id
    lower = client.get(f"/api/v1/requests/{request.reference.lower()}", headers=auth)
    assert lower.json()["id"] == request.id
    fired = client.post(
        f"/api/v1/requests/{request.reference}/transitions",
        json={"trigger": "verify_identity", **VERIFY},
        headers=auth,
    )
    assert fired.status_code == 200, fired.text
    assert fired.json()["state"] == "identity_verified"
    messages = client.get(f"/api/v1/requests/{request.reference}/messages", headers=auth)
    assert messages.status_code == 200
    paid = client.post(
        f"/api/v1/requests/{request.reference}/payments",
        json={"amount_jpy": 1000, "method": "bank_transfer"},
        headers=auth,
    )
    assert paid.status_code == 200, paid.text
    stale = client.post(
        f"/api/v1/requests/{request.reference}/retype",
        json={"type": "correction", "note": "訂正の請求でした。", "expected_version": 1},
        headers=auth,
    )
    assert stale.status_code == 409
    assert stale.json()["version"] > 1
    assert f"version {stale.json()['version']}" in stale.json()["detail"]
    unknown = client.get("/api/v1/requests/DSR-2026-999999", headers=auth)
    assert unknown.status_code == 404
    # Without a token nobody learns whether a reference exists.
    assert client.get(f"/api/v1/requests/{request.reference}").status_code == 401


def test_a_stale_expected_version_says_the_current_version(
    rt: Runtime, client: TestClient, auth: dict[str, str]
) -> None:
    request = make_request(rt, "disclosure", "identity_verified")
    response = client.post(
        f"/api/v1/requests/{request.reference}/transitions",
        json={"trigger": "withdraw", "expected_version": 1, "note": "x"},
        headers=auth,
    )
    assert response.status_code == 409
    problem = response.json()
    assert problem["version"] == request.version == 2
    assert "version 2" in problem["detail"]
    assert problem["state"] == "identity_verified"


def test_paging_still_works_with_filters(
    rt: Runtime, client: TestClient, auth: dict[str, str]
) -> None:
    now = datetime.now(UTC)
    first = make_request(rt, "disclosure", received_at=now - timedelta(days=2))
    second = make_request(rt, "disclosure", received_at=now - timedelta(days=1))
    assert _ids(client, auth, "state=open&limit=1") == [second.id]
    assert _ids(client, auth, "state=open&limit=1&offset=1") == [first.id]
