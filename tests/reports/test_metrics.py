"""/metrics: Prometheus text computed from the database, for admin and auditor tokens only."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlmodel import Session

from dsrflow.inbound_mail.models import ImapSyncState
from dsrflow.reports.models import JobRun
from dsrflow.runtime import Runtime
from dsrflow.scheduler import jobs
from tests.conftest import auth_header, make_request


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_need_an_admin_or_auditor_token(rt: Runtime, client: TestClient) -> None:
    assert client.get("/metrics").status_code == 401
    bad = client.get("/metrics", headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401
    handler = client.get("/metrics", headers=auth_header(rt, "handler"))
    assert handler.status_code == 403
    assert handler.headers["content-type"].startswith("application/problem+json")
    for role in ("admin", "auditor"):
        response = client.get("/metrics", headers=auth_header(rt, role))
        assert response.status_code == 200, role
        assert response.headers["content-type"].startswith("text/plain")


def test_metrics_report_requests_deadlines_outbox_triage_and_jobs(
    rt: Runtime, client: TestClient
) -> None:
    now = datetime.now(UTC)
    make_request(rt, "disclosure")
    make_request(rt, "disclosure", "identity_verified")
    make_request(rt, "correction", "withdrawn")
    make_request(rt, "disclosure", received_at=now - timedelta(days=20))  # past both dates
    # Waiting for the requester: its clock is paused, but the Art. 39 date has passed.
    make_request(rt, "disclosure", "awaiting_requester", received_at=now - timedelta(days=17))
    with Session(rt.db) as session:
        session.add(
            ImapSyncState(
                mailbox="info@innovativeai.co.jp@imap.example:993/INBOX",
                uidvalidity=1,
                last_polled_at=now - timedelta(seconds=90),
            )
        )
        session.commit()
    asyncio.run(jobs.deadline_sweep(rt))
    asyncio.run(jobs.deadline_sweep(rt))

    text = client.get("/metrics", headers=auth_header(rt, "auditor")).text
    samples = _samples(text)
    assert samples[("dsrflow_requests", (("state", "received"), ("type", "disclosure")))] == 2
    assert (
        samples[("dsrflow_requests", (("state", "identity_verified"), ("type", "disclosure")))] == 1
    )
    assert samples[("dsrflow_requests", (("state", "withdrawn"), ("type", "correction")))] == 1
    awaiting = (("state", "awaiting_requester"), ("type", "disclosure"))
    assert samples[("dsrflow_requests", awaiting)] == 1
    assert samples[("dsrflow_requests_overdue", ())] == 2
    assert samples[("dsrflow_requests_art39_breached", ())] == 2
    # Nothing was sent yet: every letter (and the sweep's reminders) waits in the outbox.
    backlog = samples[("dsrflow_outbox_backlog", ())]
    assert backlog >= 15
    assert samples[("dsrflow_outbox_failed", ())] == 0
    assert samples[("dsrflow_outbox_messages", (("status", "pending"),))] == backlog
    assert samples[("dsrflow_outbox_oldest_waiting_seconds", ())] >= 0
    assert samples[("dsrflow_triage_messages", ())] == 0
    lag = samples[("dsrflow_imap_poll_lag_seconds", (("mailbox", "imap.example:993/INBOX"),))]
    assert 90 <= lag < 600
    assert "info@innovativeai" not in text, "no address in a label"
    job = (("job", "deadline_sweep"),)
    assert samples[("dsrflow_job_runs", job)] == 2
    assert samples[("dsrflow_job_errors", job)] == 0
    assert samples[("dsrflow_job_last_duration_seconds", job)] >= 0
    assert samples[("dsrflow_job_last_run_age_seconds", job)] < 600


def test_failed_job_runs_are_counted(rt: Runtime, client: TestClient, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from dsrflow.deadlines import service as deadlines

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("database gone")

    monkeypatch.setattr(deadlines, "sweep", broken)
    asyncio.run(jobs.deadline_sweep(rt))  # never raises
    with Session(rt.db) as session:
        run = session.get(JobRun, "deadline_sweep")
    assert run is not None
    assert (run.runs, run.errors, run.last_errors) == (1, 1, 1)
    samples = _samples(client.get("/metrics", headers=auth_header(rt, "admin")).text)
    assert samples[("dsrflow_job_errors", (("job", "deadline_sweep"),))] == 1
