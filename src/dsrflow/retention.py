"""Retention: personal data is kept only as long as it is needed (APPI Art. 22; My Number Act
Art. 20), then ``dsrflow purge`` (also run daily by the scheduler) removes it.

- A closed request, ``DSRFLOW_RETENTION_CLOSED_DAYS`` after it closed (default 3 years): the
  requester's and agent's names, addresses, phone and details, its letters in the outbox, its
  verification links, the desk's internal notes, its mail (words, raw bytes, attachments),
  its disclosure package files and every free-text value of its audit events. What stays
  identifies no one: reference, type, channel, dates, outcome (state), identity method and
  reason codes, and the audit chain, which hashes digests of the values it lost and so still
  verifies (``dsrflow audit verify``). A ``purged`` event records the purge.
- Raw inbound mail, ``DSRFLOW_RETENTION_RAW_MAIL_DAYS`` after it arrived (default 90), once its
  request is closed or it belongs to none (and a handler has decided it); mail that belongs to
  no request loses its words too.
- ID documents (attachments), ``DSRFLOW_RETENTION_ID_DOCUMENTS_DAYS`` after arrival (default
  30), once the request's identity is verified or the request is closed (or it has none), with
  the raw message that carries them.
- An Individual Number (My Number) card: at once, when a handler marks the attachment
  (``POST /api/v1/inbox/{id}/attachments/{attachment_id}/my-number``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import delete, or_
from sqlmodel import Session, col, select

from dsrflow.audit.chain import append_event, erase_detail
from dsrflow.audit.models import Event
from dsrflow.db import utcnow
from dsrflow.errors import NotFound
from dsrflow.inbound_mail.models import OPEN_STATUSES, InboundAttachment, InboundMessage
from dsrflow.outbound_mail.models import OutboxMessage
from dsrflow.packages import service as packages
from dsrflow.requests import repository as requests_repository
from dsrflow.requests.models import DeskNotice, Request, RequestNote, VerificationToken
from dsrflow.runtime import Runtime

log = logging.getLogger(__name__)

# Detail values that identify no one and stay after purge (codes, counts, ids, flags).
KEEP_DETAIL = frozenset(
    {
        "channel",
        "type",
        "agent",
        "method",
        "method_used",
        "reason_code",
        "days",
        "attachments",
        "from_requester",
        "converted_from",
        "inbound_message_id",
        "attachment_id",
        "erased",
        "purged",
        # disclosure packages: ids, sizes and hashes, never a file name
        "package_id",
        "file_id",
        "files",
        "sha256",
        "download",
        "max_downloads",
        "expires_at",
        "removed_reason",
    }
)
PURGED = "purged"


@dataclass
class PurgeReport:
    requests: list[str] = field(default_factory=list)  # references
    raw_mail: int = 0
    attachments: int = 0
    events: int = 0

    def lines(self) -> list[str]:
        return [f"request {reference}" for reference in self.requests]

    def summary(self) -> str:
        return (
            f"{len(self.requests)} closed requests, {self.raw_mail} raw messages, "
            f"{self.attachments} attachments, {self.events} audit event details"
        )


def purge(rt: Runtime, *, dry_run: bool = False, now: datetime | None = None) -> PurgeReport:
    """Remove the personal data past its retention period, one request per transaction."""
    s = rt.settings
    now = now or utcnow()
    report = PurgeReport()
    closed_before = now - timedelta(days=s.retention_closed_days)
    with Session(rt.db, expire_on_commit=False) as session:
        due = list(
            session.exec(
                select(Request.id, Request.reference)
                .where(
                    col(Request.closed_at) < closed_before,
                    col(Request.purged_at).is_(None),
                    col(Request.state).in_(rt.closed_states),
                )
                .order_by(col(Request.closed_at))
            )
        )
        session.rollback()
    for request_id, reference in due:
        report.requests.append(reference)
        if not dry_run:
            with Session(rt.db, expire_on_commit=False) as session:
                report.events += _purge_request(rt, session, request_id, now)
                session.commit()
            log.info("purge: request %s", reference)
    with Session(rt.db, expire_on_commit=False) as session:
        report.attachments += _purge_attachments(
            rt, session, now - timedelta(days=s.retention_id_documents_days), now, dry_run
        )
        report.raw_mail += _purge_raw_mail(
            rt, session, now - timedelta(days=s.retention_raw_mail_days), now, dry_run
        )
        if dry_run:
            session.rollback()
        else:
            session.commit()
    if not dry_run and (report.requests or report.raw_mail or report.attachments):
        log.info("purge: %s", report.summary())
    return report


def _erase_message(message: InboundMessage, now: datetime, *, words: bool) -> None:
    message.raw = b""
    message.raw_purged_at = message.raw_purged_at or now
    if words:
        message.from_address = message.from_name = message.subject = None
        message.text = ""
        message.in_reply_to = message.references = message.note = None


def _erase_attachment(attachment: InboundAttachment, now: datetime, reason: str) -> None:
    attachment.content = None
    attachment.filename = None
    attachment.erased_at = now
    attachment.erased_reason = reason


def _purge_request(rt: Runtime, session: Session, request_id: str, now: datetime) -> int:
    request = requests_repository.lock(session, request_id)
    if request is None or request.purged_at is not None:
        return 0
    request.requester_name = ""
    request.requester_email = ""
    request.requester_phone = None
    request.requester_postal_address = None
    request.details = ""
    request.agent_name = None
    request.agent_email = None
    request.status_token_hash = f"{PURGED}:{request.id}"
    request.purged_at = now
    session.add(request)
    erased = 0
    for event in session.exec(select(Event).where(Event.request_id == request_id)):
        if erase_detail(event, KEEP_DETAIL):
            session.add(event)
            erased += 1
    session.execute(delete(OutboxMessage).where(col(OutboxMessage.request_id) == request_id))
    session.execute(
        delete(VerificationToken).where(col(VerificationToken.request_id) == request_id)
    )
    session.execute(delete(RequestNote).where(col(RequestNote.request_id) == request_id))
    for message in session.exec(
        select(InboundMessage).where(InboundMessage.request_id == request_id)
    ):
        _erase_message(message, now, words=True)
        session.add(message)
        for attachment in _attachments(session, message):
            _erase_attachment(attachment, now, "retention")
            session.add(attachment)
    # Disclosure package files go, and requester events still waiting for a batch mail.
    packages.remove_for_request(rt, session, request_id, actor="retention")
    session.execute(delete(DeskNotice).where(col(DeskNotice.request_id) == request_id))
    append_event(
        session, request_id, kind=PURGED, actor="retention", at=now, detail={PURGED: "retention"}
    )
    return erased


def _attachments(session: Session, message: InboundMessage) -> list[InboundAttachment]:
    return list(
        session.exec(
            select(InboundAttachment).where(InboundAttachment.inbound_message_id == message.id)
        )
    )


def _settled(rt: Runtime, session: Session, message: InboundMessage, *, identity: bool) -> bool:
    """Whether a message's data is no longer needed for its request."""
    if message.request_id is None:
        return message.status not in OPEN_STATUSES
    request = requests_repository.get(session, message.request_id)
    if request is None:
        return True
    return request.state in rt.closed_states or (
        identity and request.identity_verified_at is not None
    )


def _purge_attachments(
    rt: Runtime, session: Session, before: datetime, now: datetime, dry_run: bool
) -> int:
    query = (
        select(InboundAttachment, InboundMessage)
        .join(InboundMessage, col(InboundMessage.id) == col(InboundAttachment.inbound_message_id))
        .where(
            col(InboundMessage.received_at) < before,
            col(InboundAttachment.content).is_not(None),
        )
    )
    count = 0
    for attachment, message in session.exec(query).all():
        if not _settled(rt, session, message, identity=True):
            continue
        count += 1
        if not dry_run:
            _erase_attachment(attachment, now, "retention")
            _erase_message(message, now, words=False)  # the raw message carries it too
            session.add(attachment)
            session.add(message)
    return count


def _purge_raw_mail(
    rt: Runtime, session: Session, before: datetime, now: datetime, dry_run: bool
) -> int:
    query = select(InboundMessage).where(
        col(InboundMessage.received_at) < before,
        or_(col(InboundMessage.raw_purged_at).is_(None), col(InboundMessage.request_id).is_(None)),
        col(InboundMessage.status).not_in(OPEN_STATUSES),
    )
    count = 0
    for message in session.exec(query).all():
        unlinked = message.request_id is None
        if message.raw_purged_at is not None and not (unlinked and message.text):
            continue
        if not _settled(rt, session, message, identity=False):
            continue
        count += 1
        if not dry_run:
            # Mail that belongs to no request has nothing to keep.
            _erase_message(message, now, words=unlinked)
            session.add(message)
    return count


def erase_my_number(
    rt: Runtime, session: Session, inbound_id: int, attachment_id: int, *, actor: str
) -> InboundAttachment:
    """A handler marked an attachment as an Individual Number card (or its back): its content
    and the raw message that carries it are erased now (My Number Act Art. 20), recorded in the
    request's audit chain when it has one. Commits."""
    attachment = session.exec(
        select(InboundAttachment).where(
            InboundAttachment.id == attachment_id,
            InboundAttachment.inbound_message_id == inbound_id,
        )
    ).first()
    message = session.get(InboundMessage, inbound_id)
    if attachment is None or message is None:
        raise NotFound("No such attachment.")
    if message.request_id is not None:
        requests_repository.lock(session, message.request_id)
    now = utcnow()
    already = attachment.erased_reason == "my_number"
    _erase_attachment(attachment, now, "my_number")
    _erase_message(message, now, words=False)
    session.add(attachment)
    session.add(message)
    if message.request_id is not None and not already:
        append_event(
            session,
            message.request_id,
            kind="attachment_erased",
            actor=actor,
            at=now,
            detail={
                "inbound_message_id": inbound_id,
                "attachment_id": attachment_id,
                "erased": "my_number",
            },
        )
    session.commit()
    log.info("inbound message #%s: attachment %s erased (my_number)", inbound_id, attachment_id)
    return attachment
