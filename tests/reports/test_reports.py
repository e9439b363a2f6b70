"""Reports: the period's figures, the contract's CSV export and the handling record, on both
databases."""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import UTC, date, datetime, timedelta

from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlmodel import Session, col

from dsrflow.audit.models import Event
from dsrflow.outbound_mail.dispatch import flush_outbox
from dsrflow.reports import service as reports
from dsrflow.runtime import Runtime
from tests.conftest import auth_header, make_request

CSV_HEADER = (
    "reference,type,channel,received_at,acknowledged_at,identity_method,outcome,"
    "reason_code,closed_at,days_taken"
)


def _at(day: str, hour_utc: int = 1) -> datetime:
    return datetime.fromisoformat(day).replace(hour=hour_utc, tzinfo=UTC)


def test_figures_per_month_and_type(rt: Runtime) -> None:
    refused = make_request(rt, "disclosure", "refused", received_at=_at("2026-04-01"))
    fulfilled = make_request(rt, "disclosure", "fulfilled", received_at=_at("2026-04-02"))
    make_request(rt, "disclosure", received_at=_at("2026-04-20"))
    make_request(rt, "correction", "withdrawn", received_at=_at("2026-04-10"))
    # 15:30 UTC on 31 May is 00:30 on 1 June in Japan: a June arrival.
    make_request(rt, "correction", received_at=datetime(2026, 5, 31, 15, 30, tzinfo=UTC))
    make_request(rt, "disclosure", received_at=_at("2026-07-01"))  # outside the period

    with Session(rt.db) as session:
        figures = reports.monthly_figures(rt, session, date(2026, 4, 1), date(2026, 6, 30))
    rows = {(f.month, f.type): f for f in figures.rows}
    assert set(rows) == {
        ("2026-04", "disclosure"),
        ("2026-04", "correction"),
        ("2026-06", "correction"),
    }

    disclosure = rows[("2026-04", "disclosure")]
    assert (disclosure.count, disclosure.closed) == (3, 2)
    assert disclosure.outcomes == {"fulfilled": 1, "refused": 1}
    assert disclosure.refusals_by_reason == {"PROC_ID_UNVERIFIED": 1}
    today = rt.calendar.local_date(datetime.now(UTC))
    taken = [(today - rt.calendar.local_date(r.received_at)).days for r in (refused, fulfilled)]
    assert disclosure.median_days_to_close == sum(taken) / 2
    # All three went past their due date and their Art. 39 date (two closed late, one open).
    assert disclosure.overdue == 3
    assert disclosure.art39_breaches == 3
    assert disclosure.art39_decided == 3
    assert disclosure.closed_before_art39 == 0
    assert disclosure.share_closed_before_art39 == 0.0

    correction = rows[("2026-04", "correction")]
    assert correction.outcomes == {"withdrawn": 1}
    assert correction.refusals_by_reason == {}
    assert rows[("2026-06", "correction")].closed == 0
    assert rows[("2026-06", "correction")].median_days_to_close is None

    totals = {f.month: f for f in figures.totals}
    assert set(totals) == {"2026-04", "2026-06"}
    assert totals["2026-04"].count == 4
    assert totals["2026-04"].type == "*"
    assert totals["2026-04"].outcomes == {"fulfilled": 1, "refused": 1, "withdrawn": 1}


def test_share_closed_before_the_art39_date(rt: Runtime) -> None:
    now = datetime.now(UTC)
    make_request(rt, "disclosure", "fulfilled", received_at=now - timedelta(days=1))
    make_request(rt, "disclosure", "refused", received_at=now - timedelta(days=2))
    make_request(rt, "disclosure", received_at=now - timedelta(days=1))  # open, not yet due
    late = make_request(rt, "disclosure", received_at=now - timedelta(days=20))  # open, past
    start = rt.calendar.local_date(late.received_at)
    with Session(rt.db) as session:
        figures = reports.monthly_figures(rt, session, start, rt.calendar.local_date(now))
    total = figures.totals
    assert sum(f.count for f in total) == 4
    decided = sum(f.art39_decided for f in total)
    before = sum(f.closed_before_art39 for f in total)
    assert (decided, before) == (3, 2), "the open one not yet at its date is undecided"
    assert sum(f.art39_breaches for f in total) == 1
    assert sum(f.overdue for f in total) == 1
    # The share is per month: recompute it from the rows that count.
    for f in total:
        if f.art39_decided:
            assert f.share_closed_before_art39 == f.closed_before_art39 / f.art39_decided


def test_periods_are_checked(rt: Runtime) -> None:
    with Session(rt.db) as session:
        try:
            reports.monthly_figures(rt, session, date(2026, 5, 1), date(2026, 4, 1))
        except Exception as exc:  # the one error hierarchy
            assert getattr(exc, "status", None) == 422
        else:
            raise AssertionError("a period ending before it starts is refused")


def test_csv_export_has_the_contract_columns(rt: Runtime, client: TestClient) -> None:
    refused = make_request(rt, "disclosure", "refused", received_at=_at("2026-04-01"))
    verified = make_request(rt, "correction", "identity_verified", received_at=_at("2026-04-03"))
    make_request(rt, "correction", received_at=_at("2026-05-01"))  # after the period
    asyncio.run(flush_outbox(rt.db, rt.settings, rt.letters, from_name="test"))

    query = "/api/v1/reports/requests.csv?from=2026-04-01&to=2026-04-30"
    assert client.get(query).status_code == 401
    for role in ("handler", "auditor", "admin"):
        response = client.get(query, headers=auth_header(rt, role))
        assert response.status_code == 200, (role, response.text)
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    assert response.headers["cache-control"] == "no-store"
    text = response.content.decode("utf-8-sig")
    assert text.splitlines()[0] == CSV_HEADER
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["reference"] for r in rows] == [refused.reference, verified.reference]

    first, second = rows
    assert first["type"] == "disclosure"
    assert first["channel"] == "api"
    assert datetime.fromisoformat(first["received_at"]) == refused.received_at
    assert first["acknowledged_at"], "the acknowledgment was sent"
    assert first["outcome"] == "refused"
    assert first["reason_code"] == "PROC_ID_UNVERIFIED"
    assert first["identity_method"] == ""
    closed = datetime.fromisoformat(first["closed_at"])
    expected_days = (rt.calendar.local_date(closed) - date(2026, 4, 1)).days
    assert int(first["days_taken"]) == expected_days
    # An open request: no outcome, no closing.
    assert second["identity_method"] == "id_document_copy"
    assert (second["outcome"], second["closed_at"], second["days_taken"]) == ("", "", "")


def test_csv_export_refuses_bad_periods(rt: Runtime, client: TestClient) -> None:
    auth = auth_header(rt, "auditor")
    for query in (
        "from=2026-04-01",
        "from=2026-13-01&to=2026-12-31",
        "from=2026-05-01&to=2026-04-01",
    ):
        response = client.get(f"/api/v1/reports/requests.csv?{query}", headers=auth)
        assert response.status_code == 422, query
        assert response.headers["content-type"].startswith("application/problem+json")


def test_figures_endpoint(rt: Runtime, client: TestClient) -> None:
    make_request(rt, "disclosure", "refused", received_at=_at("2026-04-01"))
    response = client.get(
        "/api/v1/reports/figures?from=2026-04-01&to=2026-04-30", headers=auth_header(rt, "auditor")
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["rows"][0]["refusals_by_reason"] == {"PROC_ID_UNVERIFIED": 1}
    assert body["totals"][0]["type"] == "*"


def test_handling_record_with_the_audit_check(rt: Runtime, client: TestClient) -> None:
    refused = make_request(rt, "disclosure", "refused", received_at=_at("2026-04-01"))
    query = "/api/v1/reports/handling-record?from=2026-04-01&to=2026-04-30"
    assert client.get(query).status_code == 401
    auth = auth_header(rt, "auditor")
    page = client.get(query, headers=auth)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    html = page.text
    assert "開示等の求め対応記録" in html
    assert refused.reference in html
    assert "山田 太郎" in html
    assert "PROC_ID_UNVERIFIED" in html
    assert "正常" in html
    assert "異常" not in html
    with Session(rt.db) as session:
        record = reports.handling_record(rt, session, date(2026, 4, 1), date(2026, 4, 30))
    (entry,) = record.entries
    assert entry.handlers == ["test"]
    assert entry.events == 2
    assert len(entry.chain_head) == 64
    assert entry.chain_head in html

    # An edited audit event shows in the record.
    with Session(rt.db) as session:
        session.execute(
            update(Event)
            .where(col(Event.request_id) == refused.id, col(Event.seq) == 2)
            .values(actor="someone else")
        )
        session.commit()
    tampered = client.get(query, headers=auth).text
    assert "異常" in tampered
    assert refused.id in tampered


def test_outcomes_include_not_held_and_substituted(rt: Runtime) -> None:
    make_request(rt, "disclosure", "not_held", received_at=_at("2026-04-01"))
    make_request(rt, "suspension", "substituted", received_at=_at("2026-04-02"))
    with Session(rt.db) as session:
        figures = reports.monthly_figures(rt, session, date(2026, 4, 1), date(2026, 4, 30))
        rows = reports.request_rows(rt, session, date(2026, 4, 1), date(2026, 4, 30))
    assert figures.totals[0].outcomes == {"not_held": 1, "substituted": 1}
    assert figures.totals[0].refusals_by_reason == {}, "neither is a refusal"
    assert [(r.outcome, r.reason_code) for r in rows] == [("not_held", None), ("substituted", None)]
