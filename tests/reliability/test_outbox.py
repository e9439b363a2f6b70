"""Mail exactly once as far as SMTP allows (issue 12, section 4): flush pushes deferred mail out
now, a live dispatcher keeps its claim, `outbox list` shows every state."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from email.message import EmailMessage
from typing import Any

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
from tests.outbound_mail.conftest import by_message_id, company, outbox, pointed_at
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


class _SlowFirstData:
    """An aiosmtpd handler that answers the first DATA only after ``pause`` seconds."""

    def __init__(self, handler: Any, pause: float):
        self.handler, self.pause = handler, pause

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        pause, self.pause = self.pause, 0.0
        await asyncio.sleep(pause)
        return str(await self.handler.handle_DATA(server, session, envelope))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.handler, name)


class SlowSmtpServer(SmtpServer):
    """A real SMTP server that takes ``pause`` seconds to accept the first message."""

    def __init__(self, pause: float):
        super().__init__()
        self.pause = pause

    def _make_controller(self, port: int) -> Any:
        controller = super()._make_controller(port)
        controller.handler = _SlowFirstData(controller.handler, self.pause)
        return controller


def test_the_lease_is_renewed_while_a_slow_server_takes_one_message(rt: Runtime) -> None:
    # One message in flight for longer than the whole lease: renewing only between messages
    # would let another dispatcher take the batch, the message in flight included.
    lease = timedelta(seconds=3)
    with SlowSmtpServer(pause=4.5) as smtp:
        slow = pointed_at(rt, smtp)
        make_request(slow, "disclosure")
        total = len(outbox(slow))
        stolen: list[int] = []

        async def run() -> None:
            async def thief() -> None:
                for _ in range(12):
                    await asyncio.sleep(0.5)
                    rows = await asyncio.to_thread(claim_due, slow.db, utcnow(), 100, lease)
                    stolen.extend(r.id for r in rows if r.id is not None)

            task = asyncio.create_task(thief())
            report = await flush_outbox(
                slow.db, slow.settings, slow.letters, lease=lease, from_name=company(slow)
            )
            await task
            assert report.sent == total

        asyncio.run(run())
        assert stolen == []
        assert len(outbox(slow, status="sent")) == total
        assert len(smtp.wait_for(total)) == total
        assert all(len(copies) == 1 for copies in by_message_id(smtp.messages).values())
