"""Reading inbound e-mail: parse any message, read what it says, and hand it to the inbox.

``read_message`` never raises: whatever the bytes, it returns an ``InboundMail``, at worst
quarantined with the reason. It handles MIME multipart, HTML-only mail (turned into text),
attachments (kept within limits, hashed), the charsets used in Japan (ISO-2022-JP with the
CP932 extensions that Windows mailers put in it, Shift_JIS read as CP932, EUC-JP, UTF-8) and
mislabelled ones, RFC 2047 encoded words (also split in the middle of a character), raw 8-bit
headers, and missing or broken header fields.

What a message says is read with the rules in ``workflows/intake/mail.yaml`` (phrases naming
each request type, loop-protection rules, limits): data a privacy officer may change. The
service (``dsrflow.inbound_mail.service``) then decides against the database (is it a reply
to one of our requests? seen before?) and acts, in one transaction.
"""

from __future__ import annotations

import base64
import binascii
import email
import hashlib
import logging
import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email import policy, utils
from email.message import Message
from pathlib import Path
from typing import Any

import html2text
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlmodel import Session

from dsrflow.db import utcnow
from dsrflow.inbound_mail import service
from dsrflow.inbound_mail.schemas import (
    AttachmentIn,
    ImapOrigin,
    InboundMail,
    IngestOutcome,
    IntakePolicy,
)
from dsrflow.runtime import Runtime

log = logging.getLogger(__name__)

RULES_FILE = Path("intake") / "mail.yaml"
REFERENCE = re.compile(r"\bDSR-\d{4}-\d{6}\b")
# A clock skew we accept before an arrival time from a header counts as "in the future".
FUTURE_SKEW = timedelta(minutes=5)
HEADER_ONLY_LIMIT = 64 * 1024


# --------------------------------------------------------------------------- rules


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Limits(_Strict):
    max_message_bytes: int = Field(gt=0)
    max_attachment_bytes: int = Field(gt=0)
    max_attachments: int = Field(ge=0)
    max_text_chars: int = Field(gt=0)
    # MIME leaves read per message; more is a message built to exhaust the reader.
    max_parts: int = Field(default=500, gt=0)
    # Requests that mail from one address creates by itself per window; beyond: triage.
    requests_per_sender: int = Field(default=1, gt=0)
    requests_per_sender_hours: float = Field(default=24, gt=0)
    # A sender's Date is the arrival only without INTERNALDATE and Received, and only when
    # it is at most this old (an old Date would make a request overdue at once).
    date_header_max_age_hours: float = Field(default=48, gt=0)


class Phrases(_Strict):
    ja: list[str] = []
    en: list[str] = []


class IgnoreRules(_Strict):
    auto_submitted_allowed: list[str] = ["no"]
    autoreply_headers: list[str] = []
    precedence: list[str] = []
    bounce_senders: list[str] = []
    bounce_headers: list[str] = []
    autoreply_subjects: list[str] = []
    bounce_subjects: list[str] = []


class RulesFile(_Strict):
    limits: Limits
    types: dict[str, Phrases]
    outranks: dict[str, list[str]] = {}
    forward_subject_prefixes: list[str] = []
    reply_separators: list[str] = []
    ignore: IgnoreRules
    # Words that mark a mail as sent by an agent for someone else: it waits in triage, so that a
    # handler converts it with the agent recorded (Art. 37(3)).
    agent_phrases: Phrases = Phrases()


class IntakeRulesError(Exception):
    """The rules file is missing or wrong; each error names the file and the key."""

    def __init__(self, errors: list[str]):
        super().__init__("; ".join(errors))
        self.errors = errors


@dataclass(frozen=True)
class IntakeRules:
    """The rules file, compiled."""

    limits: Limits
    phrases: tuple[tuple[re.Pattern[str], str], ...]
    outranks: dict[str, frozenset[str]]
    forwarded: re.Pattern[str] | None
    separators: tuple[str, ...]
    auto_submitted_allowed: frozenset[str]
    autoreply_headers: tuple[str, ...]
    precedence: frozenset[str]
    bounce_senders: frozenset[str]
    bounce_headers: tuple[str, ...]
    autoreply_subjects: tuple[str, ...]
    bounce_subjects: tuple[str, ...]
    agent_phrases: tuple[re.Pattern[str], ...] = ()


_RULES_CACHE: dict[tuple[Path, int, tuple[str, ...]], IntakeRules] = {}


def load_rules(path: Path, known_types: Iterable[str] | None = None) -> IntakeRules:
    """Load and compile the rules file (cached until it changes); raise IntakeRulesError."""
    known = tuple(sorted(known_types)) if known_types is not None else ()
    try:
        key = (path, path.stat().st_mtime_ns, known)
    except OSError as exc:
        raise IntakeRulesError([f"{path}: cannot be read: {exc.strerror}"]) from exc
    if key not in _RULES_CACHE:
        _RULES_CACHE.clear()
        _RULES_CACHE[key] = _compile_rules(path, known)
    return _RULES_CACHE[key]


def rules_for(rt: Runtime) -> IntakeRules:
    """The rules of this runtime's workflows directory, checked against its request types."""
    return load_rules(rt.settings.workflows_dir / RULES_FILE, rt.definitions.workflows)


def _compile_rules(path: Path, known: tuple[str, ...]) -> IntakeRules:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        data = RulesFile.model_validate(raw)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise IntakeRulesError([f"{path}: cannot be read as YAML: {exc}"]) from exc
    except ValidationError as exc:
        raise IntakeRulesError(
            [
                f"{path}: {'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg']}"
                for e in exc.errors()
            ]
        ) from exc
    errors: list[str] = []
    named = set(data.types) | set(data.outranks)
    named |= {t for losers in data.outranks.values() for t in losers}
    for request_type in sorted(named):
        if known and request_type not in known:
            errors.append(f"{path}: types.{request_type}: unknown request type (one of {known})")
    phrases: list[tuple[re.Pattern[str], str]] = []
    for request_type, lists in data.types.items():
        for language, words in (("ja", lists.ja), ("en", lists.en)):
            for i, phrase in enumerate(words):
                normal = normalise(phrase).strip()
                if not normal:
                    errors.append(f"{path}: types.{request_type}.{language}[{i}]: empty phrase")
                    continue
                phrases.append((_phrase_pattern(normal), request_type))
    if errors:
        raise IntakeRulesError(errors)
    prefixes = [re.escape(normalise(p).strip()) for p in data.forward_subject_prefixes if p]
    forwarded = re.compile(rf"^(?:re\s*:\s*)*(?:{'|'.join(prefixes)})\s*:") if prefixes else None
    ignore = data.ignore
    return IntakeRules(
        limits=data.limits,
        phrases=tuple(phrases),
        outranks={k: frozenset(v) for k, v in data.outranks.items()},
        forwarded=forwarded,
        separators=tuple(normalise(s).strip() for s in data.reply_separators if s.strip()),
        auto_submitted_allowed=frozenset(v.lower() for v in ignore.auto_submitted_allowed),
        autoreply_headers=tuple(h.lower() for h in ignore.autoreply_headers),
        precedence=frozenset(v.lower() for v in ignore.precedence),
        bounce_senders=frozenset(v.lower() for v in ignore.bounce_senders),
        bounce_headers=tuple(h.lower() for h in ignore.bounce_headers),
        autoreply_subjects=tuple(normalise(s).strip() for s in ignore.autoreply_subjects),
        bounce_subjects=tuple(normalise(s).strip() for s in ignore.bounce_subjects),
        agent_phrases=tuple(
            _phrase_pattern(normalise(p).strip())
            for p in [*data.agent_phrases.ja, *data.agent_phrases.en]
            if normalise(p).strip()
        ),
    )


def _phrase_pattern(normal: str) -> re.Pattern[str]:
    if normal.isascii():
        # Whole words only: "correct my" must not match "incorrect mystery".
        return re.compile(rf"(?<![0-9a-z]){re.escape(normal)}(?![0-9a-z])")
    return re.compile(re.escape(normal))


_HYPHENS = re.compile(r"[-\u2010-\u2015\u2212]")
_SPACES = re.compile(r"\s+")
# Whitespace between two non-ASCII characters is a line wrap inside Japanese text.
_WRAP = re.compile(r"(?<=[^\x00-\x7f]) (?=[^\x00-\x7f])")


def normalise(text: str) -> str:
    """Text for matching phrases: NFKC (full-width to ASCII), case-folded, hyphens as spaces,
    runs of whitespace as one space, and no space inside Japanese text."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = _SPACES.sub(" ", _HYPHENS.sub(" ", text))
    return _WRAP.sub("", text)


# --------------------------------------------------------------------------- charsets

_ISO2022JP = {
    "iso-2022-jp",
    "iso2022jp",
    "iso2022_jp",
    "csiso2022jp",
    "iso-2022-jp-1",
    "iso-2022-jp-2",
    "iso-2022-jp-3",
    "iso-2022-jp-2004",
    "iso-2022-jp-ms",
    "cp50220",
    "cp50221",
    "cp50222",
}
_SHIFT_JIS = {
    "shift_jis",
    "shift-jis",
    "sjis",
    "x-sjis",
    "s-jis",
    "ms_kanji",
    "csshiftjis",
    "windows-31j",
    "cp932",
    "ms932",
    "shift_jisx0213",
    "shift_jis-2004",
}
_EUC_JP = {
    "euc-jp",
    "eucjp",
    "euc_jp",
    "x-euc-jp",
    "cseucpkdfmtjapanese",
    "cp51932",
    "euc-jis-2004",
}
_UTF8 = {"utf-8", "utf8", "utf_8", "unicode-1-1-utf-8", "x-unicode20utf8"}
_UNKNOWN = {"", "us-ascii", "ascii", "unknown-8bit", "x-unknown", "unknown", "default", "8bit"}
_WESTERN = re.compile(r"^(iso-?8859-\d+|latin-?\d|windows-125\d|cp125\d)$")
_KANA = re.compile(r"[\u3041-\u309f\u30a1-\u30fa\u30fc]")
_KANJI = re.compile(r"[\u4e00-\u9fff]")
_HALFWIDTH_KANA = re.compile(r"[\uff61-\uff9f]")
_ODD = re.compile(r"[\ufffd\ue000-\uf8ff\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_LATIN = re.compile(r"[A-Za-z]")
_JAPANESE = re.compile(r"[\u3041-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uff66-\uff9f]")


def decode_bytes(data: bytes, charset: str | None) -> str:
    """Decode text as labelled, and when the label is wrong or missing, as what it is."""
    if not data:
        return ""
    label = (charset or "").strip().strip('"').lower()
    seven_bit = data.isascii()
    if label in _ISO2022JP and seven_bit:
        return _strict(data, "iso2022_jp") or _iso2022jp_cp932(data, strict=False)
    if seven_bit and b"\x1b$" in data:  # ISO-2022-JP without (or with a wrong) label
        return _strict(data, "iso2022_jp") or _iso2022jp_cp932(data, strict=False)
    if label in _SHIFT_JIS:
        return _strict(data, "cp932") or _guess(data)
    if label in _EUC_JP:
        return _strict(data, "euc_jp") or _eucjp_cp932(data, strict=True) or _guess(data)
    if label in _UTF8:
        return _strict(data, "utf-8") or _guess(data)
    if seven_bit:
        return data.decode("ascii")
    if label in _UNKNOWN or label in _ISO2022JP:
        return _guess(data)
    declared = _strict(data, label)
    if declared is None:
        return _guess(data)
    if _WESTERN.match(label):
        # Japanese (or UTF-8) text sent out under a Western label is common; prefer what reads.
        guessed = _guess(data)
        if _strict(data, "utf-8") is not None or _KANA.search(guessed):
            return guessed
    return declared


def _strict(data: bytes, codec: str) -> str | None:
    try:
        return data.decode(codec)
    except (UnicodeDecodeError, LookupError):
        return None
    except Exception:  # a codec that fails in its own way
        return None


def _score(text: str) -> int:
    """How much ``text`` reads like Japanese (or plain) text; wrong decodings score low."""
    return (
        3 * len(_KANA.findall(text))
        + len(_KANJI.findall(text))
        - 3 * len(_HALFWIDTH_KANA.findall(text))
        - 5 * len(_ODD.findall(text))
    )


def _guess(data: bytes) -> str:
    utf8 = _strict(data, "utf-8")
    if utf8 is not None:
        return utf8
    candidates = [
        text
        for text in (
            _strict(data, "cp932"),
            _strict(data, "euc_jp") or _eucjp_cp932(data, strict=True),
            _strict(data, "euc_jis_2004"),
        )
        if text is not None
    ]
    if candidates:
        return max(candidates, key=_score)
    return max(
        (data.decode("utf-8", "replace"), data.decode("cp932", "replace")),
        key=lambda t: -t.count("\ufffd"),
    )


def _jis_to_sjis(j1: int, j2: int) -> bytes:
    """A JIS X 0208 code (both bytes 0x21-0x7E) as Shift_JIS/CP932 bytes."""
    s1 = ((j1 - 0x21) >> 1) + 0x81
    if s1 > 0x9F:
        s1 += 0x40
    s2 = j2 + (0x1F + (1 if j2 >= 0x60 else 0) if j1 & 1 else 0x7E)
    return bytes((s1, s2))


def _iso2022jp_cp932(data: bytes, *, strict: bool) -> str:
    """ISO-2022-JP as Windows writes it (CP50220/50221): the JIS X 0208 set is CP932's, with
    NEC and IBM extensions (①, ㈱, …), and half-width katakana by ESC ( I or SO/SI."""
    out = bytearray()
    mode, shifted, i, bad = "ascii", False, 0, 0
    while i < len(data):
        byte = data[i]
        if byte == 0x1B:
            for seq, new_mode in _ESCAPES:
                if data.startswith(seq, i):
                    mode, i = new_mode, i + len(seq)
                    break
            else:
                bad += 1
                i += 1
            continue
        if byte in (0x0E, 0x0F):
            shifted, i = byte == 0x0E, i + 1
            continue
        if byte in (0x0A, 0x0D) or byte >= 0x80:
            out.append(byte if byte < 0x80 else 0x3F)
            bad += byte >= 0x80
            i += 1
            continue
        if shifted or mode == "kana":
            if 0x21 <= byte <= 0x5F:
                out.append(byte + 0x80)
            else:
                out.append(byte)
            i += 1
        elif mode == "jis":
            nxt = data[i + 1] if i + 1 < len(data) else 0
            if 0x21 <= byte <= 0x7E and 0x21 <= nxt <= 0x7E:
                out += _jis_to_sjis(byte, nxt)
                i += 2
            else:
                out.append(byte if byte in (0x20, 0x09) else 0x3F)
                bad += byte not in (0x20, 0x09)
                i += 1
        else:
            out.append(byte)
            i += 1
    text = out.decode("cp932", "replace")
    if strict and (bad or "\ufffd" in text):
        raise UnicodeDecodeError("iso-2022-jp", data, 0, len(data), "not CP50220 text")
    return text


_ESCAPES = (
    (b"\x1b&@\x1b$B", "jis"),
    (b"\x1b$(B", "jis"),
    (b"\x1b$(Q", "jis"),
    (b"\x1b$(O", "jis"),
    (b"\x1b$B", "jis"),
    (b"\x1b$@", "jis"),
    (b"\x1b(B", "ascii"),
    (b"\x1b(J", "ascii"),
    (b"\x1b(H", "ascii"),
    (b"\x1b(I", "kana"),
)


def _eucjp_cp932(data: bytes, *, strict: bool) -> str | None:
    """EUC-JP with the NEC extensions (CP51932), through the CP932 table."""
    out = bytearray()
    i, bad = 0, 0
    while i < len(data):
        byte = data[i]
        nxt = data[i + 1] if i + 1 < len(data) else 0
        if byte < 0x80:
            out.append(byte)
            i += 1
        elif byte == 0x8E and 0xA1 <= nxt <= 0xDF:
            out.append(nxt)
            i += 2
        elif 0xA1 <= byte <= 0xFE and 0xA1 <= nxt <= 0xFE:
            out += _jis_to_sjis(byte - 0x80, nxt - 0x80)
            i += 2
        else:  # JIS X 0212 (0x8F) has no CP932 form
            bad += 1
            out.append(0x3F)
            i += 3 if byte == 0x8F else 1
    text = out.decode("cp932", "replace")
    if strict and (bad or "\ufffd" in text):
        return None
    return text


# --------------------------------------------------------------------------- headers

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


class _Headers:
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


def _sender(value: str | None) -> tuple[str | None, str | None]:
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


def _synthetic_id(raw: bytes) -> str:
    return f"<{hashlib.sha256(raw).hexdigest()[:40]}@no-message-id.invalid>"


# Japanese mailers write "JST", which RFC 5322 does not know (it would be read as UTC).
_JST = re.compile(r"(\d{1,2}:\d{2}(?::\d{2})?)\s+JST\b", re.I)


def _date(value: str | None) -> datetime | None:
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


# --------------------------------------------------------------------------- body


@dataclass
class _Body:
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


def _diagnostic(report: bytes) -> str | None:
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


def _safe(call: Any, default: Any = None) -> Any:
    try:
        return call()
    except Exception:
        return default


def _payload(part: Message) -> bytes:
    if part.get_content_type().startswith("message/") or part.is_multipart():
        # An attached message, or the blocks of a delivery report: as they were written.
        payload = _safe(lambda: part.get_payload())
        if isinstance(payload, list):
            blocks = [_safe(lambda m=m: m.as_bytes(policy=policy.compat32)) for m in payload]
            return b"\n".join(b for b in blocks if isinstance(b, bytes))
        return payload.encode("utf-8", "surrogateescape") if isinstance(payload, str) else b""
    data = _safe(lambda: part.get_payload(decode=True))
    if isinstance(data, bytes):
        return data
    payload = _safe(lambda: part.get_payload())
    return payload.encode("ascii", "surrogateescape") if isinstance(payload, str) else b""


def _filename(part: Message) -> str | None:
    name = _safe(part.get_filename) or _safe(lambda: part.get_param("name"))
    if isinstance(name, tuple):  # an RFC 2231 value that was not collapsed
        name = _safe(lambda: utils.collapse_rfc2231_value(name))
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


def _read_body(message: Message, limits: Limits) -> _Body:
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
        ctype = str(_safe(part.get_content_type, "application/octet-stream")).lower()
        disposition = str(_safe(lambda p=part: p.get("Content-Disposition", ""), "") or "")
        disposition = disposition.split(";")[0].strip().lower()
        filename = _filename(part)
        data = _payload(part)
        if ctype == "message/delivery-status":
            report = True
            diagnostic = diagnostic or _diagnostic(data)
        forwarded |= ctype == "message/rfc822"
        if ctype in ("message/rfc822", "text/rfc822-headers"):
            returned = email.message_from_bytes(data, policy=policy.compat32)
            returned_ids += (message_id_of(_Headers(returned).first("message-id")) or "",)
        if ctype in ("text/plain", "text/html") and disposition != "attachment" and not filename:
            charset = _safe(part.get_content_charset)
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
    undecodable = len(text) > 20 and len(_ODD.findall(text)) > len(text) / 10
    return _Body(
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


# --------------------------------------------------------------------------- what it says


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


def _loop_reason(
    headers: _Headers,
    message: Message,
    body: _Body | None,
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
    ctype = str(_safe(message.get_content_type, "")).lower()
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


def _arrival(
    received_at: datetime | None,
    headers: _Headers,
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
            found = _date(value.rpartition(";")[2])
            source = "received"
        oldest = now - timedelta(hours=limits.date_header_max_age_hours)
        if found is None and date_header is not None and date_header >= oldest:
            # The sender's clock, which anyone can set: trusted only close to now.
            found, source = date_header, "date"
    if found is None or found > now + FUTURE_SKEW:
        return now, "now"
    return found.astimezone(UTC), source


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
            message_id=_synthetic_id(raw),
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
        raw = _header_block(raw)
    # Too many parts: only the header is parsed (the raw message is kept whole).
    too_many = not too_large and too_many_parts(raw, limits.max_parts)
    message = email.message_from_bytes(
        _header_block(raw) if too_many else raw, policy=policy.compat32
    )
    headers = _Headers(message)
    message_id = message_id_of(headers.first("message-id")) or _synthetic_id(raw)
    from_name, from_address = _sender(headers.first("from"))
    subject = one_line(headers.text("subject"), 998)
    date_header = _date(headers.first("date"))
    arrival, arrival_source = _arrival(received_at, headers, date_header, now, limits)
    in_reply_to = headers.first("in-reply-to")
    references = headers.first("references")
    threads = thread_ids(in_reply_to, references)
    named = tuple(dict.fromkeys(REFERENCE.findall(unicodedata.normalize("NFKC", subject or ""))))
    body = None if too_large or too_many else _read_body(message, limits)
    too_many = too_many or bool(body and body.too_many_parts)
    report = body is not None and (
        body.delivery_report or message.get_content_type() == "multipart/report"
    )
    if report and body is not None:
        # A bounce of one of our letters belongs with its request (it stays ignored).
        threads = tuple(dict.fromkeys(threads + body.returned_ids))[:50]
    text = body.text if body else ""
    language = language_of(f"{subject or ''}\n{text}")
    quoted = REFERENCE.findall(unicodedata.normalize("NFKC", text))
    body_references = tuple(r for r in dict.fromkeys(quoted) if r not in named)[:20]

    quarantine = None
    if too_large:
        quarantine = f"message is {size} bytes; the limit is {limits.max_message_bytes}"
    elif too_many:
        quarantine = f"message has more than {limits.max_parts} MIME parts (the limit)"
    elif not headers.items:
        quarantine = "not an e-mail message (no header fields)"
    elif body is not None and body.undecodable:
        quarantine = "the text could not be decoded"
    elif from_address is None and not (named or threads):
        quarantine = "no usable sender address (From)"
    ignore = _loop_reason(
        headers,
        message,
        body,
        from_address,
        subject or "",
        rules,
        own_addresses,
    )
    bounce = report or (ignore or "").startswith("bounce")
    detected, problem = detect_type(subject or "", text, rules)
    forwarded = bool(body and body.forwarded) or bool(
        rules.forwarded and rules.forwarded.match(normalise(subject or ""))
    )
    if forwarded:
        problem = "forwarded message: the sender may not be the requester"
    return InboundMail(
        message_id=message_id,
        raw=raw,
        raw_size=size,
        source=source,
        received_at=arrival,
        received_at_source=arrival_source,
        date_header=date_header,
        from_address=from_address,
        from_name=from_name,
        subject=subject,
        text=text,
        language=language,
        in_reply_to=one_line(in_reply_to, 2000),
        references=one_line(references, 10_000),
        thread_ids=threads,
        named_references=named,
        body_references=body_references,
        detected_type=detected,
        type_problem=problem,
        ignore_reason=ignore,
        quarantine_reason=quarantine,
        returned_ids=body.returned_ids[:20] if bounce and body is not None else (),
        bounce_diagnostic=body.diagnostic if bounce and body is not None else None,
        attachments=tuple(body.attachments) if body and not too_many else (),
        attachments_omitted=body.attachments_omitted if body and not too_many else 0,
    )


def language_of(text: str) -> str:
    """``ja`` for Japanese text, ``en`` otherwise (a Japanese name in an English letter is en)."""
    if _KANA.search(text):
        return "ja"
    japanese = len(_JAPANESE.findall(text))
    latin = len(_LATIN.findall(text))
    return "ja" if japanese and japanese * 3 >= latin else "en"


def _header_block(raw: bytes) -> bytes:
    end = min((i for i in (raw.find(b"\r\n\r\n"), raw.find(b"\n\n")) if i >= 0), default=len(raw))
    return raw[: min(end, HEADER_ONLY_LIMIT)] + b"\r\n\r\n"


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
