"""Reading inbound e-mail: parse any message, read what it says, and hand it to the inbox.

``read_message`` never raises: whatever the bytes, it returns an ``InboundMail``, at worst
quarantined with the reason. ``ingest`` reads a message and records it
(``service.record_inbound``).

The reading is done in steps, each in its module: ``body`` (MIME parts, the text, attachments
within limits), ``charsets`` and ``headers`` (decoding Japanese and mislabelled text, encoded
words, senders, threading), ``classify`` (the request type named, automatic mail, the arrival),
all with the rules of ``workflows/intake/mail.yaml`` (``rules_file``): data a privacy officer
may change. The service then decides against the database (a reply to one of our requests?
seen before?) and acts, in one transaction.
"""

from __future__ import annotations

import email
import logging
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email import policy, utils
from typing import Any

from sqlmodel import Session

from dsrflow.db import utcnow
from dsrflow.inbound_mail import service
from dsrflow.inbound_mail.body import Body, header_block, read_body, too_many_parts
from dsrflow.inbound_mail.classify import (
    REFERENCE,
    agent_phrase,
    arrival,
    detect_type,
    language_of,
    loop_reason,
)
from dsrflow.inbound_mail.headers import (
    Headers,
    message_id_of,
    one_line,
    parse_date,
    sender,
    synthetic_id,
    thread_ids,
)
from dsrflow.inbound_mail.rules_file import IntakeRules, Limits, normalise, rules_for
from dsrflow.inbound_mail.schemas import ImapOrigin, InboundMail, IngestOutcome, IntakePolicy
from dsrflow.runtime import Runtime

log = logging.getLogger(__name__)


def read_message(
    raw: bytes,
    rules: IntakeRules,
    *,
    source: str,
    own_addresses: Iterable[str] = (),
    received_at: datetime | None = None,
    original_size: int | None = None,
    now: datetime | None = None,
) -> InboundMail:
    """Read one RFC 5322 message. Never raises: anything it cannot understand is returned
    with ``quarantine_reason`` set, and the raw bytes kept.

    ``received_at`` is the arrival time from the mailbox (IMAP INTERNALDATE); without it the
    top Received header, then Date, then now is used. ``original_size`` is the real size when
    only the header was fetched because the message is over the size limit.
    """
    now = now or utcnow()
    owners = frozenset(a.lower() for a in own_addresses if a)
    try:
        return _read(raw, rules, source, owners, received_at, original_size, now)
    except Exception as exc:
        log.warning("message could not be parsed: %s", type(exc).__name__, exc_info=True)
        kept = raw[: rules.limits.max_message_bytes]
        at, at_source = (received_at, "internaldate") if received_at else (now, "now")
        return InboundMail(
            message_id=synthetic_id(raw),
            raw=kept,
            raw_size=original_size or len(raw),
            source=source,
            received_at=min(at, now),
            received_at_source=at_source,
            quarantine_reason=f"could not be parsed ({type(exc).__name__})",
        )


def _read(
    raw: bytes,
    rules: IntakeRules,
    source: str,
    own_addresses: frozenset[str],
    received_at: datetime | None,
    original_size: int | None,
    now: datetime,
) -> InboundMail:
    limits = rules.limits
    size = original_size or len(raw)
    too_large = size > limits.max_message_bytes
    if too_large:
        raw = header_block(raw)
    # Too many parts: only the header is parsed (the raw message is kept whole).
    too_many = not too_large and too_many_parts(raw, limits.max_parts)
    message = email.message_from_bytes(
        header_block(raw) if too_many else raw, policy=policy.compat32
    )
    headers = Headers(message)
    body = None if too_large or too_many else read_body(message, limits)
    too_many = too_many or bool(body and body.too_many_parts)
    from_name, from_address = sender(headers.first("from"))
    subject = one_line(headers.text("subject"), 998)
    date_header = parse_date(headers.first("date"))
    arrived, arrived_source = arrival(received_at, headers, date_header, now, limits)
    threading = _threading(headers, subject or "", body, message.get_content_type())
    text = body.text if body else ""
    ignore = loop_reason(headers, message, body, from_address, subject or "", rules, own_addresses)
    detected, problem = _type_of(subject or "", text, body, rules)
    return InboundMail(
        message_id=message_id_of(headers.first("message-id")) or synthetic_id(raw),
        raw=raw,
        raw_size=size,
        source=source,
        received_at=arrived,
        received_at_source=arrived_source,
        date_header=date_header,
        from_address=from_address,
        from_name=from_name,
        subject=subject,
        text=text,
        language=language_of(f"{subject or ''}\n{text}"),
        in_reply_to=one_line(threading.in_reply_to, 2000),
        references=one_line(threading.references, 10_000),
        thread_ids=threading.thread_ids,
        named_references=threading.named,
        body_references=threading.quoted,
        detected_type=detected,
        type_problem=problem,
        agent_words=agent_phrase(subject or "", text, rules),
        ignore_reason=ignore,
        quarantine_reason=_quarantine_reason(
            size,
            limits,
            too_large=too_large,
            too_many=too_many,
            headers=headers,
            body=body,
            has_sender=from_address is not None,
            threading=threading,
        ),
        **_body_facts(
            body, bounce=threading.report or (ignore or "").startswith("bounce"), too_many=too_many
        ),
    )


@dataclass(frozen=True)
class _Threading:
    """What a message answers: its threading headers, the request references it names."""

    in_reply_to: str | None
    references: str | None
    # Message-IDs it answers; for a delivery report, also those of the messages it returns.
    thread_ids: tuple[str, ...]
    named: tuple[str, ...]  # references in the subject
    quoted: tuple[str, ...]  # references in the text only
    report: bool  # a delivery status report


def _threading(headers: Headers, subject: str, body: Body | None, ctype: str) -> _Threading:
    in_reply_to = headers.first("in-reply-to")
    references = headers.first("references")
    threads = thread_ids(in_reply_to, references)
    named = tuple(dict.fromkeys(REFERENCE.findall(unicodedata.normalize("NFKC", subject))))
    report = body is not None and (body.delivery_report or ctype == "multipart/report")
    if report and body is not None:
        # A bounce of one of our letters belongs with its request (it stays ignored).
        threads = tuple(dict.fromkeys(threads + body.returned_ids))[:50]
    text = body.text if body else ""
    quoted = REFERENCE.findall(unicodedata.normalize("NFKC", text))
    return _Threading(
        in_reply_to=in_reply_to,
        references=references,
        thread_ids=threads,
        named=named,
        quoted=tuple(r for r in dict.fromkeys(quoted) if r not in named)[:20],
        report=report,
    )


def _quarantine_reason(
    size: int,
    limits: Limits,
    *,
    too_large: bool,
    too_many: bool,
    headers: Headers,
    body: Body | None,
    has_sender: bool,
    threading: _Threading,
) -> str | None:
    """Why the message cannot be understood well enough to act on, or None."""
    if too_large:
        return f"message is {size} bytes; the limit is {limits.max_message_bytes}"
    if too_many:
        return f"message has more than {limits.max_parts} MIME parts (the limit)"
    if not headers.items:
        return "not an e-mail message (no header fields)"
    if body is not None and body.undecodable:
        return "the text could not be decoded"
    if not has_sender and not (threading.named or threading.thread_ids):
        return "no usable sender address (From)"
    return None


def _type_of(
    subject: str, text: str, body: Body | None, rules: IntakeRules
) -> tuple[str | None, str | None]:
    """(the request type named, why none) as ``detect_type``; a forwarded message never has
    one, since its sender may not be the requester."""
    detected, problem = detect_type(subject, text, rules)
    forwarded = bool(body and body.forwarded) or bool(
        rules.forwarded and rules.forwarded.match(normalise(subject))
    )
    if forwarded:
        return detected, "forwarded message: the sender may not be the requester"
    return detected, problem


def _body_facts(body: Body | None, *, bounce: bool, too_many: bool) -> dict[str, Any]:
    """The parts of InboundMail that come from the body: attachments, and for a bounce what
    it returns and why."""
    if body is None:
        return {}
    facts: dict[str, Any] = {}
    if bounce:
        facts["returned_ids"] = body.returned_ids[:20]
        facts["bounce_diagnostic"] = body.diagnostic
    if not too_many:
        facts["attachments"] = tuple(body.attachments)
        facts["attachments_omitted"] = body.attachments_omitted
    return facts


# --------------------------------------------------------------------------- ingest


def own_addresses(rt: Runtime) -> frozenset[str]:
    """Our sending and receiving addresses: mail from them is ours, never a request."""
    addresses = (rt.settings.mail_from, rt.settings.handler_email)
    return frozenset(utils.parseaddr(a)[1].lower() for a in addresses if a)


def ingest(
    rt: Runtime,
    raw: bytes,
    *,
    source: str = "file",
    received_at: datetime | None = None,
    original_size: int | None = None,
    origin: ImapOrigin | None = None,
) -> IngestOutcome:
    """Read one raw message and record what becomes of it (``service.record_inbound``).

    Raises only when it cannot be recorded at all: IntakeRulesError (the rules file is wrong),
    a database error, or ClaimLost for an IMAP ``origin`` whose claim is gone.
    """
    rules = rules_for(rt)
    mail = read_message(
        raw,
        rules,
        source=source,
        own_addresses=own_addresses(rt),
        received_at=received_at,
        original_size=original_size,
    )
    policy = IntakePolicy(
        requests_per_sender=rules.limits.requests_per_sender,
        sender_window=timedelta(hours=rules.limits.requests_per_sender_hours),
    )
    with Session(rt.db, expire_on_commit=False) as session:
        return service.record_inbound(rt, session, mail, origin=origin, policy=policy)
