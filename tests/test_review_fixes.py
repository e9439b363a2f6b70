"""Regressions found in review: each test failed before its fix."""

from __future__ import annotations

import asyncio
import re
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlmodel import Session, col, select

from dsrflow.deadlines.service import digest, sweep
from dsrflow.outbound_mail.dispatch import flush_outbox
from dsrflow.outbound_mail.models import OutboxMessage
from dsrflow.outbound_mail.outbox import OutgoingMail, enqueue
from dsrflow.requests import service
from dsrflow.requests.models import Request
from dsrflow.requests.schemas import TransitionIn
from dsrflow.runtime import Runtime
from dsrflow.scheduler.runner import build_scheduler
from dsrflow.workflow.calendar import BusinessCalendar
from tests.conftest import make_request, request_body
from tests.pages.test_pages import confirm, post_form, status_link

TOKYO = ZoneInfo("Asia/Tokyo")


def jst(*args: int) -> datetime:
    return datetime(*args, tzinfo=TOKYO)  # type: ignore[misc]


def test_a_malformed_recipient_fails_alone_and_the_rest_is_sent(rt: Runtime) -> None:
    with Session(rt.db) as session:
        for i, recipient in enumerate(["ops@@example.jp", "a@", "ok@example.jp"]):
            mail = OutgoingMail(f"k{i}", "handler_notice", recipient, "[DSR-2026-000001] s", "b")
            enqueue(session, mail, rt.mail_domain)
        session.commit()
    report = asyncio.run(flush_outbox(rt.db, rt.settings, rt.letters))
    assert report.failed == 2  # and the handlers are told about each (two notices sent)
    with Session(rt.db) as session:
        statuses = dict(session.exec(select(OutboxMessage.recipient, OutboxMessage.status)).all())
    assert statuses["ok@example.jp"] == "sent"
    assert statuses["ops@@example.jp"] == statuses["a@"] == "failed"


def test_a_long_requester_address_still_gets_its_reminders(rt: Runtime) -> None:
    address = "a" * 64 + "@" + ("b" * 60 + ".") * 2 + "example.jp"
    request = make_request(rt, "disclosure", email=address, received_at=jst(2026, 4, 1, 10))
    report = sweep(rt, jst(2026, 4, 15, 9, 30))
    assert report.errors == 0
    assert any(m.recipient == address and m.kind == "identity" for m in report.planned)
    with Session(rt.db) as session:
        keys = session.exec(
            select(OutboxMessage.dedup_key).where(OutboxMessage.request_id == request.id)
        ).all()
    assert any(address in key for key in keys)


def test_a_pause_keeps_the_due_date_at_the_end_of_a_local_day(rt: Runtime) -> None:
    request = make_request(rt, "disclosure", "identity_verified", received_at=jst(2026, 4, 1, 10))
    with Session(rt.db, expire_on_commit=False) as session:
        service.transition(
            rt, session, request.id, TransitionIn(trigger="request_info", message="?"), actor="t"
        )
        waited = datetime.now(TOKYO) - timedelta(hours=5)
        session.execute(
            update(Request)
            .where(col(Request.id) == request.id)
            .values(awaiting_requester_at=waited)
        )
        session.commit()
        after = service.transition(
            rt, session, request.id, TransitionIn(trigger="info_received"), actor="t"
        )
    before = request.due_at.astimezone(TOKYO)
    assert before == datetime(2026, 4, 15, 23, 59, 59, tzinfo=TOKYO)
    # Five hours of waiting move 4/15 23:59:59 to 4/16 04:59:59, kept at the end of that day.
    assert after.due_at.astimezone(TOKYO) == datetime(2026, 4, 16, 23, 59, 59, tzinfo=TOKYO)


def test_a_closure_range_may_wrap_the_year() -> None:
    cal = BusinessCalendar(TOKYO, ["12-29..01-03"])
    assert cal.is_closure(date(2026, 12, 30))
    assert cal.is_closure(date(2027, 1, 2))
    assert not cal.is_closure(date(2027, 1, 4))
    assert not cal.is_closure(date(2026, 12, 28))


def _submit(client: TestClient, **overrides: str) -> tuple[str, str]:
    page = post_form(client, "/", {**request_body(), **overrides}).text
    link = status_link(page)
    reference = re.search(r'id="reference">(DSR-[\d-]+)<', page).group(1)  # type: ignore[union-attr]
    return link, reference


def test_the_withdraw_confirmation_is_valid_html(client: TestClient) -> None:
    link, _ = _submit(client)
    page = client.get(link + "?lang=en").text
    assert 'data-confirm="Withdraw your request? This cannot be undone."' in page
    assert "onsubmit" not in page  # no inline script: the CSP allows none


def test_withdrawing_a_closed_request_does_not_say_withdrawn(
    rt: Runtime, client: TestClient, auth: dict[str, str]
) -> None:
    link, reference = _submit(client)
    with Session(rt.db) as session:
        request_id = session.exec(select(Request.id).where(Request.reference == reference)).one()
    base = f"/api/v1/requests/{request_id}"
    paid = client.post(
        f"{base}/payments", json={"amount_jpy": 1000, "method": "cash"}, headers=auth
    )
    assert paid.status_code == 200, paid.text
    for body in (
        {"trigger": "verify_identity", "method": "in_person", "evidence": "運転免許証"},
        {"trigger": "fulfill", "summary": "done", "method_used": "electronic"},
    ):
        response = client.post(f"{base}/transitions", json=body, headers=auth)
        assert response.status_code == 200, response.text
    page = post_form(client, f"{link}/withdraw", {}, page_url="/").text
    assert 'id="state">対応完了<' in page
    assert "ご請求を取り下げました" not in page


def test_the_verification_page_knows_a_closed_request(rt: Runtime, client: TestClient) -> None:
    link, reference = _submit(client)
    post_form(client, f"{link}/withdraw", {}, page_url=link)
    with Session(rt.db) as session:
        body = session.exec(
            select(OutboxMessage.body).where(
                OutboxMessage.reference == reference, OutboxMessage.letter == "verification"
            )
        ).one()
    verify = re.search(r"http://testserver(/verify/\S+)", body).group(1)  # type: ignore[union-attr]
    page = confirm(client, verify).text
    assert "手続きは既に終了しております" in page
    assert "ほかの方法" not in page


def test_nul_characters_are_a_422_not_a_500(client: TestClient) -> None:
    response = client.post("/api/v1/requests", json=request_body(details="x\x00y"))
    assert response.status_code == 422
    assert "details" in response.json()["errors"]
    assert post_form(client, "/", request_body(details="x\x00y")).status_code == 422


def test_the_digest_waits_for_its_hour_and_runs_after_a_late_start(rt: Runtime) -> None:
    assert digest(rt, jst(2026, 4, 17, 3, 0)).queued == 0
    assert digest(rt, jst(2026, 4, 17, 9, 0)).queued == 1

    async def digest_first_run() -> datetime | None:
        job = build_scheduler(rt).get_job("daily_digest")
        return job.next_run_time if job else None

    first = asyncio.run(digest_first_run())
    assert first is not None
    assert first - datetime.now(TOKYO) < timedelta(minutes=1)
