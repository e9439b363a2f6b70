"""Queueing mail: the service hands plain values; rows commit with the decision that caused them."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from sqlmodel import Session

from dsrflow.outbound_mail import repository
from dsrflow.outbound_mail.models import OutboxMessage
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


def enqueue(
    session: Session, mail: OutgoingMail, domain: str, *, new_key: bool = False
) -> OutboxMessage | None:
    """Add ``mail`` to the outbox unless a row with its dedup key exists. The caller commits.

    ``new_key``: the caller knows no row can have the key (it names a request created in this
    transaction), so it is not looked up; the unique index still holds."""
    if not new_key and repository.dedup_key_taken(session, mail.dedup_key):
        return None
    row = OutboxMessage(
        dedup_key=mail.dedup_key,
        request_id=mail.request_id,
        reference=mail.reference,
        letter=mail.letter,
        recipient=single_line(mail.recipient),
        subject=single_line(mail.subject),
        body=mail.body,
        message_id=make_message_id(domain),
        in_reply_to=mail.in_reply_to,
    )
    session.add(row)
    return row
