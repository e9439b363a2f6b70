"""APScheduler 3 wiring.

Jobs live in a memory job store of this process only (a shared store would fire every job in
every process); running several schedulers is safe because the work itself is claimed in the
database. Every job has a fixed id, ``replace_existing``, ``coalesce`` (a backlog of missed runs
becomes one run) and a generous ``misfire_grace_time`` (a sweep late by minutes still runs).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from dsrflow.db import utcnow
from dsrflow.inbound_mail.listener import IntakeListener
from dsrflow.runtime import Runtime
from dsrflow.scheduler import jobs

log = logging.getLogger(__name__)
Job = Callable[[Runtime], Awaitable[None]]


def _jobs(rt: Runtime) -> list[tuple[str, Job, object, int]]:
    """(id, job, trigger, misfire_grace_time seconds)."""
    tz = rt.settings.tz
    digest_at = min(wf.reminders.send_at for wf in rt.definitions.workflows.values())
    table: list[tuple[str, Job, object, int]] = [
        (
            "deadline_sweep",
            jobs.deadline_sweep,
            IntervalTrigger(seconds=rt.settings.sweep_interval_seconds, timezone=tz),
            600,
        ),
        (
            "outbox_dispatch",
            jobs.outbox_dispatch,
            IntervalTrigger(seconds=rt.settings.outbox_interval_seconds, timezone=tz),
            300,
        ),
        ("package_sweep", jobs.package_sweep, IntervalTrigger(minutes=10, timezone=tz), 3600),
        ("document_purge", jobs.document_purge, IntervalTrigger(hours=1, timezone=tz), 6 * 3600),
        (
            "daily_digest",
            jobs.daily_digest,
            CronTrigger(hour=digest_at.hour, minute=digest_at.minute, timezone=tz),
            6 * 3600,
        ),
        # At night, local time: personal data past its retention period goes (retention.py).
        (
            "retention_purge",
            jobs.retention_purge,
            CronTrigger(hour=3, minute=30, timezone=tz),
            12 * 3600,
        ),
    ]
    if rt.settings.requester_event_mail == "batch":
        every = IntervalTrigger(minutes=rt.settings.requester_event_batch_minutes, timezone=tz)
        table.append(("requester_event_batch", jobs.requester_event_batch, every, 3600))
    if rt.settings.imap_host:
        table.append(("imap_poll", jobs.imap_poll, IntervalTrigger(seconds=60, timezone=tz), 300))
    return table


def build_scheduler(rt: Runtime, start_at: datetime | None = None) -> AsyncIOScheduler:
    scheduler = AsyncIOScheduler(timezone=rt.settings.tz)
    first = start_at or utcnow() + timedelta(seconds=1)
    for job_id, job, trigger, grace in _jobs(rt):
        scheduler.add_job(
            job,
            trigger,
            args=[rt],
            id=job_id,
            name=job_id,
            replace_existing=True,
            coalesce=True,
            max_instances=1,
            misfire_grace_time=grace,
            # Every job also runs right after start; the digest too, so a start after its hour
            # does not skip a day (it is sent once per local day whatever runs it).
            next_run_time=first,
        )
    return scheduler


@contextlib.asynccontextmanager
async def running_scheduler(rt: Runtime) -> AsyncIterator[AsyncIOScheduler]:
    """The scheduler for the lifetime of the block (used by `dsrflow serve`).

    With IMAP configured, an IDLE watcher also runs, so new mail is read within seconds; the
    ``imap_poll`` job stays as the fallback (both claim the mailbox in the database). The
    intake socket listens beside it (in its own threads), for ``dsrflow ingest-email``.
    """
    scheduler = build_scheduler(rt)
    scheduler.start()
    log.info("scheduler started: %s", ", ".join(job.id for job in scheduler.get_jobs()))
    listener = IntakeListener(rt)
    listener.start()
    stop = asyncio.Event()
    watcher = None
    if rt.settings.imap_host:
        from dsrflow.inbound_mail.imap import watch

        watcher = asyncio.create_task(watch(rt, stop=stop), name="imap_idle")
    try:
        yield scheduler
    finally:
        stop.set()
        scheduler.shutdown(wait=False)
        # Off the loop: the messages being recorded are finished first.
        await asyncio.to_thread(listener.stop)
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await watcher


def run_forever(rt: Runtime) -> None:
    """`dsrflow scheduler`: run until SIGINT or SIGTERM."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with running_scheduler(rt):
            await stop.wait()

    asyncio.run(main())
