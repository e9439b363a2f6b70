"""The body of a message: its MIME leaves walked within limits, the text chosen (plain, else
HTML turned into text), attachments described and hashed, delivery reports read."""

from __future__ import annotations

import email
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from email import policy, utils
from email.message import Message
from typing import Any

from dsrflow.inbound_mail.charsets import ODD, decode_bytes
from dsrflow.inbound_mail.headers import Headers, clean, decode_header_text, message_id_of, one_line
from dsrflow.inbound_mail.rules_file import Limits
from dsrflow.inbound_mail.schemas import AttachmentIn

HEADER_ONLY_LIMIT = 64 * 1024


@dataclass
class Body:
    text: str
    attachments: list[AttachmentIn]
    forwarded: bool
    delivery_report: bool
    # Message-IDs of the messages a delivery report returns (ours, when a letter bounced).
    returned_ids: tuple[str, ...]
    undecodable: bool
    attachments_omitted: int = 0
    too_many_parts: bool = False
    # What a delivery report says went wrong (its Status and Diagnostic-Code).
    diagnostic: str | None = None


_DIAGNOSTIC = re.compile(rb"^(status|diagnostic-code)\s*:\s*(.+)$", re.I | re.M)


def diagnostic_of(report: bytes) -> str | None:
    found: dict[str, str] = {}
    for match in _DIAGNOSTIC.finditer(report[: 64 * 1024]):
        name = match.group(1).decode("ascii").lower()
        found.setdefault(name, match.group(2).decode("utf-8", "replace").strip())
    text = " ".join(v for k, v in sorted(found.items(), key=lambda kv: kv[0] != "status") if v)
    return one_line(text, 500)


_DELIMITER = re.compile(rb"\n--([^\r\n]{1,200})")
_BOUNDARY = re.compile(rb'boundary\s*=\s*(?:"([^"\r\n]{1,200})"|([^\s;"]{1,200}))', re.I)


def too_many_parts(raw: bytes, max_parts: int) -> bool:
    """Whether ``raw`` has more than ``max_parts`` MIME parts, counted on the bytes, so that
    a message built of a million tiny parts is never parsed into a million objects."""
    if raw.count(b"\n--") <= max_parts:  # an upper bound on the delimiter lines
        return False
    boundaries: set[bytes] = set()
    for match in _BOUNDARY.finditer(raw):
        boundaries.add(match.group(1) or match.group(2))
        if len(boundaries) > max_parts:  # each declares a multipart, itself a part
            return True
    parts = 0
    for match in _DELIMITER.finditer(raw):
        token = match.group(1).rstrip()
        if token in boundaries or token.removesuffix(b"--") in boundaries:
            parts += 1
            # Each multipart adds one closing delimiter that starts no part.
            if parts > max_parts + len(boundaries):
                return True
    return False


def _leaves(part: Message, depth: int = 0) -> Iterator[Message]:
    """Every leaf part, not descending into attached messages (they stay attachments)."""
    if part.is_multipart() and depth < 30 and not part.get_content_type().startswith("message/"):
        payload = part.get_payload()
        for child in payload if isinstance(payload, list) else []:
            if isinstance(child, Message):
                yield from _leaves(child, depth + 1)
        return
    yield part


def safe(call: Any, default: Any = None) -> Any:
    try:
        return call()
    except Exception:
        return default


def _payload(part: Message) -> bytes:
    if part.get_content_type().startswith("message/") or part.is_multipart():
        # An attached message, or the blocks of a delivery report: as they were written.
        payload = safe(lambda: part.get_payload())
        if isinstance(payload, list):
            blocks = [safe(lambda m=m: m.as_bytes(policy=policy.compat32)) for m in payload]
            return b"\n".join(b for b in blocks if isinstance(b, bytes))
        return payload.encode("utf-8", "surrogateescape") if isinstance(payload, str) else b""
    data = safe(lambda: part.get_payload(decode=True))
    if isinstance(data, bytes):
        return data
    payload = safe(lambda: part.get_payload())
    return payload.encode("ascii", "surrogateescape") if isinstance(payload, str) else b""


def _filename(part: Message) -> str | None:
    name = safe(part.get_filename) or safe(lambda: part.get_param("name"))
    if isinstance(name, tuple):  # an RFC 2231 value that was not collapsed
        name = safe(lambda: utils.collapse_rfc2231_value(name))
    if not isinstance(name, str) or not name.strip():
        return None
    name = decode_header_text(name)
    name = re.split(r"[\\/]", name)[-1]  # never a path
    return one_line(name, 255)


_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([A-Za-z0-9_.:-]+)""", re.I)


def _html_text(data: bytes, charset: str | None) -> str:
    if not charset:
        match = _META_CHARSET.search(data[:4096])
        charset = match.group(1).decode("ascii") if match else None
    html = decode_bytes(data, charset)
    import html2text  # most mail has a plain part: not imported at every start of ingest-email

    try:
        converter = html2text.HTML2Text()
        converter.body_width = 0
        converter.ignore_images = True
        converter.ignore_emphasis = True
        converter.unicode_snob = True
        return str(converter.handle(html))
    except Exception:
        return re.sub(r"<[^>]*>", " ", html)


def _text_bytes(data: bytes, limits: Limits) -> bytes:
    """At most what can make ``max_text_chars`` of text (4 bytes a character), cut at a line
    end so that no multi-byte character or escape sequence is split."""
    cap = 4 * limits.max_text_chars
    if len(data) <= cap:
        return data
    head = data[:cap]
    end = head.rfind(b"\n")
    return head[: end + 1] if end > 0 else head


def read_body(message: Message, limits: Limits) -> Body:
    plain: list[str] = []
    html: list[str] = []
    attachments: list[AttachmentIn] = []
    forwarded = report = too_many = False
    returned_ids: tuple[str, ...] = ()
    diagnostic: str | None = None
    omitted = 0
    for number, part in enumerate(_leaves(message), 1):
        if number > limits.max_parts:
            too_many = True
            break
        ctype = str(safe(part.get_content_type, "application/octet-stream")).lower()
        disposition = str(safe(lambda p=part: p.get("Content-Disposition", ""), "") or "")
        disposition = disposition.split(";")[0].strip().lower()
        filename = _filename(part)
        data = _payload(part)
        if ctype == "message/delivery-status":
            report = True
            diagnostic = diagnostic or diagnostic_of(data)
        forwarded |= ctype == "message/rfc822"
        if ctype in ("message/rfc822", "text/rfc822-headers"):
            returned = email.message_from_bytes(data, policy=policy.compat32)
            returned_ids += (message_id_of(Headers(returned).first("message-id")) or "",)
        elif part is not message:
            # A part whose own header is a returned message's (its headers written straight
            # after the boundary, without a Content-Type, as some Japanese MTAs do).
            returned_ids += (message_id_of(Headers(part).first("message-id")) or "",)
        if ctype in ("text/plain", "text/html") and disposition != "attachment" and not filename:
            charset = safe(part.get_content_charset)
            data = _text_bytes(data, limits)
            if ctype == "text/plain":
                plain.append(decode_bytes(data, charset if isinstance(charset, str) else None))
            else:
                html.append(_html_text(data, charset if isinstance(charset, str) else None))
            continue
        if part is message and not data:
            continue
        if len(attachments) >= limits.max_attachments:
            omitted += 1  # counted only; it stays in the raw message
            continue
        attachments.append(
            AttachmentIn(
                filename=filename,
                content_type=clean(ctype, 255),
                size=len(data),
                sha256=hashlib.sha256(data).hexdigest(),
                content=data if len(data) <= limits.max_attachment_bytes else None,
            )
        )
    chosen = [t for t in plain if t.strip()] or [t for t in html if t.strip()]
    text = "\n\n".join(t.replace("\r\n", "\n").replace("\r", "\n").strip() for t in chosen)
    undecodable = len(text) > 20 and len(ODD.findall(text)) > len(text) / 10
    return Body(
        text=clean(text, limits.max_text_chars),
        attachments=attachments,
        forwarded=forwarded,
        delivery_report=report,
        returned_ids=tuple(i for i in returned_ids if i),
        undecodable=undecodable,
        attachments_omitted=omitted,
        too_many_parts=too_many,
        diagnostic=diagnostic,
    )


_QUOTED_MESSAGE_ID = re.compile(
    r"^[ \t>]*message-id:[ \t]*(?:\r?\n[ \t>]*)?(<[^<>\s]{1,246}>)", re.I | re.M
)


def quoted_message_ids(text: str) -> tuple[str, ...]:
    """The Message-IDs of header blocks quoted in a text (the original a bounce returns
    inline: Exim, qmail, Yahoo, Gmail's plain-text format, the Japanese carriers)."""
    return tuple(
        dict.fromkeys(m for m in _QUOTED_MESSAGE_ID.findall(text[:200_000]) if m.isascii())
    )[:20]


def header_block(raw: bytes) -> bytes:
    end = min((i for i in (raw.find(b"\r\n\r\n"), raw.find(b"\n\n")) if i >= 0), default=len(raw))
    return raw[: min(end, HEADER_ONLY_LIMIT)] + b"\r\n\r\n"
