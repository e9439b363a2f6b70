"""Queueing mail: the service hands plain values; rows commit with the decision that caused them."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

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
    message_id: str | None = None  # chosen by the caller when a later letter threads under it


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

    ``new_key``: the caller knows no row can have the key (it is fresh, as a sweep's uuid), so
    it is not looked up; the unique index still holds."""
    if not new_key and repository.dedup_key_taken(session, mail.dedup_key):
        return None
    row = _row(mail, domain)
    return Queued(repository.insert(session, row), row["message_id"])


def enqueue_new(session: Session, mails: Sequence[OutgoingMail], domain: str) -> None:
    """Add letters whose keys no row can have yet (a request created in this transaction, or a
    key naming the version this transaction made) in one statement that reads nothing back, so
    it may run in a ``pipelined`` block. The caller commits; the unique index still holds."""
    repository.insert_many(session, [_row(mail, domain) for mail in mails])


def _row(mail: OutgoingMail, domain: str) -> dict[str, Any]:
    now = utcnow()
    return {
        "dedup_key": mail.dedup_key,
        "request_id": mail.request_id,
        "reference": mail.reference,
        "letter": mail.letter,
        "recipient": single_line(mail.recipient),
        "subject": single_line(mail.subject),
        "body": mail.body,
        "message_id": mail.message_id or make_message_id(domain),
        "in_reply_to": mail.in_reply_to,
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
    }
