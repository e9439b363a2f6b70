"""What a message is: the request type its words name, whether it is automatic mail (an
auto-reply, a bounce, our own mail) that must never be answered, its language, and when it
arrived."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import Message

from dsrflow.inbound_mail.body import Body, safe
from dsrflow.inbound_mail.charsets import JAPANESE, KANA, LATIN
from dsrflow.inbound_mail.headers import Headers, Sender, one_line, parse_date
from dsrflow.inbound_mail.rules_file import IntakeRules, Limits, normalise

# Not \b: in Japanese text a reference runs straight on from the words before it (no space).
REFERENCE = re.compile(r"(?<![A-Za-z0-9])DSR-\d{4}-\d{6}(?![0-9])")
# A clock skew we accept before an arrival time from a header counts as "in the future".
FUTURE_SKEW = timedelta(minutes=5)


def detect_type(subject: str, text: str, rules: IntakeRules) -> tuple[str | None, str | None]:
    """(request type, None) when the sender's own words name exactly one type; else (None, why
    not).

    A phrase in the subject decides first; the text (its own words only, see ``own_words``)
    counts when the subject has none. A weak word counts only where the subject or the text
    also names personal data or another phrase."""
    words = own_words(text, rules).text
    both = normalise(f"{subject}\n{words}")
    context = any(p.search(both) for p in rules.personal_data)
    in_subject = _types_named(normalise(subject), rules, context)
    named = in_subject
    if not in_subject.strong:
        in_text = _types_named(normalise(words), rules, context)
        named = _Named(
            types=_outranked(in_subject.types | in_text.types, rules),
            strong=in_text.strong,
            unused=in_subject.unused | in_text.unused,
        )
    if len(named.types) == 1:
        return next(iter(named.types)), None
    if named.types:
        return None, f"names several request types ({', '.join(sorted(named.types))})"
    if named.unused:
        return None, (
            f"words that may name a request ({', '.join(sorted(named.unused))}), but no "
            "personal data named: not enough to make a request"
        )
    return None, "no request type recognised"


def agent_phrase(subject: str, text: str, rules: IntakeRules) -> str | None:
    """The words (if any) by which a mail says its sender acts for someone else."""
    for source in (subject, own_words(text, rules).text):
        normal = normalise(source)
        for pattern in rules.agent_phrases:
            found = pattern.search(normal)
            if found:
                return found.group(0)
    return None


@dataclass(frozen=True)
class _Named:
    types: set[str]  # the types named (after ``outranks``)
    strong: set[str]  # named by phrases (not weak words)
    unused: set[str]  # named by weak words that did not count


def _types_named(text: str, rules: IntakeRules, context: bool) -> _Named:
    spans = [
        (m.start(), m.end(), request_type, weak)
        for weak, phrases in ((False, rules.phrases), (True, rules.weak_phrases))
        for pattern, request_type in phrases
        for m in pattern.finditer(text)
    ]
    spans.sort(key=lambda s: (s[0] - s[1], s[0]))  # longest first
    taken: list[tuple[int, int]] = []
    strong: set[str] = set()
    weak: set[str] = set()
    for start, end, request_type, is_weak in spans:
        if any(start < t_end and t_start < end for t_start, t_end in taken):
            continue
        taken.append((start, end))
        (weak if is_weak else strong).add(request_type)
    counted = context or bool(strong)
    return _Named(
        types=_outranked(strong | weak if counted else set(), rules),
        strong=strong,
        unused=set() if counted else weak,
    )


def _outranked(types: set[str], rules: IntakeRules) -> set[str]:
    for winner, losers in rules.outranks.items():
        if winner in types:
            types = types - losers
    return types


@dataclass(frozen=True)
class OwnWords:
    """The sender's own words of a text, and whether it forwards a message."""

    text: str
    forwarded: bool


def own_words(text: str, rules: IntakeRules) -> OwnWords:
    """The text without what the sender did not write: quoted lines, the message answered or
    forwarded (and all after it), the signature, and disclaimer blocks."""
    own = rules.own_words
    lines = text.splitlines()
    kept: list[str] = []
    forwarded = False
    for index, line in enumerate(lines):
        normal = normalise(line).strip()
        if any(p.search(normal) for p in own.forward_starts):
            forwarded = True
            break
        if _ends_own_words(lines, index, normal, rules):
            break
        if normal.startswith(own.quote_prefixes):
            continue
        kept.append(line)
    return OwnWords(text="\n".join(_without_disclaimers(kept, rules)), forwarded=forwarded)


def _ends_own_words(lines: list[str], index: int, normal: str, rules: IntakeRules) -> bool:
    """Whether the own words end at this line: a reply separator, a quoted header, a
    signature."""
    own = rules.own_words
    line = lines[index]
    if line.rstrip("\r\n") in own.signature_delimiters or line.strip() in own.signature_delimiters:
        return True
    if any(normal.startswith(sep) for sep in own.separators if sep):
        return True
    if any(p.search(normal) for p in own.quote_starts):
        return True
    if _field(normal, own.quoted_header_first) and any(
        _field(normalise(later).strip(), own.quoted_header_then)
        for later in lines[index + 1 : index + 4]
    ):
        return True
    if own.signature_rule is not None and own.signature_rule.match(line.strip()):
        rest = lines[index + 1 :]
        if len(rest) > own.signature_max_lines:
            return False
        tail = normalise("\n".join(rest))
        return any(m and m in tail for m in own.signature_markers)
    return False


def _field(normal: str, names: tuple[str, ...]) -> bool:
    return any(normal.startswith(f"{name}:") or normal.startswith(f"{name} :") for name in names)


def _without_disclaimers(lines: list[str], rules: IntakeRules) -> list[str]:
    """The lines without disclaimer blocks: from the line where a disclaimer phrase begins to
    the end of its paragraph."""
    markers = rules.own_words.disclaimers
    if not markers:
        return lines
    kept: list[str] = []
    paragraph: list[str] = []
    for line in [*lines, ""]:
        if line.strip():
            paragraph.append(line)
            continue
        kept += _paragraph_before_disclaimer(paragraph[:60], markers) + paragraph[60:]
        kept.append(line)
        paragraph = []
    return kept[:-1]


def _paragraph_before_disclaimer(lines: list[str], markers: tuple[str, ...]) -> list[str]:
    def names_one(part: list[str]) -> bool:
        normal = normalise(" ".join(part))
        return any(m in normal for m in markers)

    if not names_one(lines):
        return lines
    for end in range(1, len(lines) + 1):
        if names_one(lines[:end]):  # a phrase ends on line end-1; find where it begins
            start = end - 1
            while start > 0 and not names_one(lines[start:end]):
                start -= 1
            return lines[:start]
    return lines


def phishing_like(subject: str, rules: IntakeRules) -> str | None:
    """The part of the subject that reads like phishing, or None."""
    normal = normalise(subject)
    for pattern in rules.phishing_subjects:
        match = pattern.search(normal)
        if match:
            return match.group(0)
    return None


def loop_reason(
    headers: Headers,
    message: Message,
    body: Body | None,
    sender: Sender,
    subject: str,
    rules: IntakeRules,
    own_addresses: frozenset[str],
) -> str | None:
    """Why this message must never become a request nor be answered, or None: our own mail,
    an auto-reply, list or bulk mail, a bounce.

    Our own mail is recognised by From here, and by the exact Message-ID of a letter we sent in
    the service; never by the Message-ID's domain, which colleagues' mail shares."""
    if sender.address and sender.address.lower() in own_addresses:
        return "our own message (From is our address)"
    return (
        _bounce(headers, message, body, sender, subject, rules)
        or _auto_reply(headers, rules)
        or _bulk(headers, sender, rules)
        or _empty_return_path(headers)
        or _auto_reply_subject(subject, rules)
    )


def _auto_reply(headers: Headers, rules: IntakeRules) -> str | None:
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
    return None


def _auto_reply_subject(subject: str, rules: IntakeRules) -> str | None:
    normal = normalise(subject)
    if any(s and s in normal for s in rules.autoreply_subjects):
        return "auto-reply (subject)"
    return None


def _bounce(
    headers: Headers,
    message: Message,
    body: Body | None,
    sender: Sender,
    subject: str,
    rules: IntakeRules,
) -> str | None:
    """A delivery failure report, recognised from its structure: an RFC 3464 report, the
    sender (MAILER-DAEMON, also without a domain or as ``<>``), the headers, the wording of
    the common non-RFC formats, the subject."""
    ctype = str(safe(message.get_content_type, "")).lower()
    if ctype == "multipart/report" or (body is not None and body.delivery_report):
        return "bounce (delivery status report)"
    if sender.local and sender.local in rules.bounce_senders:
        return f"bounce (sender {sender.local})"
    if sender.empty:
        return "bounce or automatic message (empty From)"
    for name in rules.bounce_headers:
        if headers.first(name) is not None:
            return f"bounce ({name} header)"
    normal = normalise(subject)
    if any(s and s in normal for s in rules.bounce_subjects):
        return "bounce (subject)"
    if body is not None and rules.bounce_texts:
        text = normalise(body.text[:5000])
        if any(s in text for s in rules.bounce_texts):
            return "bounce (delivery failure text)"
    return None


def _empty_return_path(headers: Headers) -> str | None:
    return_path = headers.first("return-path")
    if return_path is not None and return_path.strip() in ("<>", ""):
        return "bounce or automatic message (empty Return-Path)"
    return None


def _bulk(headers: Headers, sender: Sender, rules: IntakeRules) -> str | None:
    for name in rules.list_headers:
        if headers.first(name) is not None:
            return f"list mail ({name} header)"
    for name in rules.bulk_headers:
        if headers.first(name) is not None:
            return f"bulk mail ({name} header)"
    if sender.local and sender.local in rules.bulk_senders:
        return f"bulk mail (sender {sender.local})"
    domain = sender.domain
    if domain and any(domain == d or domain.endswith(f".{d}") for d in rules.bulk_domains):
        return f"bulk mail (sender domain {domain})"
    return None


def arrival(
    received_at: datetime | None,
    headers: Headers,
    date_header: datetime | None,
    now: datetime,
    limits: Limits,
    own_hosts: tuple[str, ...] = (),
) -> tuple[datetime, str]:
    """When the message reached the mailbox, and where that was read from: the mailbox's
    INTERNALDATE, else the first (newest) Received header written by our own mail servers
    (``own_hosts``, or a host name without a dot), else the sender's Date if it is recent,
    else now. A time in the future, or more than ``arrival_max_age_days`` ago, is never the
    arrival."""
    oldest = now - timedelta(days=limits.arrival_max_age_days)

    def believable(at: datetime | None) -> bool:
        return at is not None and oldest <= at <= now + FUTURE_SKEW

    if believable(received_at):
        assert received_at is not None
        return min(received_at, now).astimezone(UTC), "internaldate"
    for value in headers.all("received"):
        if _written_by_us(value, own_hosts):
            found = parse_date(value.rpartition(";")[2])
            if believable(found):
                assert found is not None
                return min(found, now).astimezone(UTC), "received"
            break
    recent = now - timedelta(hours=limits.date_header_max_age_hours)
    if date_header is not None and recent <= date_header <= now + FUTURE_SKEW:
        # The sender's clock, which anyone can set: trusted only close to now.
        return min(date_header, now).astimezone(UTC), "date"
    return now, "now"


_BY_HOST = re.compile(r"\bby\s+\[?([A-Za-z0-9.\-]+)", re.I)


def _written_by_us(received: str, own_hosts: tuple[str, ...]) -> bool:
    match = _BY_HOST.search(received)
    if match is None:
        return False
    host = match.group(1).lower().rstrip(".")
    if "." not in host or host == "localhost":
        return True
    return any(host == h or host.endswith(f".{h}") for h in own_hosts)


def language_of(text: str) -> str:
    """``ja`` for Japanese text, ``en`` otherwise (a Japanese name in an English letter is en)."""
    if KANA.search(text):
        return "ja"
    japanese = len(JAPANESE.findall(text))
    latin = len(LATIN.findall(text))
    return "ja" if japanese and japanese * 3 >= latin else "en"
