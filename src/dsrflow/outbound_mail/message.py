"""The RFC 5322 message for an outbox row."""

from __future__ import annotations

import email.policy
from email.errors import NonASCIILocalPartDefect
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

from dsrflow.config import Settings
from dsrflow.outbound_mail.models import OutboxMessage
from dsrflow.outbound_mail.render import single_line


def _recipient(value: str) -> str:
    address = single_line(value)
    try:
        Address(addr_spec=address)
    except NonASCIILocalPartDefect:
        pass  # valid with SMTPUTF8; the server says whether it takes it
    except Exception as exc:  # the parser raises several kinds; all mean "not an address"
        raise ValueError(f"invalid recipient address: {exc}") from exc
    return address


def build_message(
    row: OutboxMessage, settings: Settings, *, from_name: str | None = None
) -> EmailMessage:
    """The RFC 5322 message for an outbox row: From ``from_name <MAIL_FROM>`` (the company),
    Japanese headers as RFC 2047 encoded words, a UTF-8 text/plain body, the row's stable
    Message-ID. Every header value is one line, so nothing a row holds can add a header.
    Raises ValueError on an unusable address."""
    recipient = _recipient(row.recipient)
    subject = single_line(row.subject)
    policy = email.policy.SMTP if recipient.isascii() else email.policy.SMTPUTF8
    if subject.isascii():
        # Python folds an ASCII subject that starts with "[DSR-...]" right after "Subject:",
        # which a reader unfolds with a leading space. Plain ASCII may run to 998 characters;
        # encoded Japanese keeps the 78-character folding that RFC 2047 needs.
        policy = policy.clone(max_line_length=998)
    message = EmailMessage(policy=policy)
    message["From"] = Address(
        display_name=single_line(from_name or ""), addr_spec=single_line(settings.mail_from)
    )
    message["To"] = recipient
    message["Subject"] = subject
    message["Date"] = format_datetime(row.created_at.astimezone(settings.tz))
    message["Message-ID"] = single_line(row.message_id)
    if row.in_reply_to:
        message["In-Reply-To"] = single_line(row.in_reply_to)
        message["References"] = single_line(row.in_reply_to)
    message["Auto-Submitted"] = "auto-generated"
    if row.body.isascii():
        message.set_content(row.body, charset="utf-8")
    else:
        # base64 keeps the message 7-bit clean through any relay, with or without 8BITMIME.
        message.set_content(row.body, charset="utf-8", cte="base64")
    return message
