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
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email import policy, utils
from functools import lru_cache
from typing import Any

from sqlmodel import Session

from dsrflow.db import utcnow
from dsrflow.inbound_mail import service
from dsrflow.inbound_mail.body import (
    Body,
    header_block,
    quoted_message_ids,
    read_body,
    too_many_parts,
)
from dsrflow.inbound_mail.classify import (
    REFERENCE,
    agent_phrase,
    arrival,
    detect_type,
    language_of,
    loop_reason,
    own_words,
    phishing_like,
)
from dsrflow.inbound_mail.handoff import PipeAnswer
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

BOM = b"\xef\xbb\xbf"
# Messages of a batch recorded in one transaction (one commit); see ``ingest_batch``.
BATCH_SIZE = 50


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
    readable = raw.removeprefix(BOM)  # a byte-order mark some programs put before the header
    message = email.message_from_bytes(
        header_block(readable) if too_many else readable, policy=policy.compat32
    )
    headers = Headers(message)
    body = None if too_large or too_many else read_body(message, limits)
    too_many = too_many or bool(body and body.too_many_parts)
    who = sender(headers.first("from"))
    subject = one_line(headers.text("subject"), 998) or ""
    date_header = parse_date(headers.first("date"))
    own_hosts = rules.own_mail_hosts + tuple(a.rpartition("@")[2] for a in own_addresses)
    arrived, arrived_source = arrival(received_at, headers, date_header, now, limits, own_hosts)
    ignore = loop_reason(headers, message, body, who, subject, rules, own_addresses)
    report = body is not None and (
        body.delivery_report or message.get_content_type() == "multipart/report"
    )
    bounce = report or (ignore or "").startswith("bounce")
    threading = _threading(headers, subject, body, bounce=bounce)
    text = body.text if body else ""
    detected, problem = _type_of(subject, text, body, rules)
    return InboundMail(
        message_id=message_id_of(headers.first("message-id")) or synthetic_id(raw),
        raw=raw,
        raw_size=size,
        source=source,
        received_at=arrived,
        received_at_source=arrived_source,
        date_header=date_header,
        from_address=who.address,
        from_name=who.name,
        subject=subject or None,
        text=text,
        language=language_of(f"{subject}\n{text}"),
        in_reply_to=one_line(threading.in_reply_to, 2000),
        references=one_line(threading.references, 10_000),
        thread_ids=threading.thread_ids,
        named_references=threading.named,
        body_references=threading.quoted,
        detected_type=detected,
        type_problem=problem,
        phishing_like=phishing_like(subject, rules),
        agent_words=agent_phrase(subject or "", text, rules),
        ignore_reason=ignore,
        quarantine_reason=_quarantine_reason(
            size,
            limits,
            too_large=too_large,
            too_many=too_many,
            headers=headers,
            body=body,
            # An automatic message without a sender (From: <>, MAILER-DAEMON without a
            # domain) is read as what it is; only mail to answer needs an address.
            has_sender=who.address is not None or ignore is not None,
            threading=threading,
        ),
        returned_ids=threading.returned[:20],
        bounce_diagnostic=body.diagnostic if bounce and body is not None else None,
        **_attachments(body, too_many=too_many),
    )


@dataclass(frozen=True)
class _Threading:
    """What a message answers: its threading headers, the request references it names."""

    in_reply_to: str | None
    references: str | None
    # Message-IDs it answers; for a bounce, also those of the messages it returns.
    thread_ids: tuple[str, ...]
    named: tuple[str, ...]  # references in the subject
    quoted: tuple[str, ...]  # references in the text only
    # A bounce: the Message-IDs of the messages it returns (attached, or quoted inline).
    returned: tuple[str, ...]


def _threading(headers: Headers, subject: str, body: Body | None, *, bounce: bool) -> _Threading:
    in_reply_to = headers.first("in-reply-to")
    references = headers.first("references")
    threads = thread_ids(in_reply_to, references)
    named = tuple(dict.fromkeys(REFERENCE.findall(unicodedata.normalize("NFKC", subject))))
    text = body.text if body else ""
    returned: tuple[str, ...] = ()
    if bounce and body is not None:
        # A bounce of one of our letters belongs with its request (it stays ignored). The
        # letter is named anywhere: an attached original, a header quoted in the text or in a
        # text attachment ("original.txt"), else the report's own In-Reply-To/References.
        attached = "\n".join(
            a.content.decode("latin-1")
            for a in body.attachments
            if a.content is not None and a.content_type.startswith("text/")
        )
        found = body.returned_ids + quoted_message_ids(text) + quoted_message_ids(attached)
        # The report's threading names the returned message first (and its thread after).
        returned = tuple(dict.fromkeys(found or threads[:1]))
        threads = tuple(dict.fromkeys(threads + returned))[:50]
    quoted = REFERENCE.findall(unicodedata.normalize("NFKC", text))
    return _Threading(
        in_reply_to=in_reply_to,
        references=references,
        thread_ids=threads,
        named=named,
        quoted=tuple(r for r in dict.fromkeys(quoted) if r not in named)[:20],
        returned=returned,
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
    forwarded = (
        bool(body and body.forwarded)
        or bool(rules.forwarded and rules.forwarded.match(normalise(subject)))
        or own_words(text, rules).forwarded
    )
    if forwarded:
        return detected, "forwarded message: the sender may not be the requester"
    return detected, problem


def _attachments(body: Body | None, *, too_many: bool) -> dict[str, Any]:
    if body is None or too_many:
        return {}
    return {"attachments": tuple(body.attachments), "attachments_omitted": body.attachments_omitted}


# --------------------------------------------------------------------------- ingest


def own_addresses(rt: Runtime) -> frozenset[str]:
    """Our sending and receiving addresses: mail from them is ours, never a request."""
    return _own_addresses(rt.settings.mail_from, rt.settings.handler_email)


@lru_cache(maxsize=16)
def _own_addresses(*addresses: str) -> frozenset[str]:
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
    mail = _mail_of(rt, rules, raw, source, received_at, original_size)
    with Session(rt.db, expire_on_commit=False) as session:
        return service.record_inbound(rt, session, mail, origin=origin, policy=_policy(rules))


def _mail_of(
    rt: Runtime,
    rules: IntakeRules,
    raw: bytes,
    source: str,
    received_at: datetime | None = None,
    original_size: int | None = None,
) -> InboundMail:
    return read_message(
        raw,
        rules,
        source=source,
        own_addresses=own_addresses(rt),
        received_at=received_at,
        original_size=original_size,
    )


def _policy(rules: IntakeRules) -> IntakePolicy:
    return IntakePolicy(
        requests_per_sender=rules.limits.requests_per_sender,
        sender_window=timedelta(hours=rules.limits.requests_per_sender_hours),
    )


def ingest_piped(
    rt: Runtime, raw: bytes, *, name: str | None = None, size: int | None = None
) -> PipeAnswer:
    """``ingest`` for ``dsrflow ingest-email``, recording in-process or for the intake socket
    (``listener``): the line it prints and its exit status for the mail server.

    ``size`` is the message's real size when only its first ``max_message_bytes`` were kept
    (over that, only the header is recorded, whoever reads the rest). 75 (EX_TEMPFAIL) when
    nothing could be recorded, 65 (EX_DATAERR) when the message is over the size limit."""
    prefix = f"{name}: " if name else ""
    size = len(raw) if size is None else size
    try:
        limit = rules_for(rt).limits.max_message_bytes
        outcome = ingest(rt, raw, source="file", original_size=size if size != len(raw) else None)
    except Exception as exc:  # the database, the configuration: never the message itself
        # EX_TEMPFAIL: the MTA keeps the message and tries again; nothing is lost.
        log.debug("ingest-email failed", exc_info=True)
        return PipeAnswer(75, err=f"dsrflow: {prefix}cannot record the message now: {exc}")
    return _answer(outcome, prefix, size, limit)


def ingest_batch(
    rt: Runtime, messages: Sequence[tuple[str, bytes]], *, size: int | None = None
) -> Iterator[tuple[str, PipeAnswer]]:
    """``ingest_piped`` for many messages (``dsrflow ingest-email FILE...``, ``--maildir``):
    up to ``size`` (``BATCH_SIZE``) of them recorded in one transaction
    (``service.record_batch``).

    Yields each message's name and answer once the transaction that recorded it is committed,
    in order, so that the caller moves a file only when its message is on disk; a crash before
    the commit leaves the batch unrecorded (its messages are read again, and a message found
    recorded is a duplicate). A batch that cannot be recorded is tried again one message at a
    time, with ``ingest_piped``: only the messages that cannot be recorded alone are left (75).
    """
    size = size or BATCH_SIZE
    for start in range(0, len(messages), size):
        chunk = messages[start : start + size]
        try:
            rules = rules_for(rt)
            # Read before the transaction: on SQLite it holds the write lock until its commit.
            mails = [_mail_of(rt, rules, raw, "file") for _, raw in chunk]
            with Session(rt.db, expire_on_commit=False) as session:
                outcomes = service.record_batch(rt, session, mails, policy=_policy(rules))
        except Exception:
            log.warning("a batch could not be recorded; one message at a time", exc_info=True)
            for name, raw in chunk:
                yield name, ingest_piped(rt, raw, name=name)
            continue
        limit = rules.limits.max_message_bytes
        for (name, raw), outcome in zip(chunk, outcomes, strict=True):
            yield name, _answer(outcome, f"{name}: ", len(raw), limit)


def _answer(outcome: IngestOutcome, prefix: str, size: int, limit: int) -> PipeAnswer:
    line = f"{prefix}{outcome.describe()}"
    if size > limit:
        # Only the header was kept: EX_DATAERR makes the MTA return the message to its sender,
        # instead of a success that would throw the body (and its attachments) away.
        return PipeAnswer(
            65,
            out=line,
            err=f"dsrflow: {prefix}the message is {size} bytes, over the limit of {limit}: only "
            f"its header was kept (inbox #{outcome.inbound_id}); refused, so that the mail "
            "server returns it to the sender",
        )
    return PipeAnswer(0, out=line)
