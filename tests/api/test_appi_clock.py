"""The Art. 39 clock (issue 9 §3): overdue whatever a pause says, the daily Art. 39 alert,
targets that cross the Art. 39 date, handler intake with the true arrival, and retyping."""

from __future__ import annotations

import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import yaml
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from dsrflow.deadlines.service import sweep
from dsrflow.outbound_mail.models import OutboxMessage
from dsrflow.runtime import Runtime
from tests.conftest import WORKFLOWS, auth_header, make_request, request_body

TOKYO = ZoneInfo("Asia/Tokyo")


def jst(*args: int) -> datetime:
    return datetime(*args, tzinfo=TOKYO)  # type: ignore[misc]


def alerts(rt: Runtime, request_id: str) -> list[OutboxMessage]:
    with Session(rt.db) as session:
        return list(
            session.exec(
                select(OutboxMessage).where(
                    OutboxMessage.request_id == request_id,
                    OutboxMessage.letter == "art39_alert",
                )
            )
        )


# Overdue


def test_a_paused_request_is_overdue_once_its_art39_date_has_come(
    rt: Runtime, client: TestClient, auth: dict[str, str]
) -> None:
    now = datetime.now(UTC)
    paused = make_request(
        rt, "disclosure", "awaiting_requester", received_at=now - timedelta(days=16)
    )
    shown = client.get(f"/api/v1/requests/{paused.id}", headers=auth).json()
    assert shown["overdue"] is True
    assert shown["art39_date"] is not None
    recent = make_request(
        rt, "disclosure", "awaiting_requester", received_at=now - timedelta(days=5)
    )
    assert client.get(f"/api/v1/requests/{recent.id}", headers=auth).json()["overdue"] is False
    # purpose_notice is outside Art. 39: no date, and only its own target counts.
    notice = make_request(rt, "purpose_notice", received_at=now - timedelta(days=5))
    shown = client.get(f"/api/v1/requests/{notice.id}", headers=auth).json()
    assert (shown["art39_date"], shown["overdue"]) == (None, False)


# The daily Art. 39 alert


def test_the_art39_alert_goes_out_daily_from_near_to_past_and_never_twice(rt: Runtime) -> None:
    arrival = jst(2026, 4, 1, 10)  # Art. 39 date 2026-04-16
    paused = make_request(rt, "disclosure", "awaiting_requester", received_at=arrival)
    closed = make_request(rt, "correction", "withdrawn", received_at=arrival)
    notice = make_request(rt, "purpose_notice", received_at=arrival)
    assert paused.art39_date == date(2026, 4, 16)

    sweep(rt, jst(2026, 4, 12, 9, 30))  # 4 days before: not yet (default 3)
    assert alerts(rt, paused.id) == []
    sweep(rt, jst(2026, 4, 13, 8, 0))  # 3 days before, but before the reminders' hour
    assert alerts(rt, paused.id) == []
    report = sweep(rt, jst(2026, 4, 13, 9, 30))
    assert [m.kind for m in report.planned].count("art39_alert") == 1
    (first,) = alerts(rt, paused.id)
    assert first.recipient == rt.settings.handler_email
    assert "あと3日" in first.subject
    assert "2026-04-16" in first.body
    assert sweep(rt, jst(2026, 4, 13, 15, 0)).queued == 0  # once a day
    sweep(rt, jst(2026, 4, 17, 9, 30))  # passed: every day still
    assert len(alerts(rt, paused.id)) == 2
    assert "過ぎています" in alerts(rt, paused.id)[-1].subject
    # Closed requests and types outside Art. 39 get none.
    assert alerts(rt, closed.id) == []
    assert alerts(rt, notice.id) == []


def test_the_alert_lead_is_configurable(rt: Runtime, tmp_path: Path) -> None:
    workflows = tmp_path / "workflows"
    shutil.copytree(WORKFLOWS, workflows)
    path = workflows / "correction.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["reminders"]["art39_alert_days"] = 7
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    edited = Runtime.load(rt.settings.model_copy(update={"workflows_dir": workflows}), db=rt.db)
    request = make_request(edited, "correction", received_at=jst(2026, 4, 1, 10))
    sweep(edited, jst(2026, 4, 9, 9, 30))  # 7 days before 04-16
    assert len(alerts(edited, request.id)) == 1


# Targets that cross the Art. 39 date


def test_a_business_day_target_past_art39_is_cut_back_unless_confirmed(
    rt: Runtime, tmp_path: Path
) -> None:
    workflows = tmp_path / "workflows"
    shutil.copytree(WORKFLOWS, workflows)
    path = workflows / "correction.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["deadline"].update(days=10, counting="business")
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    business = Runtime.load(rt.settings.model_copy(update={"workflows_dir": workflows}), db=rt.db)
    # Ten business days from 4/24 over Golden Week is 5/14; the Art. 39 date is 5/9.
    capped = make_request(business, "correction", received_at=jst(2026, 4, 24, 10))
    assert capped.art39_date == date(2026, 5, 9)
    assert capped.due_at == jst(2026, 5, 8, 23, 59, 59)

    data["deadline"]["confirm_past_art39"] = True
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    confirmed = Runtime.load(rt.settings.model_copy(update={"workflows_dir": workflows}), db=rt.db)
    past = make_request(confirmed, "correction", received_at=jst(2026, 4, 24, 10))
    assert past.due_at == jst(2026, 5, 14, 23, 59, 59)


# Handler intake: post, phone, counter, with the true arrival


def test_handler_intake_records_channel_and_arrival_and_every_clock_runs_from_it(
    rt: Runtime, client: TestClient, auth: dict[str, str]
) -> None:
    arrived = datetime.now(UTC) - timedelta(days=5)
    body = request_body("disclosure", channel="post", received_at=arrived.isoformat())
    created = client.post("/api/v1/requests", json=body, headers=auth)
    assert created.status_code == 201, created.text
    shown = client.get(f"/api/v1/requests/{created.json()['id']}", headers=auth).json()
    assert shown["channel"] == "post"
    assert datetime.fromisoformat(shown["received_at"]) == arrived
    local = arrived.astimezone(TOKYO).date()
    assert shown["art39_date"] == (local + timedelta(days=15)).isoformat()
    due = datetime.fromisoformat(shown["due_at"]).astimezone(TOKYO).date()
    assert due == local + timedelta(days=14)


def test_public_intake_may_set_neither_channel_nor_arrival(rt: Runtime, client: TestClient) -> None:
    for extra in ({"channel": "post"}, {"received_at": "2026-11-01T10:00:00+09:00"}):
        response = client.post("/api/v1/requests", json=request_body(**extra))
        assert response.status_code == 403, response.text
    auditor = auth_header(rt, "auditor")
    response = client.post("/api/v1/requests", json=request_body(channel="phone"), headers=auditor)
    assert response.status_code == 403
    bad = {"Authorization": "Bearer nope"}
    assert client.post("/api/v1/requests", json=request_body(), headers=bad).status_code == 401


def test_handler_intake_refuses_a_future_or_naive_arrival_and_unknown_channels(
    client: TestClient, auth: dict[str, str]
) -> None:
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    for extra in (
        {"received_at": future},
        {"received_at": "2026-11-01T10:00:00"},
        {"channel": "carrier_pigeon"},
    ):
        response = client.post("/api/v1/requests", json=request_body(**extra), headers=auth)
        assert response.status_code == 422, (extra, response.text)


# Retype


def test_retype_keeps_reference_arrival_and_history_and_recomputes_the_clocks(
    rt: Runtime, client: TestClient, auth: dict[str, str]
) -> None:
    arrived = datetime.now(UTC) - timedelta(days=3)
    request = make_request(rt, "purpose_notice", "identity_verified", received_at=arrived)
    assert request.art39_date is None
    response = client.post(
        f"/api/v1/requests/{request.id}/retype",
        json={
            "type": "correction",
            "note": "削除は訂正の意味",
            "expected_version": request.version,
        },
        headers=auth,
    )
    assert response.status_code == 200, response.text
    shown = response.json()
    assert shown["type"] == "correction"
    assert (shown["reference"], shown["state"]) == (request.reference, "identity_verified")
    assert datetime.fromisoformat(shown["received_at"]) == arrived
    assert (
        shown["art39_date"] == (arrived.astimezone(TOKYO).date() + timedelta(days=15)).isoformat()
    )
    kinds = [e["kind"] for e in shown["history"]]
    assert kinds[0] == "submitted"
    assert kinds[-1] == "retyped"
    assert shown["history"][-1]["detail"] == {
        "from_type": "purpose_notice",
        "to_type": "correction",
        "note": "削除は訂正の意味",
    }
    assert "fulfill" in shown["allowed_triggers"]


def test_retype_refuses_closed_requests_stale_versions_and_bad_types(
    rt: Runtime, client: TestClient, auth: dict[str, str]
) -> None:
    def retype(request_id: str, **body: object) -> int:
        url = f"/api/v1/requests/{request_id}/retype"
        return client.post(url, json=body, headers=auth).status_code

    closed = make_request(rt, "correction", "fulfilled")
    assert retype(closed.id, type="suspension", note="x") == 409
    request = make_request(rt, "correction")
    assert retype(request.id, type="suspension", note="x", expected_version=99) == 409
    assert retype(request.id, type="correction", note="x") == 422
    assert retype(request.id, type="nope", note="x") == 422
    assert retype(request.id, type="suspension") == 422
    assert retype("nope", type="suspension", note="x") == 404
    auditor = auth_header(rt, "auditor")
    url = f"/api/v1/requests/{request.id}/retype"
    assert (
        client.post(url, json={"type": "suspension", "note": "x"}, headers=auditor).status_code
        == 403
    )


def test_retype_drops_a_method_the_new_type_does_not_offer(
    rt: Runtime, client: TestClient, auth: dict[str, str]
) -> None:
    request = make_request(rt, "disclosure", disclosure_method="electronic")
    shown = client.post(
        f"/api/v1/requests/{request.id}/retype",
        json={"type": "third_party_record_disclosure", "note": "記録の開示"},
        headers=auth,
    ).json()
    assert shown["disclosure_method"] == "electronic"
    shown = client.post(
        f"/api/v1/requests/{request.id}/retype",
        json={"type": "correction", "note": "訂正の請求"},
        headers=auth,
    ).json()
    assert shown["disclosure_method"] is None
