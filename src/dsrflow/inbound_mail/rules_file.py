"""The intake rules file (``workflows/intake/mail.yaml``): its schema, and the compiled form
the reader uses. A privacy officer may change the file; it is validated when first read, and
each error names the file and the key."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from dsrflow.runtime import Runtime
from dsrflow.yamlio import read_yaml

RULES_FILE = Path("intake") / "mail.yaml"


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
    # No arrival (INTERNALDATE, our Received header) older than this is believed.
    arrival_max_age_days: float = Field(default=365, gt=0)


class Phrases(_Strict):
    ja: list[str] = []
    en: list[str] = []
    # Words that name the type only beside a word for personal data, or a phrase above.
    weak: list[str] = []


class OwnWords(_Strict):
    """What is not the sender's own words: quoted, forwarded, signature, disclaimer."""

    quote_prefixes: list[str] = [">"]
    quote_starts: list[str] = []
    forward_starts: list[str] = []
    quoted_header_first: list[str] = []
    quoted_header_then: list[str] = []
    signature_delimiters: list[str] = ["-- "]
    signature_rule: str | None = None
    signature_max_lines: int = Field(default=12, ge=0)
    signature_markers: list[str] = []
    disclaimers: list[str] = []


class NotRequests(_Strict):
    phishing_subjects: list[str] = []


class IgnoreRules(_Strict):
    auto_submitted_allowed: list[str] = ["no"]
    autoreply_headers: list[str] = []
    precedence: list[str] = []
    bounce_senders: list[str] = []
    bounce_headers: list[str] = []
    autoreply_subjects: list[str] = []
    bounce_subjects: list[str] = []
    bounce_texts: list[str] = []
    list_headers: list[str] = []
    bulk_headers: list[str] = []
    bulk_senders: list[str] = []
    bulk_domains: list[str] = []


class RulesFile(_Strict):
    limits: Limits
    own_mail_hosts: list[str] = []
    types: dict[str, Phrases]
    personal_data: Phrases = Phrases()
    outranks: dict[str, list[str]] = {}
    forward_subject_prefixes: list[str] = []
    reply_separators: list[str] = []
    own_words: OwnWords = OwnWords()
    not_requests: NotRequests = NotRequests()
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
class OwnWordRules:
    """``own_words``, compiled: patterns on normalised lines."""

    quote_prefixes: tuple[str, ...] = (">",)
    separators: tuple[str, ...] = ()
    quote_starts: tuple[re.Pattern[str], ...] = ()
    forward_starts: tuple[re.Pattern[str], ...] = ()
    quoted_header_first: tuple[str, ...] = ()
    quoted_header_then: tuple[str, ...] = ()
    signature_delimiters: tuple[str, ...] = ("-- ",)
    signature_rule: re.Pattern[str] | None = None
    signature_max_lines: int = 12
    signature_markers: tuple[str, ...] = ()
    disclaimers: tuple[str, ...] = ()


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
    weak_phrases: tuple[tuple[re.Pattern[str], str], ...] = ()
    personal_data: tuple[re.Pattern[str], ...] = ()
    own_words: OwnWordRules = OwnWordRules()
    phishing_subjects: tuple[re.Pattern[str], ...] = ()
    bounce_texts: tuple[str, ...] = ()
    list_headers: tuple[str, ...] = ()
    bulk_headers: tuple[str, ...] = ()
    bulk_senders: frozenset[str] = frozenset()
    bulk_domains: tuple[str, ...] = ()
    own_mail_hosts: tuple[str, ...] = ()
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
        raw = read_yaml(path)
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
    weak: list[tuple[re.Pattern[str], str]] = []
    for request_type, lists in data.types.items():
        for language, words in (("ja", lists.ja), ("en", lists.en), ("weak", lists.weak)):
            for i, phrase in enumerate(words):
                normal = normalise(phrase).strip()
                if not normal:
                    errors.append(f"{path}: types.{request_type}.{language}[{i}]: empty phrase")
                    continue
                (weak if language == "weak" else phrases).append(
                    (_phrase_pattern(normal), request_type)
                )
    personal = [_phrase_pattern(normalise(w).strip()) for w in _words(data.personal_data) if w]
    given = data.own_words
    patterns = _Patterns(path, errors)
    signature = patterns.compile("own_words.signature_rule", [given.signature_rule or ""])
    signature = signature if given.signature_rule else ()
    own = OwnWordRules(
        quote_prefixes=tuple(normalise(p).strip() for p in given.quote_prefixes if p.strip()),
        separators=tuple(normalise(s).strip() for s in data.reply_separators if s.strip()),
        quote_starts=patterns.compile("own_words.quote_starts", given.quote_starts),
        forward_starts=patterns.compile("own_words.forward_starts", given.forward_starts),
        quoted_header_first=tuple(normalise(f).strip() for f in given.quoted_header_first),
        quoted_header_then=tuple(normalise(f).strip() for f in given.quoted_header_then),
        signature_delimiters=tuple(given.signature_delimiters),
        signature_rule=signature[0] if signature else None,
        signature_max_lines=given.signature_max_lines,
        signature_markers=tuple(normalise(m).strip() for m in given.signature_markers),
        disclaimers=tuple(normalise(d).strip() for d in given.disclaimers if d.strip()),
    )
    phishing = patterns.compile(
        "not_requests.phishing_subjects", data.not_requests.phishing_subjects
    )
    if errors:
        raise IntakeRulesError(errors)
    prefixes = [re.escape(normalise(p).strip()) for p in data.forward_subject_prefixes if p]
    forwarded = re.compile(rf"^(?:re\s*:\s*)*(?:{'|'.join(prefixes)})\s*:") if prefixes else None
    ignore = data.ignore
    return IntakeRules(
        limits=data.limits,
        phrases=tuple(phrases),
        weak_phrases=tuple(weak),
        personal_data=tuple(personal),
        outranks={k: frozenset(v) for k, v in data.outranks.items()},
        forwarded=forwarded,
        separators=own.separators,
        own_words=own,
        phishing_subjects=phishing,
        auto_submitted_allowed=frozenset(v.lower() for v in ignore.auto_submitted_allowed),
        autoreply_headers=tuple(h.lower() for h in ignore.autoreply_headers),
        precedence=frozenset(v.lower() for v in ignore.precedence),
        bounce_senders=frozenset(v.lower() for v in ignore.bounce_senders),
        bounce_headers=tuple(h.lower() for h in ignore.bounce_headers),
        autoreply_subjects=tuple(normalise(s).strip() for s in ignore.autoreply_subjects),
        bounce_subjects=tuple(normalise(s).strip() for s in ignore.bounce_subjects),
        bounce_texts=tuple(normalise(s).strip() for s in ignore.bounce_texts if s.strip()),
        list_headers=tuple(h.lower() for h in ignore.list_headers),
        bulk_headers=tuple(h.lower() for h in ignore.bulk_headers),
        bulk_senders=frozenset(v.lower() for v in ignore.bulk_senders),
        bulk_domains=tuple(d.lower().lstrip(".") for d in ignore.bulk_domains),
        own_mail_hosts=tuple(h.lower().lstrip(".") for h in data.own_mail_hosts),
        agent_phrases=tuple(
            _phrase_pattern(normalise(p).strip())
            for p in [*data.agent_phrases.ja, *data.agent_phrases.en]
            if normalise(p).strip()
        ),
    )


def _words(phrases: Phrases) -> list[str]:
    return [*phrases.ja, *phrases.en, *phrases.weak]


class _Patterns:
    """Regular expressions of the rules file, compiled; each error names its key."""

    def __init__(self, path: Path, errors: list[str]):
        self.path, self.errors = path, errors

    def compile(self, key: str, sources: list[str]) -> tuple[re.Pattern[str], ...]:
        compiled: list[re.Pattern[str]] = []
        for i, source in enumerate(sources):
            try:
                compiled.append(re.compile(source))
            except re.error as exc:
                self.errors.append(f"{self.path}: {key}[{i}]: not a regular expression: {exc}")
        return tuple(compiled)


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
