"""The inbox service: what becomes of an inbound message. The only place here that commits.

A message is recorded, and acted on, in one transaction: its row (the Message-ID is unique, so
the same message twice is one), the request it creates with the acknowledgment and notices, or
the event that joins it to a request and the note to the handlers, and, for IMAP, the folder's
last UID. A crash before the commit leaves nothing behind; the message is read again.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from dsrflow.audit.chain import append_event
from dsrflow.db import utcnow
from dsrflow.errors import Conflict, Invalid, NotFound
from dsrflow.inbound_mail import repository
from dsrflow.inbound_mail.models import (
    OPEN_STATUSES,
    ImapSyncState,
    InboundAttachment,
    InboundMessage,
)
from dsrflow.inbound_mail.reading import agent_phrase, rules_for
from dsrflow.inbound_mail.schemas import (
    AttachmentPublic,
    Claim,
    ConvertIn,
    ImapOrigin,
    InboundMail,
    InboxItem,
    InboxMessage,
    IngestOutcome,
    IntakePolicy,
)
from dsrflow.outbound_mail.dispatch import failure_notice
from dsrflow.outbound_mail.outbox import enqueue
from dsrflow.requests.letters import HANDLER_LANGUAGE, letter_context, queue_letter
from dsrflow.requests.models import Request
from dsrflow.requests.schemas import RequestCreate
from dsrflow.requests.service import open_request
from dsrflow.runtime import Runtime
from dsrflow.workflow.definitions import AWAITING_STATE

log = logging.getLogger(__name__)

REPLIED_LETTER = "requester_replied"
MAX_DETAILS = 20_000
# Attachments described in one message's view; the count gives the rest.
LISTED_ATTACHMENTS = 100


class ClaimLost(Exception):
    """Another poller holds the mailbox now; stop reading it."""


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
    except ClaimLost:
        session.rollback()
        raise
    except IntegrityError:
        # Most likely the same message, recorded meanwhile by another process.
        session.rollback()
        existing = repository.by_message_id(session, mail.message_id)
        if existing is None:
            log.exception("inbound message %s could not be recorded", mail.message_id)
            outcome = _record_failure(session, mail, origin, now, "could not be recorded")
        else:
            _advance(session, origin, now)
            session.commit()
            outcome = _duplicate(existing)
    except Exception as exc:
        session.rollback()
        log.exception("inbound message %s could not be processed", mail.message_id)
        outcome = _record_failure(
            session, mail, origin, now, f"could not be processed ({type(exc).__name__})"
        )
    log.info("inbound message #%s: %s", outcome.inbound_id, outcome.describe())
    return outcome


def _record(
    rt: Runtime,
    session: Session,
    mail: InboundMail,
    origin: ImapOrigin | None,
    now: datetime,
    policy: IntakePolicy,
) -> IngestOutcome:
    existing = repository.by_message_id(session, mail.message_id)
    if existing is not None:
        _advance(session, origin, now)
        return _duplicate(existing)

    status, reason, new_request, request = _decide(rt, session, mail, now, policy)
    row = _message_row(mail, origin, status=status, reason=reason)
    row.request_id = request.id if request is not None else None
    session.add(row)
    session.flush()  # a racing copy of the same message fails here, on the unique Message-ID
    assert row.id is not None
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

    if status == "ignored" and mail.returned_ids:
        _bounced(rt, session, row, mail)
    if status == "joined":
        assert request is not None
        _join(rt, session, request, row, mail)
    elif status == "created":
        assert new_request is not None
        submitted = open_request(
            rt, session, new_request, channel="email", received_at=mail.received_at
        )
        request = submitted.request
        row.request_id = request.id
        session.add(row)
        _message_event(session, request, row, mail, actor="requester")
    _advance(session, origin, now)
    session.flush()
    return IngestOutcome(
        inbound_id=row.id,
        status=status,
        reason=reason,
        request_id=request.id if request is not None else None,
        reference=request.reference if request is not None else None,
    )


Decision = tuple[str, str | None, RequestCreate | None, Request | None]


def _decide(
    rt: Runtime, session: Session, mail: InboundMail, now: datetime, policy: IntakePolicy
) -> Decision:
    """(status, reason, the request to create, the request it is about) for a message not
    seen before."""
    # What the subject and the threading say it answers: more than one request is a guess.
    answered: dict[str, Request] = {
        r.id: r for r in repository.requests_by_reference(session, mail.named_references)
    }
    threaded = repository.request_for_thread(session, mail.thread_ids)
    if threaded is not None:
        answered.setdefault(threaded.id, threaded)
    about = next(iter(answered.values())) if len(answered) == 1 else None
    quoted: list[Request] = []
    if not answered and mail.body_references:
        quoted = repository.requests_by_reference(session, mail.body_references)
        about = quoted[0] if len(quoted) == 1 else None

    if mail.quarantine_reason:
        return "quarantined", mail.quarantine_reason, None, about
    if mail.ignore_reason:
        return "ignored", mail.ignore_reason, None, about
    if repository.is_our_message_id(session, mail.message_id):
        reason = "our own message (its Message-ID is one of our letters)"
        return "ignored", reason, None, about
    if len(answered) > 1:
        named = ", ".join(sorted(r.reference for r in answered.values()))
        return "triage", f"names several requests ({named}): which one is unclear", None, None
    if about is not None and about.state in rt.closed_states:
        # Nobody reads a closed request's mail: a handler decides (a new request, or nothing).
        reason = f"about {about.reference}, which is closed ({about.state})"
        return "triage", reason, None, about
    if answered:
        return "joined", None, None, about
    if mail.named_references:
        unknown = ", ".join(mail.named_references)
        return "triage", f"names an unknown reference ({unknown})", None, None
    if mail.body_references:
        # Its text names a request: a reply, or an auto-responder quoting our letter, never a
        # new request.
        if len(quoted) > 1:
            named = ", ".join(r.reference for r in quoted)
            return "triage", f"the text names several requests ({named})", None, None
        if about is None:
            unknown = ", ".join(mail.body_references)
            return "triage", f"the text names an unknown reference ({unknown})", None, None
        if not _from_requester(about, mail.from_address):
            reason = f"the text names {about.reference}, but the sender is not its requester"
            return "triage", reason, None, about
        return "joined", None, None, about
    if mail.detected_type is None or mail.type_problem:
        return "triage", mail.type_problem or "no request type recognised", None, None
    if not mail.from_address:
        return "triage", "no usable sender address to answer", None, None
    agent_words = agent_phrase(mail.subject or "", mail.text, rules_for(rt))
    if agent_words:
        reason = f"reads as sent by an agent ('{agent_words}'): convert it with the agent recorded"
        return "triage", reason, None, None
    since = now - policy.sender_window
    if repository.requests_created_from(session, mail.from_address, since) >= (
        policy.requests_per_sender
    ):
        hours = policy.sender_window.total_seconds() / 3600
        reason = (
            f"this sender's mail already made {policy.requests_per_sender} request(s) "
            f"in the last {hours:g} hours (a possible mail loop)"
        )
        return "triage", reason, None, None
    try:
        data = RequestCreate(
            type=mail.detected_type,
            name=_requester_name(mail.from_name, mail.from_address),
            email=mail.from_address,
            details=_details(mail.subject, mail.text),
            language="en" if mail.language == "en" else "ja",
        )
    except ValidationError as exc:
        fields = ", ".join(str(e["loc"][0]) for e in exc.errors() if e.get("loc"))
        return "triage", f"cannot make a request of it: invalid {fields or 'fields'}", None, None
    if data.type not in rt.definitions.workflows:
        return "triage", f"the type '{data.type}' is not configured", None, None
    return "created", None, data, None


def _join(
    rt: Runtime, session: Session, request: Request, row: InboundMessage, mail: InboundMail
) -> None:
    matches = _from_requester(request, mail.from_address)
    _message_event(session, request, row, mail, actor="requester" if matches else "mail")
    if request.state != AWAITING_STATE:
        return
    # The handlers wait for this answer: tell them, with no more than they need to find it.
    tz = rt.settings.tz
    context = {
        **letter_context(rt, request, language=HANDLER_LANGUAGE),
        "reply_received_at_local": mail.received_at.astimezone(tz).strftime("%Y-%m-%d %H:%M"),
        "awaiting_since_local": request.awaiting_requester_at.astimezone(tz).strftime(
            "%Y-%m-%d %H:%M"
        )
        if request.awaiting_requester_at
        else None,
        "from_requester": matches,
        "attachment_count": mail.attachment_count,
        "messages_url": f"{rt.settings.base_url}/api/v1/requests/{request.id}/messages",
    }
    queue_letter(
        rt,
        session,
        request,
        f"reply:{row.id}",
        REPLIED_LETTER,
        context,
        recipient=rt.settings.handler_email,
        language=HANDLER_LANGUAGE,
    )


def _bounced(rt: Runtime, session: Session, row: InboundMessage, mail: InboundMail) -> None:
    """A letter of ours came back: the handlers get the ``delivery_failed`` notice, once per
    letter (the same dedup key as a failure at sending), never the requester."""
    answer = f"returned by a delivery report (inbox message #{row.id})"
    if mail.bounce_diagnostic:
        answer += f": {mail.bounce_diagnostic}"
    for letter in repository.letters_by_message_id(session, mail.returned_ids):
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
    row: InboundMessage,
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
            "from_requester": _from_requester(request, mail.from_address),
            **(extra or {}),
        },
    )


def _from_requester(request: Request, address: str | None) -> bool:
    if not address:
        return False
    known = {request.requester_email.lower(), (request.agent_email or "").lower()}
    return address.lower() in known


def _requester_name(name: str | None, address: str) -> str:
    name = " ".join((name or "").split())[:200]
    return name or address.partition("@")[0][:200] or address[:200]


def _details(subject: str | None, text: str) -> str:
    details = "\n\n".join(part for part in ((subject or "").strip(), text.strip()) if part)
    return (details or "(empty message)")[:MAX_DETAILS]


def _message_row(
    mail: InboundMail, origin: ImapOrigin | None, *, status: str, reason: str | None
) -> InboundMessage:
    return InboundMessage(
        message_id=mail.message_id,
        source=mail.source,
        status=status,
        reason=reason,
        from_address=mail.from_address,
        from_name=mail.from_name,
        subject=mail.subject,
        text=mail.text,
        language=mail.language,
        detected_type=mail.detected_type,
        in_reply_to=mail.in_reply_to,
        references=mail.references,
        received_at=mail.received_at,
        received_at_source=mail.received_at_source,
        date_header=mail.date_header,
        raw=mail.raw,
        raw_size=mail.raw_size,
        raw_sha256=hashlib.sha256(mail.raw).hexdigest(),
        attachments_omitted=mail.attachments_omitted,
        imap_mailbox=origin.mailbox if origin else None,
        imap_uidvalidity=origin.uidvalidity if origin else None,
        imap_uid=origin.uid if origin else None,
    )


def _record_failure(
    session: Session, mail: InboundMail, origin: ImapOrigin | None, now: datetime, reason: str
) -> IngestOutcome:
    """Keep a message that could not be acted on, quarantined, so a handler sees it."""
    try:
        row = _message_row(mail, origin, status="quarantined", reason=reason)
        session.add(row)
        session.flush()
        _advance(session, origin, now)
        session.commit()
    except IntegrityError:
        session.rollback()
        existing = repository.by_message_id(session, mail.message_id)
        if existing is None:
            raise
        _advance(session, origin, now)
        session.commit()
        return _duplicate(existing)
    assert row.id is not None
    return IngestOutcome(inbound_id=row.id, status="quarantined", reason=reason)


def _duplicate(existing: InboundMessage) -> IngestOutcome:
    assert existing.id is not None
    return IngestOutcome(
        inbound_id=existing.id,
        status=existing.status,
        reason=existing.reason,
        request_id=existing.request_id,
        duplicate=True,
    )


def _advance(session: Session, origin: ImapOrigin | None, now: datetime) -> None:
    if origin is None:
        return
    if not repository.advance_sync_state(
        session,
        origin.sync_state_id,
        claim=origin.claim,
        uidvalidity=origin.uidvalidity,
        uid=origin.uid,
        claimed_until=now + timedelta(seconds=origin.lease_seconds),
        now=now,
    ):
        raise ClaimLost(origin.mailbox)


# --------------------------------------------------------------------------- triage


def convert(
    rt: Runtime, session: Session, inbound_id: int, data: ConvertIn, *, actor: str
) -> tuple[InboundMessage, Request]:
    """Make a request of a message waiting in triage (or quarantine), and commit.

    The request's arrival is the message's arrival, so the Art. 39 clock and the due date run
    from when the mail reached the mailbox, not from when a handler got to it. Raises
    NotFound, Conflict (already decided) or Invalid (unknown type, no usable address).
    """
    row = repository.get(session, inbound_id)
    if row is None:
        raise NotFound("No such message.")
    if row.status not in OPEN_STATUSES:
        raise Conflict(
            f"the message is '{row.status}', not waiting for a decision", status_now=row.status
        )
    email = str(data.email) if data.email else row.from_address
    if not email:
        raise Invalid({"email": "the message has no usable sender address; give one"})
    try:
        create = RequestCreate(
            type=data.type,
            name=data.name or _requester_name(row.from_name, email),
            email=email,
            details=_details(row.subject, row.text),
            language=data.language or ("en" if row.language == "en" else "ja"),
            agent=data.agent,
        )
    except ValidationError as exc:
        raise Invalid(
            {".".join(str(p) for p in e["loc"]) or "body": e["msg"] for e in exc.errors()}
        ) from exc
    request = open_request(
        rt, session, create, channel="email", received_at=row.received_at
    ).request
    now = utcnow()
    if not repository.update_if_status(
        session,
        inbound_id,
        OPEN_STATUSES,
        {"status": "created", "request_id": request.id, "decided_by": actor, "decided_at": now},
    ):
        session.rollback()
        current = repository.get(session, inbound_id)
        status = current.status if current else "unknown"
        raise Conflict(f"the message was decided meanwhile (now '{status}')", status_now=status)
    append_event(
        session,
        request.id,
        kind="message",
        actor=actor,
        at=row.received_at,
        detail={
            "inbound_message_id": row.id,
            "message_id": row.message_id,
            "converted_from": row.status,
        },
    )
    session.commit()
    session.refresh(row)
    log.info("inbound message #%s converted to %s by %s", row.id, request.reference, actor)
    return row, request


def dismiss(
    rt: Runtime, session: Session, inbound_id: int, note: str, *, actor: str
) -> InboundMessage:
    """Close a triage (or quarantined) message with a note, and commit. No mail is sent."""
    row = repository.get(session, inbound_id)
    if row is None:
        raise NotFound("No such message.")
    values = {"status": "dismissed", "note": note, "decided_by": actor, "decided_at": utcnow()}
    if not repository.update_if_status(session, inbound_id, OPEN_STATUSES, values):
        session.rollback()
        current = repository.get(session, inbound_id)
        status = current.status if current else row.status
        raise Conflict(f"the message is '{status}', not waiting for a decision", status_now=status)
    session.commit()
    log.info("inbound message #%s dismissed by %s", inbound_id, actor)
    session.refresh(row)
    return row


# --------------------------------------------------------------------------- IMAP sync state


def claim_mailbox(
    session: Session, mailbox: str, uidvalidity: int, *, lease_seconds: float
) -> Claim | None:
    """Take the folder for reading, and commit; None while another poller holds it.

    A changed UIDVALIDITY means the server renumbered the folder: it is read again from the
    start (Message-IDs already recorded are recognised, so nothing is taken twice).
    """
    now = utcnow()
    token = secrets.token_hex(16)
    try:
        state = repository.sync_state(session, mailbox, lock=True)
        if state is None:
            if repository.sync_state(session, mailbox) is not None:  # locked by another
                session.rollback()
                return None
            state = ImapSyncState(mailbox=mailbox, uidvalidity=uidvalidity, last_uid=0)
            session.add(state)
            session.flush()
        if state.claimed_by and state.claimed_until and state.claimed_until > now:
            session.rollback()
            return None
        reset = state.uidvalidity is not None and state.uidvalidity != uidvalidity
        if reset:
            log.warning(
                "%s: UIDVALIDITY changed (%s -> %s); reading the folder again",
                mailbox,
                state.uidvalidity,
                uidvalidity,
            )
            state.last_uid = 0
        state.uidvalidity = uidvalidity
        state.claimed_by = token
        state.claimed_until = now + timedelta(seconds=lease_seconds)
        state.updated_at = now
        session.add(state)
        session.commit()
    except IntegrityError:  # another poller created the row first
        session.rollback()
        return None
    assert state.id is not None
    return Claim(
        sync_state_id=state.id,
        mailbox=mailbox,
        token=token,
        uidvalidity=uidvalidity,
        last_uid=int(state.last_uid),
        reset=reset,
        lease_seconds=lease_seconds,
    )


def skip_uid(session: Session, origin: ImapOrigin) -> None:
    """Record a UID as read without a message (it vanished before it could be fetched)."""
    now = utcnow()
    try:
        _advance(session, origin, now)
        session.commit()
    except ClaimLost:
        session.rollback()
        raise


def release_mailbox(session: Session, claim: Claim) -> None:
    """Let go of the folder, and commit."""
    repository.release_sync_state(session, claim.sync_state_id, claim=claim.token, now=utcnow())
    session.commit()


# --------------------------------------------------------------------------- views


def describe_items(session: Session, rows: list[InboundMessage]) -> list[InboxItem]:
    """List entries for ``rows``, with the reference of their request and attachment counts."""
    references = repository.references_of(session, [r.request_id for r in rows if r.request_id])
    counts = repository.attachment_counts(session, [r.id for r in rows if r.id is not None])
    return [InboxItem(**_item_fields(row, references, counts.get(row.id or 0, 0))) for row in rows]


def describe(session: Session, row: InboundMessage) -> InboxMessage:
    """One message, whole, as handlers see it."""
    assert row.id is not None
    references = repository.references_of(session, [row.request_id] if row.request_id else [])
    count = repository.attachment_counts(session, [row.id]).get(row.id, 0)
    files = repository.attachments(session, [row.id], limit=LISTED_ATTACHMENTS)
    return InboxMessage(
        **_item_fields(row, references, count),
        message_id=row.message_id,
        text=row.text,
        in_reply_to=row.in_reply_to,
        references=row.references,
        received_at_source=row.received_at_source,
        date_header=row.date_header,
        raw_size=row.raw_size,
        raw_sha256=row.raw_sha256,
        decided_by=row.decided_by,
        decided_at=row.decided_at,
        note=row.note,
        attachments=[
            AttachmentPublic(
                id=a.id or 0,
                filename=a.filename,
                content_type=a.content_type,
                size=a.size,
                sha256=a.sha256,
                stored=stored,
            )
            for a, stored in files
        ],
    )


def _item_fields(row: InboundMessage, references: dict[str, str], count: int) -> dict[str, Any]:
    return {
        "id": row.id,
        "status": row.status,
        "reason": row.reason,
        "source": row.source,
        "received_at": row.received_at,
        "from_address": row.from_address,
        "from_name": row.from_name,
        "subject": row.subject,
        "language": row.language,
        "detected_type": row.detected_type,
        "request_id": row.request_id,
        "reference": references.get(row.request_id) if row.request_id else None,
        "attachment_count": count + (row.attachments_omitted or 0),
    }
