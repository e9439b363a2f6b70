"""The RFC 5322 message for an outbox row."""

from __future__ import annotations

import email.policy
from email.errors import NonASCIILocalPartDefect
from email.headerregistry import Address, BaseHeader, HeaderRegistry
from email.message import EmailMessage
from email.policy import EmailPolicy
from email.utils import format_datetime
from functools import lru_cache

from dsrflow.config import Settings
from dsrflow.outbound_mail.models import OutboxMessage
from dsrflow.outbound_mail.render import single_line


class _HeaderClasses(HeaderRegistry):
    """The standard header registry, making each header class once: the stock one builds a new
    class with ``type()`` for every header set or read, which was a fifth of a message's build."""

    def __init__(self) -> None:
        super().__init__()
        self._made: dict[str, type[BaseHeader]] = {}

    def __getitem__(self, name: str) -> type[BaseHeader]:
        key = name.lower()
        if key not in self._made:
            self._made[key] = super().__getitem__(name)
        return self._made[key]


_HEADERS = _HeaderClasses()
# By (internationalised recipient, ASCII subject). Python folds an ASCII subject that starts with
# "[DSR-...]" right after "Subject:", which a reader unfolds with a leading space. Plain ASCII may
# run to 998 characters; encoded Japanese keeps the 78-character folding that RFC 2047 needs.
_POLICIES: dict[tuple[bool, bool], EmailPolicy[EmailMessage]] = {
    (utf8, ascii_subject): (email.policy.SMTPUTF8 if utf8 else email.policy.SMTP).clone(
        header_factory=_HEADERS, max_line_length=998 if ascii_subject else 78
    )
    for utf8 in (False, True)
    for ascii_subject in (False, True)
}


@lru_cache(maxsize=32)
def _from_header(
    display_name: str, address: str, policy: EmailPolicy[EmailMessage]
) -> str | BaseHeader:
    """From, the same for every message of a flush and with a Japanese name the costliest
    header to fold: folded once where the folding can be stored as is (every line within the
    policy's limit, so it is never refolded), else parsed once and folded per message."""
    header = policy.header_factory("From", Address(display_name=display_name, addr_spec=address))
    folded = header.fold(policy=policy).removesuffix(policy.linesep)
    lines = folded.split(policy.linesep)
    if folded.startswith("From: ") and all(len(x) <= (policy.max_line_length or 0) for x in lines):
        return folded.removeprefix("From: ")
    return header


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
    policy = _POLICIES[not recipient.isascii(), subject.isascii()]
    message = EmailMessage(policy=policy)
    message.set_raw(
        "From", _from_header(single_line(from_name or ""), single_line(settings.mail_from), policy)
    )
    message["To"] = recipient
    message["Subject"] = subject
    message["Date"] = format_datetime(row.created_at.astimezone(settings.tz))
    message["Message-ID"] = single_line(row.message_id)
    if row.in_reply_to:
        message["In-Reply-To"] = single_line(row.in_reply_to)
        message["References"] = single_line(row.in_reply_to)
    message.set_raw("Auto-Submitted", "auto-generated")
    if row.body.isascii():
        message.set_content(row.body, charset="utf-8")
    else:
        # base64 keeps the message 7-bit clean through any relay, with or without 8BITMIME.
        message.set_content(row.body, charset="utf-8", cte="base64")
    return message
