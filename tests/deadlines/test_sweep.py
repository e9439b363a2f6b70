"""Deadline sweeps: each reminder at its time, once; escalations; identity waits; digest."""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml
from sqlalchemy import text, update
from sqlmodel import Session, col, select

from dsrflow.cli import main
from dsrflow.deadlines.service import digest, sweep
from dsrflow.outbound_mail.models import OutboxMessage
from dsrflow.requests.models import Request
from dsrflow.runtime import Runtime
from tests.conftest import WORKFLOWS, make_request

TOKYO = ZoneInfo("Asia/Tokyo")


def jst(*args: int) -> datetime:
    return datetime(*args, tzinfo=TOKYO)  # type: ignore[misc]


def reminder_keys(rt: Runtime, request_id: str) -> list[str]:
    """Outbox keys of scheduler mail for a request (without the request id prefix)."""
    with Session(rt.db) as session:
        keys = session.exec(
            select(OutboxMessage.dedup_key)
            .where(OutboxMessage.request_id == request_id)
            .order_by(col(OutboxMessage.id))
        ).all()
    scheduler_kinds = ("due:", "overdue:", "identity", "acknowledgment_unsent:")
    return [
        key.split(":", 1)[1] for key in keys if key.split(":", 1)[1].startswith(scheduler_kinds)
    ]


def test_each_offset_fires_once_at_its_time_and_not_before(rt: Runtime) -> None:
    request = make_request(rt, "correction", "identity_verified", received_at=jst(2026, 4, 1, 10))
    assert request.due_at == jst(2026, 4, 15, 23, 59, 59)
    handler = rt.settings.handler_email
    expected: list[str] = []
    for days_before, day in ((7, 8), (3, 12), (1, 14), (0, 15)):
        sweep(rt, jst(2026, 4, day, 8, 59))
        assert reminder_keys(rt, request.id) == expected, f"fired before its time ({days_before})"
        sweep(rt, jst(2026, 4, day, 9, 0))
        expected.append(f"due:2026-04-15:{days_before}:{handler}")
        assert reminder_keys(rt, request.id) == expected
        sweep(rt, jst(2026, 4, day, 18, 0))  # a rerun the same day sends nothing more
        assert reminder_keys(rt, request.id) == expected
    with Session(rt.db) as session:
        row = session.exec(
            select(OutboxMessage).where(
                OutboxMessage.dedup_key == f"{request.id}:due:2026-04-15:0:{handler}"
            )
        ).one()
    assert row.recipient == handler
    assert f"[{request.reference}]" in row.subject
    assert "本日" in row.subject


def test_after_an_outage_only_the_latest_reminder_goes_out(rt: Runtime) -> None:
    request = make_request(rt, "correction", "identity_verified", received_at=jst(2026, 4, 1, 10))
    sweep(rt, jst(2026, 4, 14, 12, 0))  # the scheduler was down from 4/8 to 4/14
    assert reminder_keys(rt, request.id) == [f"due:2026-04-15:1:{rt.settings.handler_email}"]


def test_overdue_escalation_every_day_to_handlers_and_escalation_address(rt: Runtime) -> None:
    rt.settings.escalation_email = "dpo@example.jp"
    request = make_request(rt, "suspension", "identity_verified", received_at=jst(2026, 4, 1, 10))
    sweep(rt, jst(2026, 4, 16, 8, 0))
    assert not any(k.startswith("overdue") for k in reminder_keys(rt, request.id))
    sweep(rt, jst(2026, 4, 16, 9, 0))
    sweep(rt, jst(2026, 4, 16, 20, 0))
    sweep(rt, jst(2026, 4, 17, 9, 30))
    overdue = [k for k in reminder_keys(rt, request.id) if k.startswith("overdue")]
    assert overdue == [
        "overdue:2026-04-15:1:info@innovativeai.co.jp",
        "overdue:2026-04-15:1:dpo@example.jp",
        "overdue:2026-04-15:2:info@innovativeai.co.jp",
        "overdue:2026-04-15:2:dpo@example.jp",
    ]


def test_closed_requests_get_nothing(rt: Runtime) -> None:
    closed = [
        make_request(rt, "disclosure", state, received_at=jst(2026, 4, 1, 10))
        for state in ("fulfilled", "refused", "withdrawn")
    ]
    for moment in (jst(2026, 4, 4, 9), jst(2026, 4, 15, 9), jst(2026, 5, 20, 9)):
        assert sweep(rt, moment).planned == []
    assert all(reminder_keys(rt, r.id) == [] for r in closed)


def test_identity_wait_reminds_the_requester_then_asks_the_handlers(rt: Runtime) -> None:
    request = make_request(
        rt, "disclosure", "received", received_at=jst(2026, 4, 1, 10), language="en"
    )
    sweep(rt, jst(2026, 4, 4, 8, 59))
    assert reminder_keys(rt, request.id) == []
    sweep(rt, jst(2026, 4, 4, 9, 0))
    assert reminder_keys(rt, request.id) == ["identity:3:taro@example.jp"]
    sweep(rt, jst(2026, 4, 8, 9, 0))  # day 8 also brings the 7-days-before-due reminder
    keys = reminder_keys(rt, request.id)
    assert "identity:7:taro@example.jp" in keys
    sweep(rt, jst(2026, 4, 15, 9, 0))
    keys = reminder_keys(rt, request.id)
    assert "identity_escalation:14:info@innovativeai.co.jp" in keys
    with Session(rt.db) as session:
        reminder = session.exec(
            select(OutboxMessage).where(
                OutboxMessage.dedup_key == f"{request.id}:identity:3:taro@example.jp"
            )
        ).one()
    assert reminder.subject.endswith("Reminder: please confirm your identity")  # in English


def test_business_day_deadlines_across_golden_week_and_year_end(
    rt: Runtime, tmp_path: Path
) -> None:
    workflows = tmp_path / "workflows"
    shutil.copytree(WORKFLOWS, workflows)
    path = workflows / "correction.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["deadline"].update(days=5, counting="business")
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    business = Runtime.load(rt.settings.model_copy(update={"workflows_dir": workflows}), db=rt.db)

    gw = make_request(business, "correction", "identity_verified", received_at=jst(2026, 4, 28, 17))
    assert gw.due_at == jst(2026, 5, 11, 23, 59, 59)
    year_end = make_request(
        business, "correction", "identity_verified", received_at=jst(2026, 12, 25, 12)
    )
    assert year_end.due_at == jst(2027, 1, 7, 23, 59, 59)
    sweep(business, jst(2026, 5, 11, 9, 0))
    assert "due:2026-05-11:0:info@innovativeai.co.jp" in reminder_keys(business, gw.id)
    sweep(business, jst(2027, 1, 8, 9, 0))
    assert "overdue:2027-01-07:1:info@innovativeai.co.jp" in reminder_keys(business, year_end.id)


def test_waiting_for_the_requester_pauses_the_internal_clock_not_art39(rt: Runtime) -> None:
    request = make_request(rt, "disclosure", "identity_verified", received_at=jst(2026, 4, 1, 10))
    from dsrflow.requests import service
    from dsrflow.requests.schemas import TransitionIn

    with Session(rt.db, expire_on_commit=False) as session:
        service.transition(
            rt,
            session,
            request.id,
            TransitionIn(trigger="request_info", message="どの会員IDですか"),
            actor="test",
        )
        # Three days pass while we wait.
        waited_since = datetime.now(TOKYO).replace(microsecond=0)
        session.execute(
            update(Request)
            .where(col(Request.id) == request.id)
            .values(awaiting_requester_at=waited_since.replace(day=waited_since.day) - _days(3))
        )
        session.commit()
    assert sweep(rt, jst(2026, 4, 15, 9, 0)).planned == []  # paused: no due reminder
    with Session(rt.db, expire_on_commit=False) as session:
        after = service.transition(
            rt, session, request.id, TransitionIn(trigger="info_received"), actor="test"
        )
    moved = after.due_at - request.due_at
    assert _days(3) <= moved < _days(3) + _days(1) / 24
    assert after.art39_date == request.art39_date


def _days(n: int):  # type: ignore[no-untyped-def]
    from datetime import timedelta

    return timedelta(days=n)


def test_unsent_acknowledgment_is_escalated(rt: Runtime) -> None:
    request = make_request(rt, "disclosure", "identity_verified", received_at=jst(2026, 4, 1, 10))
    with Session(rt.db) as session:
        session.execute(
            update(OutboxMessage)
            .where(col(OutboxMessage.request_id) == request.id)
            .values(created_at=jst(2026, 4, 1, 10))
        )
        session.commit()
    sweep(rt, jst(2026, 4, 1, 10, 30))
    assert reminder_keys(rt, request.id) == []  # within the grace period
    sweep(rt, jst(2026, 4, 1, 11, 5))
    assert reminder_keys(rt, request.id) == ["acknowledgment_unsent:1:info@innovativeai.co.jp"]


def test_dry_run_prints_and_writes_nothing(
    rt: Runtime,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    request = make_request(rt, "correction", "identity_verified", received_at=jst(2026, 4, 1, 10))
    monkeypatch.setenv("DSRFLOW_DATABASE_URL", database_url)
    monkeypatch.setenv("DSRFLOW_WORKFLOWS_DIR", str(rt.settings.workflows_dir))
    with Session(rt.db) as session:
        before = session.execute(text("SELECT count(*) FROM outbox")).scalar_one()
    assert main(["sweep", "--as-of", "2026-04-16T09:00:00+09:00", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"{request.reference}\toverdue:2026-04-15:1\tinfo@innovativeai.co.jp" in out
    with Session(rt.db) as session:
        assert session.execute(text("SELECT count(*) FROM outbox")).scalar_one() == before
    # A time without an offset is read in Asia/Tokyo.
    assert main(["sweep", "--as-of", "2026-04-16T09:00:00"]) == 0
    assert reminder_keys(rt, request.id)[-1] == "overdue:2026-04-15:1:info@innovativeai.co.jp"
    with pytest.raises(SystemExit) as bad:
        main(["sweep", "--as-of", "yesterday"])
    assert bad.value.code == 2
    assert "not an ISO 8601 time: 'yesterday'" in capsys.readouterr().err


def test_a_failing_request_is_skipped_and_the_sweep_goes_on(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = make_request(rt, "correction", "identity_verified", received_at=jst(2026, 4, 1, 10))
    good = make_request(rt, "suspension", "identity_verified", received_at=jst(2026, 4, 1, 11))
    from dsrflow.deadlines import service as deadlines

    real_plan = deadlines.plan

    def flaky(rt_: Runtime, request: Request, *args, **kwargs):  # type: ignore[no-untyped-def]
        if request.id == bad.id:
            raise RuntimeError("template broke")
        return real_plan(rt_, request, *args, **kwargs)

    monkeypatch.setattr(deadlines, "plan", flaky)
    report = sweep(rt, jst(2026, 4, 8, 9, 0))
    assert report.errors == 1
    assert reminder_keys(rt, good.id) == ["due:2026-04-15:7:info@innovativeai.co.jp"]


def test_daily_digest_once_a_day(rt: Runtime) -> None:
    overdue = make_request(rt, "correction", "identity_verified", received_at=jst(2026, 4, 1, 10))
    soon = make_request(rt, "disclosure", "identity_verified", received_at=jst(2026, 4, 4, 10))
    waiting = make_request(rt, "suspension", "awaiting_requester", received_at=jst(2026, 4, 17, 10))
    make_request(rt, "suspension", "withdrawn", received_at=jst(2026, 4, 1, 10))
    from dsrflow.inbound_mail.reading import ingest

    raw = (
        b"From: someone@example.jp\r\nTo: info@innovativeai.co.jp\r\nSubject: question\r\n"
        b"Message-ID: <q1@example.jp>\r\n\r\nWhat do you do with my data?\r\n"
    )
    assert ingest(rt, raw).status == "triage"
    report = digest(rt, jst(2026, 4, 17, 9, 0))
    assert report.queued == 1
    assert digest(rt, jst(2026, 4, 17, 15, 0)).queued == 0
    with Session(rt.db) as session:
        row = session.exec(select(OutboxMessage).where(OutboxMessage.letter == "digest")).one()
    assert row.recipient == rt.settings.handler_email
    body = row.body
    sections = body.split("■ ")
    assert overdue.reference in sections[1]  # 期限超過
    assert soon.reference in sections[2]  # 3日以内
    assert waiting.reference in sections[3]
    assert waiting.reference in sections[4]
    assert "新規" in row.subject
    assert "期限超過1件" in row.subject
    assert "受信箱で判断待ちのメール：1件" in body


def test_a_moved_due_date_gets_its_own_reminders(rt: Runtime) -> None:
    # Regression: reminder keys did not name the due date, so after an extension the keys
    # used for the old date silenced every reminder before the new one.
    from dsrflow.deadlines.service import extend

    request = make_request(rt, "disclosure", "identity_verified", received_at=jst(2026, 4, 1, 10))
    for day in (8, 12, 14, 15):
        sweep(rt, jst(2026, 4, day, 9, 0))
    with Session(rt.db, expire_on_commit=False) as session:
        extended = extend(
            rt,
            session,
            request.id,
            days=14,
            reason="記録の取り寄せ",
            actor="test",
            confirm_past_art39=True,
        )
    assert extended.due_at == jst(2026, 4, 29, 23, 59, 59)
    sweep(rt, jst(2026, 4, 22, 9, 0))
    assert reminder_keys(rt, request.id)[-1] == "due:2026-04-29:7:info@innovativeai.co.jp"
