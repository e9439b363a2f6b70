"""The APScheduler wiring: fixed job ids and safe settings, and jobs that really run."""

from __future__ import annotations

import asyncio
import mailbox
import time

from sqlmodel import Session, select

from dsrflow.outbound_mail.models import OutboxMessage
from dsrflow.runtime import Runtime
from dsrflow.scheduler.runner import build_scheduler, running_scheduler
from tests.conftest import make_request


def test_jobs_have_fixed_ids_and_tolerant_settings(rt: Runtime) -> None:
    async def inspect() -> dict[str, tuple[bool, int, int]]:
        scheduler = build_scheduler(rt)
        return {
            job.id: (job.coalesce, job.misfire_grace_time, job.max_instances)
            for job in scheduler.get_jobs()
        }

    jobs = asyncio.run(inspect())
    assert set(jobs) == {
        "deadline_sweep",
        "outbox_dispatch",
        "daily_digest",
        "package_sweep",
        "retention_purge",
        "document_purge",
    }
    for coalesce, grace, instances in jobs.values():
        assert coalesce
        assert grace >= 300
        assert instances == 1
    with_imap = Runtime.load(rt.settings.model_copy(update={"imap_host": "127.0.0.1"}), db=rt.db)
    assert "imap_poll" in asyncio.run(_ids(with_imap))
    batched = rt.settings.model_copy(update={"requester_event_mail": "batch"})
    assert "requester_event_batch" in asyncio.run(_ids(Runtime.load(batched, db=rt.db)))


async def _ids(rt: Runtime) -> set[str]:
    return {job.id for job in build_scheduler(rt).get_jobs()}


def test_running_scheduler_delivers_the_outbox_to_the_maildir(rt: Runtime) -> None:
    request = make_request(rt, "disclosure")

    async def run_until_sent() -> None:
        async with running_scheduler(rt):
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                with Session(rt.db) as session:
                    statuses = session.exec(select(OutboxMessage.status)).all()
                if statuses and all(status == "sent" for status in statuses):
                    return
                await asyncio.sleep(0.2)
            raise AssertionError(f"outbox not sent: {statuses}")

    asyncio.run(run_until_sent())
    delivered = list(mailbox.Maildir(rt.settings.maildir_path, create=False))
    subjects = sorted(str(message["Subject"]) for message in delivered)
    letters = [s for s in subjects if f"[{request.reference}]" in s]
    assert len(letters) == 3  # acknowledgment, verification, handlers' notice
    # The digest runs at start too when the day's hour has passed (once per day in any case).
    assert len(subjects) - len(letters) <= 1
