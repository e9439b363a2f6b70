"""Header fields: RFC 2047 encoded words (also split in the middle of a character), raw 8-bit
values, senders, Message-IDs, threading and dates, read leniently."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from datetime import UTC, datetime
from email import utils
from email.message import Message

from dsrflow.inbound_mail.charsets import decode_bytes

_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")
_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,3}")
_FOLD = re.compile(r"\r?\n(?=[ \t])")
_MESSAGE_ID = re.compile(r"<([^<>\s]{1,246})>")
_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def clean(text: str, limit: int | None = None) -> str:
    """Text any database takes: no NUL or other control characters, no lone surrogates."""
    text = _CONTROL.sub("", text).encode("utf-8", "replace").decode("utf-8")
    return text[:limit] if limit is not None else text


def one_line(text: str | None, limit: int) -> str | None:
    if text is None:
        return None
    value = " ".join(clean(text).split())[:limit]
    return value or None


def decode_header_text(value: str) -> str:
    """A header value as text: raw 8-bit bytes guessed, RFC 2047 encoded words decoded
    (adjacent words of one charset joined first, so a character split between them survives)."""
    value = _FOLD.sub("", value)
    try:
        data = value.encode("ascii", "surrogateescape")
    except UnicodeEncodeError:
        data = None
    if data is not None and not data.isascii():
        value = decode_bytes(data, None)
    pieces: list[tuple[str | None, bytes | str]] = []
    position, after_word = 0, False
    for match in _ENCODED_WORD.finditer(value):
        gap = value[position : match.start()]
        if gap and not (after_word and gap.isspace()):
            pieces.append((None, gap))
        charset = match.group(1).split("*")[0].lower()
        payload = match.group(3)
        if match.group(2) in "bB" and not _BASE64.fullmatch(payload):
            # Not an encoded word after all: keep it as written.
            pieces.append((None, match.group(0)))
            position, after_word = match.end(), False
            continue
        raw = _b_decode(payload) if match.group(2) in "bB" else _q_decode(payload)
        last = pieces[-1] if pieces else None
        if last is not None and last[0] == charset and isinstance(last[1], bytes):
            pieces[-1] = (charset, last[1] + raw)
        else:
            pieces.append((charset, raw))
        position, after_word = match.end(), True
    if position < len(value):
        pieces.append((None, value[position:]))
    return "".join(
        piece if isinstance(piece, str) else decode_bytes(piece, charset)
        for charset, piece in pieces
    )


def _b_decode(payload: str) -> bytes:
    text = re.sub(r"[^A-Za-z0-9+/]", "", payload)
    for cut in range(4):
        candidate = text[: len(text) - cut] if cut else text
        try:
            return base64.b64decode(candidate + "=" * (-len(candidate) % 4))
        except (binascii.Error, ValueError):
            continue
    return b""


def _q_decode(payload: str) -> bytes:
    data = payload.replace("_", " ").encode("utf-8", "surrogateescape")
    return re.sub(rb"=([0-9A-Fa-f]{2})", lambda m: bytes((int(m.group(1), 16),)), data)


class Headers:
    """The top-level header fields, raw (``compat32`` keeps 8-bit bytes as surrogates)."""

    def __init__(self, message: Message):
        self.items = [(str(name).lower(), str(value)) for name, value in message.raw_items()]

    def first(self, name: str) -> str | None:
        for key, value in self.items:
            if key == name:
                return _FOLD.sub("", value).strip()
        return None

    def all(self, name: str) -> list[str]:
        return [_FOLD.sub("", value).strip() for key, value in self.items if key == name]

    def text(self, name: str) -> str | None:
        value = self.first(name)
        return decode_header_text(value) if value is not None else None


def sender(value: str | None) -> tuple[str | None, str | None]:
    """(display name, address) of a From field; (None, None) when there is no address."""
    if not value:
        return None, None
    name, address = utils.parseaddr(value)
    if not address or "@" not in address:
        match = _ADDRESS.search(value)
        if match is None:
            return one_line(decode_header_text(value), 200), None
        address = match.group(0)
    address = decode_header_text(address).strip().strip("<>")
    local, _, domain = address.rpartition("@")
    if not local or not _ADDRESS.fullmatch(f"{local}@{domain}"):
        return one_line(decode_header_text(name or value), 200), None
    address = f"{local}@{domain.lower()}"
    display = one_line(decode_header_text(name), 200) if name else None
    return display, address[:320]


def message_id_of(value: str | None) -> str | None:
    """The Message-ID of a header value, with angle brackets; None if it has none usable."""
    if not value:
        return None
    match = _MESSAGE_ID.search(value)
    token = match.group(1) if match else (value.split() or [""])[0].strip("<>")
    if not token or not token.isascii() or not token.isprintable() or len(token) > 246:
        return None
    return f"<{token}>"


def thread_ids(in_reply_to: str | None, references: str | None) -> tuple[str, ...]:
    """Message-IDs a message answers, nearest first: In-Reply-To, then References backwards."""
    found: list[str] = []
    for value, backwards in ((in_reply_to, False), (references, True)):
        ids = [f"<{m}>" for m in _MESSAGE_ID.findall(value or "") if m.isascii()]
        for message_id in reversed(ids) if backwards else ids:
            if message_id not in found:
                found.append(message_id)
    return tuple(found[:50])


def synthetic_id(raw: bytes) -> str:
    return f"<{hashlib.sha256(raw).hexdigest()[:40]}@no-message-id.invalid>"


# Japanese mailers write "JST", which RFC 5322 does not know (it would be read as UTC).
_JST = re.compile(r"(\d{1,2}:\d{2}(?::\d{2})?)\s+JST\b", re.I)


def parse_date(value: str | None) -> datetime | None:
    if not value:
        return None
    value = _JST.sub(r"\1 +0900", value)
    try:
        parsed = utils.parsedate_to_datetime(value)
    except Exception:
        return None
    if parsed is None or not 1990 <= parsed.year <= 9000:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
