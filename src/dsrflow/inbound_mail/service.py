"""The inbox service: what becomes of an inbound message. The only place here that commits.

A message is recorded, and acted on, in one transaction: its row (the Message-ID is unique, so
the same message twice is one), the request it creates with the acknowledgment and notices, or
the event that joins it to a request and the note to the handlers, and, for IMAP, the folder's
last UID. A crash before the commit leaves nothing behind; the message is read again. A batch
(``record_batch``) shares one transaction among several messages, each in a savepoint.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel
from sqlalchemy import Row
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from dsrflow.audit.chain import append_event
from dsrflow.db import utcnow
from dsrflow.inbound_mail import mailbox, repository
from dsrflow.inbound_mail.decisions import decide, facts_for, from_requester
from dsrflow.inbound_mail.models import InboundAttachment, InboundMessage
from dsrflow.inbound_mail.schemas import (
    AttachmentPublic,
    ImapOrigin,
    InboundMail,
    InboxItem,
    InboxMessage,
    IngestOutcome,
    IntakePolicy,
)
from dsrflow.outbound_mail.outbox import enqueue
from dsrflow.requests import repository as requests_repository
from dsrflow.requests.letters import HANDLER_LANGUAGE, letter_context, queue_letter
from dsrflow.requests.models import Request
from dsrflow.requests.notices import tell_desk
from dsrflow.requests.service import open_request
from dsrflow.runtime import Runtime

log = logging.getLogger(__name__)

SENDER_DIFFERS_LETTER = "sender_differs"
# Attachments described in one message's view; the count gives the rest.
LISTED_ATTACHMENTS = 100


# --------------------------------------------------------------------------- ingest


def record_inbound(
    rt: Runtime,
    session: Session,
    mail: InboundMail,
    *,
    origin: ImapOrigin | None = None,
    policy: IntakePolicy = IntakePolicy(),  # frozen, so one shared default is safe
) -> IngestOutcome:
    """Record one inbound message and act on it, in one transaction, and commit.

    A reply (reference in the subject, or In-Reply-To/References naming a letter we sent or a
    message of the request) joins its open request; a message that names one request type
    creates a request as of its arrival (at most ``policy.requests_per_sender`` per address
    and window); the rest goes to triage: several requests named, a closed request, a text
    naming a request. Auto-replies, bounces and our own mail are recorded as ignored, never
    answered. Whatever goes wrong while acting, the message is still recorded (quarantined,
    with the reason); only a database that cannot be written raises. Raises ClaimLost
    (nothing recorded) when ``origin``'s claim is gone.
    """
    now = utcnow()
    try:
        outcome = _record(rt, session, mail, origin, now, policy)
        session.commit()
    except mailbox.ClaimLost:
        session.rollback()
        raise
    except IntegrityError as exc:
        # Most likely the same message, recorded meanwhile by another process.
        session.rollback()
        existing = repository.by_message_id(session, mail.message_id)
        if existing is None:
            outcome = _record_failure(session, mail, origin, now, _failed(mail, exc))
        else:
            mailbox.advance(session, origin, now)
            session.commit()
            outcome = _duplicate(existing)
    except Exception as exc:
        session.rollback()
        outcome = _record_failure(session, mail, origin, now, _failed(mail, exc))
    log.info("inbound message #%s: %s", outcome.inbound_id, outcome.describe())
    return outcome


def record_batch(
    rt: Runtime,
    session: Session,
    mails: Sequence[InboundMail],
    *,
    policy: IntakePolicy = IntakePolicy(),
) -> list[IngestOutcome]:
    """Record several messages, each as ``record_inbound`` would, in one transaction: one
    commit (one sync on SQLite) for them all.

    Each message runs in a SAVEPOINT of its own, so one that fails while acting is rolled back
    alone and recorded quarantined, as ``record_inbound`` does it. The outcomes hold only once
    this returns: when it raises (the database cannot be written, or the commit fails), none of
    the messages was recorded."""
    now = utcnow()
    try:
        outcomes = [_record_nested(rt, session, mail, now, policy) for mail in mails]
        session.commit()
    except BaseException:
        session.rollback()
        raise
    for outcome in outcomes:
        log.info("inbound message #%s: %s", outcome.inbound_id, outcome.describe())
    return outcomes


def _record_nested(
    rt: Runtime, session: Session, mail: InboundMail, now: datetime, policy: IntakePolicy
) -> IngestOutcome:
    """One message of ``record_batch``, in a savepoint; raises only when even its quarantine
    cannot be written (the whole batch then fails)."""
    try:
        with session.begin_nested():
            return _record(rt, session, mail, None, now, policy)
    except IntegrityError as exc:
        # Most likely the same message, recorded meanwhile by another process (PostgreSQL).
        existing = repository.by_message_id(session, mail.message_id)
        if existing is not None:
            return _duplicate(existing)
        reason = _failed(mail, exc)
    except Exception as exc:
        reason = _failed(mail, exc)
    with session.begin_nested():
        row = _add_row(session, mail, None, "quarantined", reason, None)
    return IngestOutcome(inbound_id=row.id, status="quarantined", reason=reason)


def _record(
    rt: Runtime,
    session: Session,
    mail: InboundMail,
    origin: ImapOrigin | None,
    now: datetime,
    policy: IntakePolicy,
) -> IngestOutcome:
    existing = repository.seen(session, mail.message_id)
    if existing is not None:
        mailbox.advance(session, origin, now)
        return _duplicate(existing)

    facts = facts_for(
        session,
        mail,
        now=now,
        policy=policy,
        closed_states=frozenset(rt.closed_states),
        configured_types=frozenset(rt.definitions.workflows),
    )
    decision = decide(facts)
    status, reason, request = decision.status, decision.reason, decision.about
    if status == "created":
        assert decision.create is not None
        # The request first, so that the message's row is written once, naming it.
        submitted = open_request(
            rt, session, decision.create, channel="email", received_at=mail.received_at
        )
        request = submitted.request
    row = _add_row(session, mail, origin, status, reason, request.id if request else None)
    for attachment in mail.attachments:
        session.add(
            InboundAttachment(
                inbound_message_id=row.id,
                filename=attachment.filename,
                content_type=attachment.content_type,
                size=attachment.size,
                sha256=attachment.sha256,
                content=attachment.content,
            )
        )

    about = decision.about
    if status == "ignored" and mail.is_bounce:
        _bounced(rt, session, row, mail)
    if decision.sender_differs and about is not None:
        _sender_differs(rt, session, about, row, mail)
    if status == "joined":
        assert about is not None
        _join(rt, session, about, row, mail)
    elif status == "created":
        assert request is not None
        _message_event(session, request, row, mail, actor="requester")
    mailbox.advance(session, origin, now)
    session.flush()
    return IngestOutcome(
        inbound_id=row.id,
        status=status,
        reason=reason,
        request_id=request.id if request is not None else None,
        reference=request.reference if request is not None else None,
    )


def _join(
    rt: Runtime, session: Session, request: Request, row: Recorded, mail: InboundMail
) -> None:
    # The request's row lock before its event, as every writer of events takes it.
    request = requests_repository.lock(session, request.id) or request
    matches = from_requester(request, mail.from_address)
    _message_event(session, request, row, mail, actor="requester" if matches else "mail")
    # The desk hears of every reply to an open request, with the requester's name and text.
    tell_desk(
        rt,
        session,
        request,
        "reply",
        key=f"reply:{row.id}",
        at=mail.received_at,
        text=mail.text,
        details={"attachments": mail.attachment_count, "from_requester": matches},
    )


def _sender_differs(
    rt: Runtime, session: Session, request: Request, row: Recorded, mail: InboundMail
) -> None:
    """Someone other than the requester or agent wrote about a request: the handlers are told,
    in the subject, and the message waits in triage (never joined, nothing sent to its sender)."""
    context = {
        **letter_context(rt, request, language=HANDLER_LANGUAGE),
        "mail_received_at_local": mail.received_at.astimezone(rt.settings.tz).strftime(
            "%Y-%m-%d %H:%M"
        ),
        "attachment_count": mail.attachment_count,
        "inbox_url": f"{rt.settings.base_url}/api/v1/inbox/{row.id}",
    }
    queue_letter(
        rt,
        session,
        request,
        f"sender_differs:{row.id}",
        SENDER_DIFFERS_LETTER,
        context,
        recipient=rt.settings.handler_email,
        language=HANDLER_LANGUAGE,
    )


def _bounced(rt: Runtime, session: Session, row: Recorded, mail: InboundMail) -> None:
    """A letter of ours came back: the handlers get the ``delivery_failed`` notice, once per
    letter (the same dedup key as a failure at sending), never the requester.

    The letter is the one whose Message-ID the bounce returns (attached or quoted); failing
    that, a bounce linked to a request only by its reference returns that request's latest
    letter to the requester, and tells the handlers only if nothing of it has bounced yet."""
    letters = repository.letters_by_message_id(session, mail.returned_ids)
    if not letters and row.request_id and not repository.failure_noticed(session, row.request_id):
        # Which letter it returns is unknown: the latest, unless the handlers already know
        # that this request's mail does not arrive.
        latest = repository.letters_to_requester(session, row.request_id, rt.settings.handler_email)
        letters = latest[:1]
    answer = f"returned by a delivery report (inbox message #{row.id})"
    if mail.bounce_diagnostic:
        answer += f": {mail.bounce_diagnostic}"
    for letter in letters:
        from dsrflow.outbound_mail.dispatch import failure_notice  # not on every intake's path

        notice = failure_notice(rt.letters, rt.settings, letter, answer, mail.received_at)
        if notice is not None and enqueue(session, notice, rt.mail_domain) is not None:
            log.warning(
                "outbox %s (%s, %s): bounced; handlers notified",
                letter.id,
                letter.reference,
                letter.letter,
            )


def _message_event(
    session: Session,
    request: Request,
    row: Recorded,
    mail: InboundMail,
    *,
    actor: str,
    extra: dict[str, Any] | None = None,
) -> None:
    # The chain is permanent: it records that a message came and where it is, not its words.
    append_event(
        session,
        request.id,
        kind="message",
        actor=actor,
        at=mail.received_at,
        detail={
            "inbound_message_id": row.id,
            "message_id": row.message_id,
            "attachments": mail.attachment_count,
            "from_requester": from_requester(request, mail.from_address),
            **(extra or {}),
        },
    )


@dataclass
class Recorded:
    """A message row just inserted: what acting on it needs."""

    id: int
    message_id: str
    request_id: str | None


def _add_row(
    session: Session,
    mail: InboundMail,
    origin: ImapOrigin | None,
    status: str,
    reason: str | None,
    request_id: str | None,
) -> Recorded:
    """Insert the message's row (a racing copy of the same message fails here, on the unique
    Message-ID)."""
    values = {
        "message_id": mail.message_id,
        "source": mail.source,
        "status": status,
        "reason": reason,
        "request_id": request_id,
        "from_address": mail.from_address,
        "from_name": mail.from_name,
        "subject": mail.subject,
        "text": mail.text,
        "language": mail.language,
        "detected_type": mail.detected_type,
        "in_reply_to": mail.in_reply_to,
        "references": mail.references,
        "received_at": mail.received_at,
        "received_at_source": mail.received_at_source,
        "date_header": mail.date_header,
        "raw": mail.raw,
        "raw_size": mail.raw_size,
        "raw_sha256": hashlib.sha256(mail.raw).hexdigest(),
        "attachments_omitted": mail.attachments_omitted,
        "imap_mailbox": origin.mailbox if origin else None,
        "imap_uidvalidity": origin.uidvalidity if origin else None,
        "imap_uid": origin.uid if origin else None,
        "created_at": utcnow(),
    }
    return Recorded(repository.add_new(session, values), mail.message_id, request_id)


def _failed(mail: InboundMail, exc: Exception) -> str:
    """Log, with its traceback, why a message could not be acted on (``exc``, being handled);
    the reason its quarantine records."""
    if isinstance(exc, IntegrityError):
        log.exception("inbound message %s could not be recorded", mail.message_id)
        return "could not be recorded"
    log.exception("inbound message %s could not be processed", mail.message_id)
    return f"could not be processed ({type(exc).__name__})"


def _record_failure(
    session: Session, mail: InboundMail, origin: ImapOrigin | None, now: datetime, reason: str
) -> IngestOutcome:
    """Keep a message that could not be acted on, quarantined, so a handler sees it."""
    try:
        row = _add_row(session, mail, origin, "quarantined", reason, None)
        mailbox.advance(session, origin, now)
        session.commit()
    except IntegrityError:
        session.rollback()
        existing = repository.by_message_id(session, mail.message_id)
        if existing is None:
            raise
        mailbox.advance(session, origin, now)
        session.commit()
        return _duplicate(existing)
    return IngestOutcome(inbound_id=row.id, status="quarantined", reason=reason)


def _duplicate(existing: InboundMessage | Row[Any]) -> IngestOutcome:
    assert existing.id is not None
    return IngestOutcome(
        inbound_id=existing.id,
        status=existing.status,
        reason=existing.reason,
        request_id=existing.request_id,
        duplicate=True,
    )


# --------------------------------------------------------------------------- views


def describe_items(session: Session, rows: list[InboundMessage]) -> list[InboxItem]:
    """List entries for ``rows``, with the reference of their request and attachment counts."""
    references = repository.references_of(session, [r.request_id for r in rows if r.request_id])
    counts = repository.attachment_counts(session, [r.id for r in rows if r.id is not None])
    return [
        _view(InboxItem, row, **_counted(row, references, counts.get(row.id or 0, 0)))
        for row in rows
    ]


def describe(session: Session, row: InboundMessage) -> InboxMessage:
    """One message, whole, as handlers see it."""
    assert row.id is not None
    references = repository.references_of(session, [row.request_id] if row.request_id else [])
    count = repository.attachment_counts(session, [row.id]).get(row.id, 0)
    files = repository.attachments(session, [row.id], limit=LISTED_ATTACHMENTS)
    return _view(
        InboxMessage,
        row,
        **_counted(row, references, count),
        attachments=[_view(AttachmentPublic, a, stored=stored) for a, stored in files],
    )


View = TypeVar("View", bound=BaseModel)


def _view(model: type[View], row: Any, **extra: Any) -> View:
    """``model`` read from the row's attributes of the same names, and ``extra``."""
    fields = {name: getattr(row, name) for name in model.model_fields if name not in extra}
    return model.model_validate({**fields, **extra})


def _counted(row: InboundMessage, references: dict[str, str], count: int) -> dict[str, Any]:
    return {
        "reference": references.get(row.request_id) if row.request_id else None,
        "art39_date": None,  # the API adds it (it knows the calendar)
        "attachment_count": count + (row.attachments_omitted or 0),
    }
