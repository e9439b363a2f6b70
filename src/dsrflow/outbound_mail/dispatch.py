"""Sending the outbox: claim due rows in the database, deliver them, record each outcome.

A flush claims a batch of due rows (PostgreSQL: ``FOR UPDATE SKIP LOCKED``; SQLite: the same
statements inside one ``BEGIN IMMEDIATE`` transaction, which is a write lock), marks them
``sending`` with a lease and commits the claim; only then does it talk to the mail server, over
one connection per flush, and it records each row's outcome in its own transaction before
the next row is sent. A task renews the lease of the rows not yet done while it works. So any
number of dispatchers can run side by side without sending a row twice, and a dispatcher that
dies mid-batch leaves rows that become claimable again when their lease runs out.

Outcomes:
- accepted by the server: ``sent``;
- a temporary failure of one message (4xx, a timeout or a disconnect while sending it): back to
  ``pending`` with exponential backoff, and ``failed`` after ``RetryPolicy.max_attempts``;
- a permanent failure (5xx, a refused or malformed address): ``failed`` at once, with the
  server's answer in ``last_error`` and a ``delivery_failed`` notice queued for the handlers'
  mailbox in the same transaction;
- the server cannot be reached at all (connection refused, TLS or AUTH failure): no message is
  at fault, so the batch goes back to ``pending`` without spending an attempt, to be tried again
  after ``RetryPolicy.first_delay``. Nothing is lost however long the server is down.

Logs name the row, the reference, the letter and the status, never a recipient or a body.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.engine import Engine
from sqlmodel import Session

from dsrflow.config import Settings
from dsrflow.db import utcnow
from dsrflow.outbound_mail import repository
from dsrflow.outbound_mail.message import build_message
from dsrflow.outbound_mail.models import OutboxMessage
from dsrflow.outbound_mail.outbox import OutgoingMail, enqueue
from dsrflow.outbound_mail.render import LetterRenderer
from dsrflow.outbound_mail.senders import (
    EmailSender,
    PermanentFailure,
    ServerUnreachable,
    TemporaryFailure,
    sender_for,
)

log = logging.getLogger(__name__)

DELIVERY_FAILED = "delivery_failed"
# Short, and renewed while the dispatcher works through its batch: a dispatcher that dies
# holds its rows for at most this long.
DEFAULT_LEASE = timedelta(seconds=60)
_ADDRESS = re.compile(r"[^\s<>()\[\],;:\"]+@[^\s<>()\[\],;:\"]+")


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff for temporary failures: first_delay, doubling, at most max_delay; a message that
    still fails after max_attempts attempts is marked failed."""

    first_delay: timedelta = timedelta(minutes=1)
    max_delay: timedelta = timedelta(hours=1)
    max_attempts: int = 10

    def delay(self, attempts: int) -> timedelta:
        """The wait after the ``attempts``-th failed attempt (1m, 2m, 4m, ... by default)."""
        return min(self.max_delay, self.first_delay * 2 ** min(max(attempts - 1, 0), 30))


@dataclass
class FlushReport:
    """What one flush did. ``unreachable``: the server could not be reached at all, so nothing
    was handed over; ``error`` says why."""

    sent: int = 0
    retried: int = 0
    failed: int = 0
    unreachable: bool = False
    error: str | None = None
    notices: list[int] = field(default_factory=list)  # ids of queued delivery_failed rows


def claim_due(
    db_engine: Engine,
    now: datetime,
    limit: int,
    lease: timedelta = DEFAULT_LEASE,
    *,
    deferred: bool = False,
    skip_ids: Collection[int] = (),
) -> list[OutboxMessage]:
    """Claim up to ``limit`` rows that are due (pending and due, or 'sending' with an expired
    lease), mark them 'sending' until ``now + lease``, count the attempt, and commit.

    Each claimed row's ``attempts`` identifies this claim: outcomes are recorded only while the
    row is still 'sending' with that count, so a dispatcher whose lease ran out cannot overwrite
    the outcome of the one that took the row over. ``deferred`` also claims rows waiting out a
    backoff (except ``skip_ids``)."""
    with Session(db_engine, expire_on_commit=False) as session:
        rows = repository.lock_due(session, now, limit, deferred=deferred, skip_ids=skip_ids)
        for row in rows:
            row.status = "sending"
            row.claimed_until = now + lease
            row.attempts += 1
            session.add(row)
        session.commit()
    return rows


def _update_claimed(session: Session, row: OutboxMessage, **values: object) -> bool:
    if not repository.update_if_still_claimed(session, row, **values):
        log.warning(
            "outbox %s (%s): claim lost before the outcome was recorded", row.id, row.reference
        )
        return False
    return True


def _redact(answer: str) -> str:
    """A server answer without the addresses it may quote (for logs and notices)."""
    return _ADDRESS.sub("[address]", answer)


def _record_sent(db_engine: Engine, row: OutboxMessage, at: datetime) -> bool:
    with Session(db_engine) as session:
        done = repository.mark_sent(session, row, at)
        session.commit()
    if not done:
        log.warning(
            "outbox %s (%s): claim lost before the outcome was recorded", row.id, row.reference
        )
    return done


def _renew(db_engine: Engine, rows: Sequence[OutboxMessage], until: datetime) -> list[int]:
    """Extend the claim of rows still ours; returns the ids of those still ours."""
    kept = []
    with Session(db_engine) as session:
        for row in rows:
            if repository.update_if_still_claimed(session, row, claimed_until=until):
                kept.append(row.id)
        session.commit()
    return [i for i in kept if i is not None]


def _record_failed(
    db_engine: Engine,
    settings: Settings,
    row: OutboxMessage,
    answer: str,
    notice: OutgoingMail | None,
) -> tuple[bool, int | None]:
    """Mark the row failed and, in the same transaction, queue the handlers' notice.
    Returns whether the row was still ours, and the notice's outbox id."""
    with Session(db_engine) as session:
        if not _update_claimed(
            session, row, status="failed", claimed_until=None, last_error=answer
        ):
            session.rollback()
            return False, None
        queued = enqueue(session, notice, settings.mail_domain) if notice else None
        session.commit()
        return True, queued.id if queued is not None else None


def _back_to_pending(
    db_engine: Engine,
    rows: Sequence[OutboxMessage],
    next_attempt_at: datetime,
    answer: str,
    *,
    tried: bool,
) -> int:
    """Put claimed rows back to 'pending' until ``next_attempt_at``; rows that were not
    ``tried`` get their attempt back. Returns how many were still ours."""
    released = 0
    with Session(db_engine) as session:
        for row in rows:
            values: dict[str, object] = {
                "status": "pending",
                "next_attempt_at": next_attempt_at,
                "claimed_until": None,
                "last_error": answer,
            }
            if not tried:
                values["attempts"] = row.attempts - 1
            released += _update_claimed(session, row, **values)
        session.commit()
    return released


def failure_notice(
    renderer: LetterRenderer,
    settings: Settings,
    row: OutboxMessage,
    answer: str,
    at: datetime,
    *,
    language: str = "ja",
) -> OutgoingMail | None:
    """The handlers' ``delivery_failed`` letter about ``row``: the reference, the letter and the
    server's answer without addresses; no recipient, name or body. None for a failed notice."""
    if row.letter == DELIVERY_FAILED:
        return None
    context = {
        "handler_email": settings.handler_email,
        "reference": row.reference or "-",
        "letter": row.letter,
        "outbox_id": row.id,
        "attempts": row.attempts,
        "failed_at_local": at.astimezone(settings.tz).strftime("%Y-%m-%d %H:%M"),
        "answer": _redact(answer),
        "handler_url": f"{settings.base_url}/console/requests/{row.request_id}"
        if row.request_id
        else None,
    }
    try:
        letter = renderer.render(DELIVERY_FAILED, language, context)
    except Exception:  # a broken template must not keep the row from being marked failed
        log.exception("outbox %s (%s): cannot render %s", row.id, row.reference, DELIVERY_FAILED)
        return None
    return OutgoingMail(
        dedup_key=f"{DELIVERY_FAILED}:{row.id}",
        letter=DELIVERY_FAILED,
        recipient=settings.handler_email,
        subject=letter.subject,
        body=letter.body,
        request_id=row.request_id,
        reference=row.reference,
    )


async def flush_outbox(
    db_engine: Engine,
    settings: Settings,
    renderer: LetterRenderer,
    *,
    sender: EmailSender | None = None,
    batch_size: int = 100,
    now: datetime | None = None,
    retry: RetryPolicy = RetryPolicy(),  # frozen, so one shared default is safe
    lease: timedelta = DEFAULT_LEASE,
    from_name: str | None = None,
    due_only: bool = True,
) -> FlushReport:
    """Send every outbox row that is due, batch after batch, and record each outcome.

    ``due_only=False`` (``dsrflow outbox flush`` without ``--due-only``) also tries, once each,
    the rows waiting out a backoff after a temporary failure, as ``postqueue -f`` does.

    ``from_name`` is the display name of From (the company's name, e.g.
    ``rt.definitions.company.name.for_language("ja")``); without it From is the bare address.
    ``sender`` defaults to SMTP or the Maildir as configured; it is closed at the end, so one
    sender may serve many flushes. ``now`` (aware) replaces the clock for due times and backoff.
    Database work runs in worker threads, so this is safe to call repeatedly from a running
    event loop (the scheduler) alongside other dispatchers, in this process or others."""
    flush = _Flush(
        db_engine,
        settings,
        renderer,
        sender if sender is not None else sender_for(settings),
        retry,
        lease,
        from_name,
    )
    tried: set[int] = set()
    try:
        while True:
            at = now or utcnow()
            batch = await asyncio.to_thread(
                claim_due,
                db_engine,
                at,
                batch_size,
                lease,
                deferred=not due_only,
                skip_ids=tried,
            )
            if not batch:
                break
            tried.update(row.id for row in batch if row.id is not None)
            await flush.deliver(batch, at)
            # Until nothing is due: this also sends the delivery_failed notices just queued.
            if flush.report.error is not None:
                break
    finally:
        await flush.sender.close()
    flush.report.unreachable = flush.report.error is not None and not flush.answered
    return flush.report


@dataclass
class _Flush:
    """One flush's collaborators and tally."""

    db: Engine
    settings: Settings
    renderer: LetterRenderer
    sender: EmailSender
    retry: RetryPolicy
    lease: timedelta
    from_name: str | None
    report: FlushReport = field(default_factory=FlushReport)
    answered: bool = False  # the server took or refused at least one message

    async def deliver(self, batch: Sequence[OutboxMessage], at: datetime) -> None:
        # ``open_rows``: the batch's rows still ours and not yet done; a task renews their
        # lease while the batch is worked through (see _keep_claims).
        open_rows: dict[int | None, OutboxMessage] = {row.id: row for row in batch}
        lost: set[int] = set()
        keeper = asyncio.create_task(self._keep_claims(open_rows, lost, at))
        try:
            for index, row in enumerate(batch):
                if row.id in lost:
                    log.warning(
                        "outbox %s (%s): claim lost; left to its new owner", row.id, row.reference
                    )
                    continue
                try:
                    await self._deliver_one(row, at)
                except ServerUnreachable as exc:
                    self.report.error = _redact(exc.answer)
                    log.warning(
                        "outbox: mail server unreachable, %d rows wait: %s",
                        len(batch) - index,
                        self.report.error,
                    )
                    await self._release(batch[index:], at + self.retry.first_delay, exc.answer)
                    return
                finally:
                    open_rows.pop(row.id, None)  # done: no more renewals
        finally:
            keeper.cancel()

    async def _deliver_one(self, row: OutboxMessage, at: datetime) -> None:
        """Send one row and record its outcome before the next is sent, so a crash can repeat
        at most this one. Raises ServerUnreachable, for the batch to wait."""
        try:
            message = build_message(row, self.settings, from_name=self.from_name)
        except ValueError as exc:
            await self._fail(row, f"invalid message: {exc}", at)
            return
        try:
            await self.sender.send(message, row.recipient)
        except ServerUnreachable:
            raise  # no message is at fault: the caller puts the batch back
        except PermanentFailure as exc:
            self.answered = True
            await self._fail(row, exc.answer, at)
        except TemporaryFailure as exc:
            self.answered = True
            await self._retry_later(row, exc.answer, at)
        except Exception as exc:
            # Unexpected: one row's problem must not stop the batch; try it again later.
            log.error("outbox %s (%s): %s while sending", row.id, row.reference, type(exc).__name__)
            await self._retry_later(row, f"{type(exc).__name__}: {exc}", at)
        else:
            self.answered = True
            if await asyncio.to_thread(_record_sent, self.db, row, at):
                self.report.sent += 1
            log.info("outbox %s (%s, %s): sent", row.id, row.reference, row.letter)

    async def _keep_claims(
        self, open_rows: dict[int | None, OutboxMessage], lost: set[int], at: datetime
    ) -> None:
        """Every third of a lease, extend the lease of the rows not yet done, also while one
        message takes long (a slow server), so a live dispatcher keeps its rows and a dead one
        loses them within one lease. Rows another dispatcher took over go into ``lost``."""
        started = time.monotonic()
        while open_rows:
            await asyncio.sleep(self.lease.total_seconds() / 3)
            rows = list(open_rows.values())
            until = at + timedelta(seconds=time.monotonic() - started) + self.lease
            try:
                kept = set(await asyncio.to_thread(_renew, self.db, rows, until))
            except Exception:  # the next renewal may work; the outcomes are checked anyway
                log.exception("outbox: cannot renew the claim of %d rows", len(rows))
                continue
            for row in rows:
                # A row done meanwhile has left open_rows; its renewal failing means nothing.
                if row.id is not None and row.id not in kept and row.id in open_rows:
                    del open_rows[row.id]
                    lost.add(row.id)

    async def _release(self, rows: Sequence[OutboxMessage], at: datetime, answer: str) -> None:
        self.report.retried += await asyncio.to_thread(
            _back_to_pending, self.db, rows, at, answer, tried=False
        )

    async def _retry_later(self, row: OutboxMessage, answer: str, at: datetime) -> None:
        """A temporary failure: back to pending with backoff, or failed once attempts run out."""
        if row.attempts >= self.retry.max_attempts:
            await self._fail(row, f"{answer} (gave up after {row.attempts} attempts)", at)
            return
        next_at = at + self.retry.delay(row.attempts)
        self.report.retried += await asyncio.to_thread(
            _back_to_pending, self.db, [row], next_at, answer, tried=True
        )
        log.warning(
            "outbox %s (%s, %s): temporary failure, attempt %d, next at %s: %s",
            row.id,
            row.reference,
            row.letter,
            row.attempts,
            next_at.isoformat(),
            _redact(answer),
        )

    async def _fail(self, row: OutboxMessage, answer: str, at: datetime) -> None:
        """A permanent failure: the row is failed and the handlers are told."""
        notice = failure_notice(self.renderer, self.settings, row, answer, at)
        recorded, notice_id = await asyncio.to_thread(
            _record_failed, self.db, self.settings, row, answer, notice
        )
        if not recorded:
            return
        self.report.failed += 1
        if notice_id is not None:
            self.report.notices.append(notice_id)
        log.error(
            "outbox %s (%s, %s): failed permanently (%s): %s",
            row.id,
            row.reference,
            row.letter,
            f"handlers notified by outbox {notice_id}" if notice_id else "no notice",
            _redact(answer),
        )
