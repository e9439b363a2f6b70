"""Prometheus metrics, computed from the database at scrape time.

Every figure is a gauge read from the shared database, so any API process answers the same
whatever process did the work (no PROMETHEUS_MULTIPROC_DIR needed). Job runs (sweep duration
and errors) are recorded in ``job_runs`` by whichever process runs the scheduler.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlmodel import Session, select

from dsrflow.db import utcnow
from dsrflow.inbound_mail import repository as inbox_repository
from dsrflow.reports import repository
from dsrflow.reports.models import JobRun
from dsrflow.runtime import Runtime

OUTBOX_STATUSES = ("pending", "sending", "sent", "failed")


class DatabaseCollector(Collector):
    """Reads every metric from the database when scraped."""

    def __init__(self, rt: Runtime, session: Session, now: datetime | None = None):
        self.rt, self.session, self.now = rt, session, now

    def collect(self) -> Iterator[Metric]:
        rt, now, session = self.rt, self.now or utcnow(), self.session
        today = rt.calendar.local_date(now)
        by_state = repository.count_by_state_and_type(session)
        overdue = repository.overdue_count(session, now, rt.open_states, rt.paused_types, today)
        breaches = repository.art39_breaches(session, rt.open_states, today)
        outbox = repository.outbox_by_status(session)
        oldest = repository.oldest_pending_outbox(session)
        triage = inbox_repository.waiting_count(session)
        polls = repository.imap_last_polls(session)
        runs = list(session.exec(select(JobRun)))
        session.rollback()

        requests = GaugeMetricFamily(
            "dsrflow_requests", "Requests by state and type.", labels=["state", "type"]
        )
        for state, request_type, n in sorted(by_state):
            requests.add_metric([state, request_type], n)
        yield requests
        yield GaugeMetricFamily(
            "dsrflow_requests_overdue",
            "Open requests past their due date, or past their Art. 39 date.",
            value=overdue,
        )
        yield GaugeMetricFamily(
            "dsrflow_requests_art39_breached",
            "Open requests on or past their Art. 39 date (the requester may sue).",
            value=breaches,
        )
        messages = GaugeMetricFamily(
            "dsrflow_outbox_messages", "Outbox rows by status.", labels=["status"]
        )
        for status in sorted(set(OUTBOX_STATUSES) | set(outbox)):
            messages.add_metric([status], outbox.get(status, 0))
        yield messages
        yield GaugeMetricFamily(
            "dsrflow_outbox_backlog",
            "Messages waiting to be sent (pending or being sent).",
            value=outbox.get("pending", 0) + outbox.get("sending", 0),
        )
        yield GaugeMetricFamily(
            "dsrflow_outbox_failed",
            "Messages that could not be sent.",
            value=outbox.get("failed", 0),
        )
        yield GaugeMetricFamily(
            "dsrflow_outbox_oldest_waiting_seconds",
            "Age of the oldest message waiting to be sent (0 when none waits).",
            value=max(0.0, (now - oldest).total_seconds()) if oldest else 0.0,
        )
        yield GaugeMetricFamily(
            "dsrflow_triage_messages",
            "Inbound messages waiting for a handler (triage and quarantine).",
            value=triage,
        )
        lag = GaugeMetricFamily(
            "dsrflow_imap_poll_lag_seconds",
            "Seconds since each mailbox was last read completely.",
            labels=["mailbox"],
        )
        for mailbox, at in sorted(polls, key=lambda p: p[0]):
            if at is not None:
                lag.add_metric([_mailbox_label(mailbox)], max(0.0, (now - at).total_seconds()))
        yield lag
        duration = GaugeMetricFamily(
            "dsrflow_job_last_duration_seconds", "Duration of a job's last run.", labels=["job"]
        )
        last_errors = GaugeMetricFamily(
            "dsrflow_job_last_errors", "Errors in a job's last run.", labels=["job"]
        )
        errors = GaugeMetricFamily(
            "dsrflow_job_errors", "Errors of a job since the database was created.", labels=["job"]
        )
        total = GaugeMetricFamily(
            "dsrflow_job_runs", "Runs of a job since the database was created.", labels=["job"]
        )
        age = GaugeMetricFamily(
            "dsrflow_job_last_run_age_seconds",
            "Seconds since a job last finished.",
            labels=["job"],
        )
        for run in sorted(runs, key=lambda r: r.job):
            duration.add_metric([run.job], run.last_duration_seconds)
            last_errors.add_metric([run.job], run.last_errors)
            errors.add_metric([run.job], run.errors)
            total.add_metric([run.job], run.runs)
            if run.last_finished_at is not None:
                age.add_metric([run.job], max(0.0, (now - run.last_finished_at).total_seconds()))
        yield from (duration, last_errors, errors, total, age)


def _mailbox_label(mailbox: str) -> str:
    """``user@host:port/folder`` without the user (an address is personal data)."""
    return mailbox.rpartition("@")[2]


def render(rt: Runtime, session: Session, now: datetime | None = None) -> bytes:
    """The metrics in the Prometheus text format, read through ``session``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector(rt, session, now))
    return generate_latest(registry)
