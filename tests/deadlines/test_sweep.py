"""Deadline sweeps: each reminder at its time, once; escalations; identity waits; digest."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml
from sqlalchemy import event, text, update
from sqlmodel import Session, col, select

from dsrflow.cli import main
from dsrflow.deadlines.models import Reminder
from dsrflow.deadlines.service import digest, sweep
from dsrflow.outbound_mail.models import OutboxMessage
from dsrflow.reports.models import JobRun
from dsrflow.requests.models import Request
from dsrflow.runtime import Runtime
from tests.conftest import WORKFLOWS, make_request

TOKYO = ZoneInfo("Asia/Tokyo")


def jst(*args: int) -> datetime:
    return datetime(*args, tzinfo=TOKYO)  # type: ignore[misc]


def reminder_keys(rt: Runtime, request_id: str, *, art39: bool = False) -> list[str]:
    """Keys of the reminders queued for a request (without the request id prefix), in order;
    the daily Art. 39 alerts only with ``art39``."""
    with Session(rt.db) as session:
        keys = session.exec(
            select(Reminder.key)
            .where(Reminder.request_id == request_id)
            .order_by(col(Reminder.outbox_id), col(Reminder.key))
        ).all()
    keys = [key.split(":", 1)[1] for key in keys]
    return [key for key in keys if art39 or not key.startswith("art39_alert:")]


def mail_of(rt: Runtime, key: str) -> OutboxMessage:
    """The outbox row that carried the reminder ``key``."""
    with Session(rt.db) as session:
        reminder = session.get(Reminder, key)
        assert reminder is not None, key
        row = session.get(OutboxMessage, reminder.outbox_id)
        assert row is not None
        return row


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
    row = mail_of(rt, f"{request.id}:due:2026-04-15:0:{handler}")
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
        # Three days (less an hour, so that the seconds this test takes never carry the due
        # date past midnight) pass while we wait.
        waited_since = datetime.now(TOKYO) - _days(3) + _days(1) / 24
        session.execute(
            update(Request)
            .where(col(Request.id) == request.id)
            .values(awaiting_requester_at=waited_since)
        )
        session.commit()
    # Paused: no due reminder, but the Art. 39 date (4/16) still counts.
    assert [m.kind for m in sweep(rt, jst(2026, 4, 15, 9, 0)).planned] == ["art39_alert"]
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
    with Session(rt.db) as session:
        assert session.get(JobRun, "sweep") is None, "a dry run is no run"
    # A time without an offset is read in Asia/Tokyo.
    assert main(["sweep", "--as-of", "2026-04-16T09:00:00"]) == 0
    assert reminder_keys(rt, request.id)[-1] == "overdue:2026-04-15:1:info@innovativeai.co.jp"
    with Session(rt.db) as session:
        run = session.get(JobRun, "sweep")  # for /metrics, when cron runs the sweep
        assert run is not None
        assert (run.runs, run.errors) == (1, 0)
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


@contextmanager
def statements(rt: Runtime) -> Iterator[list[str]]:
    """The SQL statements run on the database while the block runs."""
    seen: list[str] = []

    def record(_conn, _cursor, statement, _params, _context, _many):  # type: ignore[no-untyped-def]
        seen.append(" ".join(statement.split()).upper())

    event.listen(rt.db, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(rt.db, "before_cursor_execute", record)


def _writes(seen: list[str]) -> list[str]:
    """Statements that write or take a write lock (SQLite's BEGIN IMMEDIATE, a row lock)."""
    return [
        s
        for s in seen
        if s.startswith(("INSERT", "UPDATE", "DELETE", "BEGIN IMMEDIATE")) or "FOR UPDATE" in s
    ]


def test_a_sweep_with_nothing_new_reads_once_and_writes_nothing(rt: Runtime) -> None:
    for _ in range(3):
        make_request(rt, "correction", "identity_verified", received_at=jst(2026, 4, 1, 10))
    assert sweep(rt, jst(2026, 4, 16, 9, 0)).queued > 0
    with statements(rt) as seen:
        report = sweep(rt, jst(2026, 4, 16, 9, 1))
    assert report.planned == []
    assert report.queued == 0
    assert _writes(seen) == []
    # One read for unsent acknowledgments, one for what is due: nothing per request.
    assert len([s for s in seen if s.startswith("SELECT")]) == 2, seen
    assert [s for s in seen if s.startswith("BEGIN")] in ([], ["BEGIN", "BEGIN"])  # deferred


def test_the_keys_of_a_batch_are_checked_in_one_query(rt: Runtime) -> None:
    def reads_for(count: int, day: int) -> int:
        for _ in range(count):
            make_request(rt, "correction", "identity_verified", received_at=jst(2026, 4, day, 10))
        with statements(rt) as seen:
            report = sweep(rt, jst(2026, 4, day + 15, 9, 0))
        assert report.errors == 0
        assert report.queued >= count
        return len(seen)

    # Ten times the requests, the same statements: the sweep costs what is due, in batches.
    assert reads_for(3, 1) == reads_for(30, 2)


def test_handlers_get_one_mail_per_recipient_listing_the_overdue_requests(rt: Runtime) -> None:
    rt.settings.escalation_email = "dpo@example.jp"
    overdue = [
        make_request(rt, "suspension", "identity_verified", received_at=jst(2026, 4, 1, 10))
        for _ in range(3)
    ]
    report = sweep(rt, jst(2026, 4, 16, 9, 0))
    # A reminder per request and recipient, recorded once each.
    assert sum(m.kind == "overdue" for m in report.planned) == 6
    with Session(rt.db) as session:
        mails = session.exec(select(OutboxMessage).where(OutboxMessage.letter == "overdue")).all()
    assert sorted(m.recipient for m in mails) == ["dpo@example.jp", "info@innovativeai.co.jp"]
    for mail in mails:
        assert all(r.reference in mail.body for r in overdue)
        assert "【期限超過】3件" in mail.subject
    for request in overdue:
        assert sorted(k for k in reminder_keys(rt, request.id) if k.startswith("overdue")) == [
            "overdue:2026-04-15:1:dpo@example.jp",
            "overdue:2026-04-15:1:info@innovativeai.co.jp",
        ]
    # The next day: one more mail per recipient, not one per request.
    sweep(rt, jst(2026, 4, 17, 9, 0))
    with Session(rt.db) as session:
        count = session.exec(select(OutboxMessage).where(OutboxMessage.letter == "overdue")).all()
    assert len(count) == 4


def test_a_decision_wakes_a_request_for_the_next_sweep(rt: Runtime) -> None:
    from datetime import timedelta

    from dsrflow.db import utcnow
    from dsrflow.requests import service
    from dsrflow.requests.schemas import TransitionIn

    request = make_request(rt, "correction", "received", received_at=utcnow() - timedelta(hours=1))
    sweep(rt)
    with Session(rt.db) as session:
        parked = session.get(Request, request.id)
        assert parked is not None
        assert parked.next_sweep_at is not None
        assert parked.next_sweep_at > utcnow() + timedelta(days=1)  # the first identity reminder
    with Session(rt.db, expire_on_commit=False) as session:
        service.transition(
            rt, session, request.id, TransitionIn(trigger="withdraw", note="test"), actor="test"
        )
    with Session(rt.db) as session:
        woken = session.get(Request, request.id)
        assert woken is not None
        assert woken.next_sweep_at is not None
        assert woken.next_sweep_at <= utcnow()
    assert sweep(rt).planned == []
    with Session(rt.db) as session:
        closed = session.get(Request, request.id)
        assert closed is not None
        assert closed.next_sweep_at is None


def test_the_art39_alert_rides_on_the_watermark(rt: Runtime) -> None:
    rt.settings.escalation_email = "dpo@example.jp"
    past = [
        make_request(rt, "correction", "identity_verified", received_at=jst(2026, 4, 1, 10))
        for _ in range(3)
    ]  # Art. 39 date 4/15
    near = make_request(rt, "correction", "identity_verified", received_at=jst(2026, 4, 3, 10))
    sweep(rt, jst(2026, 4, 17, 9, 0))

    def art39_mails() -> list[OutboxMessage]:
        with Session(rt.db) as session:
            query = select(OutboxMessage).where(OutboxMessage.letter == "art39_alert")
            return list(session.exec(query.order_by(col(OutboxMessage.id))))

    # One mail per recipient listing the requests: the escalation address only hears of those
    # whose date has come.
    mails = art39_mails()
    assert sorted(m.recipient for m in mails) == ["dpo@example.jp", "info@innovativeai.co.jp"]
    desk = next(m for m in mails if m.recipient == "info@innovativeai.co.jp")
    dpo = next(m for m in mails if m.recipient == "dpo@example.jp")
    assert "4件" in desk.subject
    assert all(r.reference in desk.body for r in [*past, near])
    assert near.reference not in dpo.body
    for request in past:
        assert sorted(k for k in reminder_keys(rt, request.id, art39=True) if "art39" in k) == [
            "art39_alert:2026-04-17:dpo@example.jp",
            "art39_alert:2026-04-17:info@innovativeai.co.jp",
        ]
    # Later that day the sweep reads nothing per request and writes nothing.
    with statements(rt) as seen:
        assert sweep(rt, jst(2026, 4, 17, 9, 15)).planned == []
    assert _writes(seen) == []
    assert len([s for s in seen if s.startswith("SELECT")]) == 2, seen
    # The next day, again.
    sweep(rt, jst(2026, 4, 18, 9, 0))
    assert len(art39_mails()) == 4


def test_keys_with_quotes_commas_and_backslashes_round_trip(rt: Runtime) -> None:
    # PostgreSQL gets the keys as one array literal: quoting must hold for any address.
    from dsrflow.deadlines import repository

    request = make_request(rt, "correction", "identity_verified", received_at=jst(2026, 4, 1, 10))
    odd = [f'{request.id}:identity:3:"a,b"\\{{c}}@example.jp', f"{request.id}:identity:3:NULL"]
    with Session(rt.db) as session:
        repository.record_reminders(session, [(request.id, key, None) for key in odd])
        session.commit()
    with Session(rt.db) as session:
        assert repository.taken_keys(session, [*odd, f"{request.id}:other"]) == set(odd)
        steps = [(request.id, request.version, None), ("missing", 1, None)]
        assert repository.claim(session, steps) == {request.id}
        # A request that changed since it was read is not claimed.
        assert repository.claim(session, [(request.id, request.version + 1, None)]) == set()


def test_a_request_changed_between_read_and_claim_waits_for_the_next_sweep(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dsrflow.deadlines import service as deadlines
    from dsrflow.requests import repository as requests_repository

    changed = make_request(rt, "suspension", "identity_verified", received_at=jst(2026, 4, 1, 10))
    steady = make_request(rt, "suspension", "identity_verified", received_at=jst(2026, 4, 1, 11))
    real_queue_run = deadlines._queue_run

    def decided_meanwhile(*args, **kwargs):  # type: ignore[no-untyped-def]
        with Session(rt.db) as session:  # a handler's decision lands after the sweep's read
            assert requests_repository.update_if_version(session, changed.id, changed.version, {})
            session.commit()
        return real_queue_run(*args, **kwargs)

    monkeypatch.setattr(deadlines, "_queue_run", decided_meanwhile)
    report = sweep(rt, jst(2026, 4, 16, 9, 0))
    assert report.skipped_claimed == 1
    assert reminder_keys(rt, changed.id) == []
    assert reminder_keys(rt, steady.id) == ["overdue:2026-04-15:1:info@innovativeai.co.jp"]
    monkeypatch.setattr(deadlines, "_queue_run", real_queue_run)
    sweep(rt, jst(2026, 4, 16, 9, 1))  # planned again from the changed row
    assert reminder_keys(rt, changed.id) == ["overdue:2026-04-15:1:info@innovativeai.co.jp"]


def test_migration_0012_wakes_art39_requests_and_carries_todays_alert_keys(rt: Runtime) -> None:
    from alembic import command

    from dsrflow.db import alembic_config, migrate, utcnow

    request = make_request(rt, "correction", "identity_verified", received_at=jst(2026, 4, 1, 10))
    command.downgrade(alembic_config(rt.db), "0011")
    key = f"{request.id}:art39_alert:2026-12-02:{rt.settings.handler_email}"
    with Session(rt.db) as session:
        session.execute(
            update(Request).where(col(Request.id) == request.id).values(next_sweep_at=None)
        )
        session.add(
            OutboxMessage(
                dedup_key=key,
                request_id=request.id,
                letter="art39_alert",
                recipient=rt.settings.handler_email,
                subject="s",
                body="b",
                message_id="<m@example.jp>",
            )
        )
        session.commit()
    migrate(rt.db)
    with Session(rt.db) as session:
        woken = session.get(Request, request.id)
        assert woken is not None
        assert woken.next_sweep_at is not None
        assert woken.next_sweep_at <= utcnow()
        reminder = session.get(Reminder, key)
        assert reminder is not None
        assert reminder.request_id == request.id
