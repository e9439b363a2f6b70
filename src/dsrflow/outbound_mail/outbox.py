"""Queueing mail: the service hands plain values; rows commit with the decision that caused them."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from sqlmodel import Session

from dsrflow.db import utcnow
from dsrflow.outbound_mail import repository
from dsrflow.outbound_mail.render import single_line


@dataclass(frozen=True)
class OutgoingMail:
    dedup_key: str
    letter: str
    recipient: str
    subject: str
    body: str
    request_id: str | None = None
    reference: str | None = None
    in_reply_to: str | None = None


def make_message_id(domain: str) -> str:
    return f"<{secrets.token_hex(16)}@{domain}>"


@dataclass(frozen=True)
class Queued:
    """A row just added to the outbox."""

    id: int
    message_id: str


def enqueue(
    session: Session, mail: OutgoingMail, domain: str, *, new_key: bool = False
) -> Queued | None:
    """Add ``mail`` to the outbox unless a row with its dedup key exists (None then). The caller
    commits. A plain insert, no ORM object: a create queues three letters, a sweep thousands.

    ``new_key``: the caller knows no row can have the key (it names a request created in this
    transaction), so it is not looked up; the unique index still holds."""
    if not new_key and repository.dedup_key_taken(session, mail.dedup_key):
        return None
    now = utcnow()
    message_id = make_message_id(domain)
    row_id = repository.insert(
        session,
        {
            "dedup_key": mail.dedup_key,
            "request_id": mail.request_id,
            "reference": mail.reference,
            "letter": mail.letter,
            "recipient": single_line(mail.recipient),
            "subject": single_line(mail.subject),
            "body": mail.body,
            "message_id": message_id,
            "in_reply_to": mail.in_reply_to,
            "status": "pending",
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        },
    )
    return Queued(row_id, message_id)
