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
