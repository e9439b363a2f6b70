"""Mail exactly once as far as SMTP allows (issue 12, section 4): flush pushes deferred mail out
now, a live dispatcher keeps its claim, `outbox list` shows every state."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from email.message import EmailMessage

import pytest
from sqlalchemy import update
from sqlmodel import Session

from dsrflow.cli import main
from dsrflow.db import utcnow
from dsrflow.outbound_mail.dispatch import claim_due, flush_outbox
from dsrflow.outbound_mail.models import OutboxMessage
from dsrflow.outbound_mail.senders import SmtpSender
from dsrflow.runtime import Runtime
from tests.conftest import make_request
from tests.outbound_mail.conftest import by_message_id, company, outbox
from tests.services.smtp import SmtpServer

pytestmark = pytest.mark.smtp


def defer_all(rt: Runtime) -> int:
    """Every pending row waits out a backoff, as after an SMTP outage."""
    with Session(rt.db) as s:
        s.execute(
            update(OutboxMessage)
            .where(OutboxMessage.status == "pending")  # type: ignore[arg-type]
            .values(next_attempt_at=utcnow() + timedelta(hours=1), attempts=3, last_error="421")
        )
        s.commit()
    return len(outbox(rt, status="pending"))


def test_flush_sends_deferred_mail_now_and_due_only_waits(
    mail_rt: Runtime, smtp: SmtpServer, cli_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_request(mail_rt, "disclosure")
    waiting = defer_all(mail_rt)
    assert waiting >= 2
    for name in ("SMTP_HOST", "SMTP_PORT"):
        monkeypatch.setenv(f"DSRFLOW_{name}", str(getattr(smtp, name.split("_")[1].lower())))
    assert main(["outbox", "flush", "--due-only"]) == 0
    assert smtp.messages == []
    assert main(["outbox", "flush"]) == 0
    assert len(outbox(mail_rt, status="sent")) == waiting
    assert all(len(copies) == 1 for copies in by_message_id(smtp.messages).values())
    assert len(smtp.messages) == waiting


def test_outbox_list_shows_each_state_without_addresses(
    rt: Runtime, cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    request = make_request(rt, "disclosure")
    rows = outbox(rt)
    with Session(rt.db) as s:
        s.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == rows[0].id)  # type: ignore[arg-type]
            .values(status="failed", last_error="550 no such user")
        )
        s.commit()
    assert main(["outbox", "list"]) == 0
    out, err = capsys.readouterr()
    assert request.reference in out
    assert "failed" in out
    assert "550 no such user" in out
    assert "taro@example.jp" not in out + err
    assert "failed 1" in err
    assert main(["outbox", "list", "--status", "failed"]) == 0
    out, _ = capsys.readouterr()
    assert len(out.strip().splitlines()) == 1


class SlowSender(SmtpSender):
    """A real SMTP sender that takes its time, so the lease must be renewed meanwhile."""

    async def send(self, message: EmailMessage, recipient: str) -> str:
        await asyncio.sleep(1.2)
        return await super().send(message, recipient)


def test_a_live_dispatcher_renews_its_lease(mail_rt: Runtime, smtp: SmtpServer) -> None:
    for _ in range(2):
        make_request(mail_rt, "disclosure")
    total = len(outbox(mail_rt))
    # Each send outlasts a third of the lease, and the batch outlasts the lease twice over; the
    # margins are wide so that a loaded machine does not steal a renewed lease.
    lease = timedelta(seconds=3)
    stolen: list[int] = []

    async def run() -> None:
        async def thief() -> None:
            # Tries to take rows over as soon as a lease that was not renewed would end.
            for _ in range(10):
                await asyncio.sleep(1.0)
                rows = await asyncio.to_thread(claim_due, mail_rt.db, utcnow(), 100, lease)
                stolen.extend(r.id for r in rows if r.id is not None)

        task = asyncio.create_task(thief())
        await flush_outbox(
            mail_rt.db,
            mail_rt.settings,
            mail_rt.letters,
            sender=SlowSender(mail_rt.settings),
            lease=lease,
            from_name=company(mail_rt),
        )
        await task

    asyncio.run(run())
    assert stolen == []
    assert len(outbox(mail_rt, status="sent")) == total
    assert all(len(copies) == 1 for copies in by_message_id(smtp.messages).values())
