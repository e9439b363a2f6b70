"""The scheduler's jobs. Each is a thin wrapper: the work lives in the domain and mail layers.

Database-bound sweeps run in a worker thread so the event loop (and the API beside it) stays
responsive. A job never raises: a failure is logged and the next run tries again. Every run is
recorded (duration and errors) for the metrics.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from dsrflow.db import utcnow
from dsrflow.deadlines import service as deadlines
from dsrflow.outbound_mail.dispatch import flush_outbox
from dsrflow.packages import service as packages
from dsrflow.reports.service import record_job_run
from dsrflow.requests import notices
from dsrflow.runtime import Runtime

log = logging.getLogger(__name__)


async def _recorded(rt: Runtime, job: str, work: Callable[[], Awaitable[int]]) -> None:
    """Run ``work`` (which returns its error count), record the run, never raise."""
    started = utcnow()
    try:
        errors = await work()
    except Exception:
        log.exception("job %s failed; the next run tries again", job)
        errors = 1
    await asyncio.to_thread(record_job_run, rt, job, started, utcnow(), errors)


async def deadline_sweep(rt: Runtime) -> None:
    """Reminders, escalations and the daily Art. 39 alerts: what has come due since the last."""

    async def work() -> int:
        report = await asyncio.to_thread(deadlines.sweep, rt)
        if report.queued or report.errors:
            log.info("deadline sweep: %d queued, %d errors", report.queued, report.errors)
        return report.errors

    await _recorded(rt, "deadline_sweep", work)


async def daily_digest(rt: Runtime) -> None:
    async def work() -> int:
        report = await asyncio.to_thread(deadlines.digest, rt)
        log.info("daily digest: %d queued", report.queued)
        return report.errors

    await _recorded(rt, "daily_digest", work)


async def package_sweep(rt: Runtime) -> None:
    """Remove the files of disclosure packages whose link has expired."""

    async def work() -> int:
        report = await asyncio.to_thread(packages.remove_expired, rt)
        if report.removed or report.errors:
            log.info("package sweep: %d removed, %d errors", report.removed, report.errors)
        return report.errors

    await _recorded(rt, "package_sweep", work)


async def requester_event_batch(rt: Runtime) -> None:
    """One mail to the desk listing the requester events since the last (batch mode)."""

    async def work() -> int:
        await asyncio.to_thread(notices.send_batch, rt)
        return 0

    await _recorded(rt, "requester_event_batch", work)


async def outbox_dispatch(rt: Runtime) -> None:
    report = await flush_outbox(
        rt.db, rt.settings, rt.letters, from_name=rt.definitions.company.name.for_language("ja")
    )
    if report.sent or report.failed or report.retried:
        log.info("outbox: %s", report)


async def retention_purge(rt: Runtime) -> None:
    from dsrflow.retention import purge

    report = await asyncio.to_thread(purge, rt)
    if report.requests or report.raw_mail or report.attachments:
        log.info("retention purge: %s", report.summary())


def _purge_documents(rt: Runtime) -> int:
    from sqlmodel import Session

    from dsrflow.documents.service import purge_expired

    with Session(rt.db, expire_on_commit=False) as session:
        return purge_expired(rt, session)


async def document_purge(rt: Runtime) -> None:
    """Uploaded identity documents leave once their retention after closing has passed."""
    removed = await asyncio.to_thread(_purge_documents, rt)
    if removed:
        log.info("document purge: %d removed", removed)


async def imap_poll(rt: Runtime) -> None:
    from dsrflow.inbound_mail.imap import poll_once

    report = await poll_once(rt)
    log.debug("imap poll: %s", report)
