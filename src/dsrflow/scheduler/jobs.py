"""The scheduler's jobs. Each is a thin wrapper: the work lives in the domain and mail layers.

Database-bound sweeps run in a worker thread so the event loop (and the API beside it) stays
responsive. A job never raises: a failure is logged and the next run tries again.
"""

from __future__ import annotations

import asyncio
import logging

from dsrflow.deadlines import art39
from dsrflow.deadlines import service as deadlines
from dsrflow.outbound_mail.dispatch import flush_outbox
from dsrflow.runtime import Runtime

log = logging.getLogger(__name__)


async def deadline_sweep(rt: Runtime) -> None:
    report = await asyncio.to_thread(deadlines.sweep, rt, series=frozenset({deadlines.DEADLINES}))
    if report.queued or report.errors:
        log.info("deadline sweep: %d queued, %d errors", report.queued, report.errors)


async def identity_wait_sweep(rt: Runtime) -> None:
    report = await asyncio.to_thread(deadlines.sweep, rt, series=frozenset({deadlines.IDENTITY}))
    if report.queued or report.errors:
        log.info("identity-wait sweep: %d queued, %d errors", report.queued, report.errors)


async def art39_alert(rt: Runtime) -> None:
    report = await asyncio.to_thread(art39.art39_alerts, rt)
    if report.queued or report.errors:
        log.info("Art. 39 alerts: %d queued, %d errors", report.queued, report.errors)


async def daily_digest(rt: Runtime) -> None:
    report = await asyncio.to_thread(deadlines.digest, rt)
    log.info("daily digest: %d queued", report.queued)


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
