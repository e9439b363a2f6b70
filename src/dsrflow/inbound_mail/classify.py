"""What a message is: the request type its words name, whether it is automatic mail (an
auto-reply, a bounce, our own mail) that must never be answered, its language, and when it
arrived."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from email.message import Message

from dsrflow.inbound_mail.body import Body, safe
from dsrflow.inbound_mail.charsets import JAPANESE, KANA, LATIN
from dsrflow.inbound_mail.headers import Headers, one_line, parse_date
from dsrflow.inbound_mail.rules_file import IntakeRules, Limits, normalise

REFERENCE = re.compile(r"\bDSR-\d{4}-\d{6}\b")
# A clock skew we accept before an arrival time from a header counts as "in the future".
FUTURE_SKEW = timedelta(minutes=5)


def detect_type(subject: str, text: str, rules: IntakeRules) -> tuple[str | None, str | None]:
    """(request type, None) when the words name exactly one type; else (None, why not).

    The subject is read first; the body (without quoted lines) only when the subject names
    no type."""
    for source in (subject, _unquoted(text, rules)):
        types = _types_named(normalise(source), rules)
        if len(types) == 1:
            return next(iter(types)), None
        if types:
            return None, f"names several request types ({', '.join(sorted(types))})"
    return None, "no request type recognised"


def agent_phrase(subject: str, text: str, rules: IntakeRules) -> str | None:
    """The words (if any) by which a mail says its sender acts for someone else."""
    for source in (subject, _unquoted(text, rules)):
        normal = normalise(source)
        for pattern in rules.agent_phrases:
            found = pattern.search(normal)
            if found:
                return found.group(0)
    return None


def _types_named(text: str, rules: IntakeRules) -> set[str]:
    spans = [
        (m.start(), m.end(), request_type)
        for pattern, request_type in rules.phrases
        for m in pattern.finditer(text)
    ]
    spans.sort(key=lambda s: (s[0] - s[1], s[0]))  # longest first
    taken: list[tuple[int, int]] = []
    types: set[str] = set()
    for start, end, request_type in spans:
        if any(start < t_end and t_start < end for t_start, t_end in taken):
            continue
        taken.append((start, end))
        types.add(request_type)
    for winner, losers in rules.outranks.items():
        if winner in types:
            types -= losers
    return types


def _unquoted(text: str, rules: IntakeRules) -> str:
    lines: list[str] = []
    for line in text.splitlines():
        normal = normalise(line).strip()
        if any(normal.startswith(sep) for sep in rules.separators):
            break
        if not line.lstrip().startswith(">"):
            lines.append(line)
    return "\n".join(lines)


def loop_reason(
    headers: Headers,
    message: Message,
    body: Body | None,
    from_address: str | None,
    subject: str,
    rules: IntakeRules,
    own_addresses: frozenset[str],
) -> str | None:
    """Why this message must never become a request nor be answered, or None.

    Our own mail is recognised by From here, and by the exact Message-ID of a letter we sent in
    the service; never by the Message-ID's domain, which colleagues' mail shares."""
    if from_address and from_address.lower() in own_addresses:
        return "our own message (From is our address)"
    auto = headers.first("auto-submitted")
    if auto is not None:
        token = auto.split(";")[0].strip().lower()
        if token not in rules.auto_submitted_allowed:
            return f"auto-reply (Auto-Submitted: {one_line(token, 40) or 'empty'})"
    for name in rules.autoreply_headers:
        if headers.first(name) is not None:
            return f"auto-reply ({name} header)"
    precedence = (headers.first("precedence") or "").strip().lower()
    if precedence in rules.precedence:
        return f"automatic or list mail (Precedence: {precedence})"
    ctype = str(safe(message.get_content_type, "")).lower()
    if ctype == "multipart/report" or (body is not None and body.delivery_report):
        return "bounce (delivery status report)"
    if from_address and from_address.partition("@")[0].lower() in rules.bounce_senders:
        return f"bounce (sender {from_address.partition('@')[0].lower()})"
    for name in rules.bounce_headers:
        if headers.first(name) is not None:
            return f"bounce ({name} header)"
    return_path = headers.first("return-path")
    if return_path is not None and return_path.strip() in ("<>", ""):
        return "bounce or automatic message (empty Return-Path)"
    normal = normalise(subject)
    if any(s and s in normal for s in rules.bounce_subjects):
        return "bounce (subject)"
    if any(s and s in normal for s in rules.autoreply_subjects):
        return "auto-reply (subject)"
    return None


def arrival(
    received_at: datetime | None,
    headers: Headers,
    date_header: datetime | None,
    now: datetime,
    limits: Limits,
) -> tuple[datetime, str]:
    """When the message reached the mailbox, and where that was read from: the mailbox's
    INTERNALDATE, else the top Received header (added by our own server), else the sender's
    Date if it is recent, else now."""
    if received_at is not None:
        found, source = received_at, "internaldate"
    else:
        found, source = None, "now"
        for value in headers.all("received")[:1]:
            found = parse_date(value.rpartition(";")[2])
            source = "received"
        oldest = now - timedelta(hours=limits.date_header_max_age_hours)
        if found is None and date_header is not None and date_header >= oldest:
            # The sender's clock, which anyone can set: trusted only close to now.
            found, source = date_header, "date"
    if found is None or found > now + FUTURE_SKEW:
        return now, "now"
    return found.astimezone(UTC), source


def language_of(text: str) -> str:
    """``ja`` for Japanese text, ``en`` otherwise (a Japanese name in an English letter is en)."""
    if KANA.search(text):
        return "ja"
    japanese = len(JAPANESE.findall(text))
    latin = len(LATIN.findall(text))
    return "ja" if japanese and japanese * 3 >= latin else "en"
