"""Inbound-mail shapes: what intake hands the service (plain values), and what the API shows."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field

from dsrflow.requests.schemas import AgentIn, Language

Status = Literal["joined", "created", "triage", "quarantined", "dismissed", "ignored"]


@dataclass(frozen=True)
class AttachmentIn:
    """A file found in a message. ``content`` is None when it was over a limit."""

    filename: str | None
    content_type: str
    size: int
    sha256: str
    content: bytes | None


@dataclass(frozen=True)
class InboundMail:
    """A message as intake read it: its words, its threading, and any reason it must not
    become a request. The service decides what it is against the database and acts."""

    message_id: str
    raw: bytes
    raw_size: int
    source: str
    received_at: datetime
    received_at_source: str
    date_header: datetime | None = None
    from_address: str | None = None
    from_name: str | None = None
    subject: str | None = None
    text: str = ""
    language: str = "ja"
    in_reply_to: str | None = None
    references: str | None = None
    # Message-IDs this one answers (In-Reply-To, then References).
    thread_ids: tuple[str, ...] = ()
    # Request references (DSR-YYYY-NNNNNN) named in the subject.
    named_references: tuple[str, ...] = ()
    # References named in the text (quoted lines too: an auto-responder quotes our letter).
    body_references: tuple[str, ...] = ()
    detected_type: str | None = None
    # Why no single type was recognised ("no request type recognised", "names several types").
    type_problem: str | None = None
    # Set for auto-replies, bounces and our own mail: never a request, never answered.
    ignore_reason: str | None = None
    # Set when the message could not be understood; it waits for a handler.
    quarantine_reason: str | None = None
    # A bounce: the Message-IDs of the messages it returns, and what the report says.
    returned_ids: tuple[str, ...] = ()
    bounce_diagnostic: str | None = None
    attachments: tuple[AttachmentIn, ...] = field(default_factory=tuple)
    # Attachments beyond ``max_attachments``: counted, not described (they are in ``raw``).
    attachments_omitted: int = 0

    @property
    def attachment_count(self) -> int:
        return len(self.attachments) + self.attachments_omitted


@dataclass(frozen=True)
class IntakePolicy:
    """Limits from the rules file that the service applies against the database."""

    # Requests that mail from one address may create by itself within ``sender_window``;
    # beyond, its mail waits in triage (a mail loop never makes requests without end).
    requests_per_sender: int = 1
    sender_window: timedelta = timedelta(hours=24)


@dataclass(frozen=True)
class ImapOrigin:
    """Where an IMAP message came from, and the claim under which it is being read: the
    service advances the folder's last UID in the same transaction as the message row."""

    sync_state_id: int
    mailbox: str
    uidvalidity: int
    uid: int
    claim: str
    lease_seconds: float


@dataclass(frozen=True)
class IngestOutcome:
    """What became of one message."""

    inbound_id: int
    status: str
    reason: str | None = None
    request_id: str | None = None
    reference: str | None = None
    duplicate: bool = False

    def describe(self) -> str:
        """One line for people: ``created DSR-2026-000001``, ``triage #3``, ``ignored (…)``."""
        if self.duplicate:
            return f"duplicate of #{self.inbound_id} ({self.status})"
        if self.status in ("joined", "created"):
            return f"{self.status} {self.reference}"
        if self.status == "triage":
            return f"triage #{self.inbound_id}" + (f" ({self.reason})" if self.reason else "")
        return f"{self.status} #{self.inbound_id}" + (f" ({self.reason})" if self.reason else "")


@dataclass(frozen=True)
class Claim:
    """A poller's hold on a mailbox folder, until ``lease_seconds`` after the last progress."""

    sync_state_id: int
    mailbox: str
    token: str
    uidvalidity: int
    last_uid: int
    reset: bool  # UIDVALIDITY changed: the folder is read again from the start
    lease_seconds: float


# --------------------------------------------------------------------------- API


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ConvertIn(_In):
    """Make a request of a triage (or quarantined) message; its arrival time is kept."""

    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={"examples": [{"type": "disclosure"}]},
    )

    type: str = Field(min_length=1, max_length=64)
    name: str | None = Field(default=None, min_length=1, max_length=200)
    email: EmailStr | None = None
    language: Language | None = None
    # Who acts for the person, when an agent wrote (letters then go to the agent).
    agent: AgentIn | None = None


class DismissIn(_In):
    note: str = Field(min_length=1, max_length=10_000)
    # One of the replies in workflows/intake/replies.yaml, sent to the sender; none: no mail.
    reply: str | None = Field(default=None, max_length=64)


@dataclass(frozen=True)
class TriageReply:
    """A reply a handler may send when dismissing a message (workflows/intake/replies.yaml)."""

    key: str
    letter: str
    label: dict[str, str]


class AttachmentPublic(BaseModel):
    id: int
    filename: str | None
    content_type: str
    size: int
    sha256: str
    stored: bool


class InboxItem(BaseModel):
    """One inbound message in a list."""

    id: int
    status: str
    reason: str | None
    source: str
    received_at: datetime
    from_address: str | None
    from_name: str | None
    subject: str | None
    language: str
    detected_type: str | None
    request_id: str | None
    reference: str | None
    attachment_count: int


class InboxMessage(InboxItem):
    """One inbound message, whole (the raw bytes are a separate download)."""

    message_id: str
    text: str
    in_reply_to: str | None
    references: str | None
    received_at_source: str
    date_header: datetime | None
    raw_size: int
    raw_sha256: str
    decided_by: str | None
    decided_at: datetime | None
    note: str | None
    assignee_id: int | None = None
    # The first attachments described (``attachment_count`` says how many there are).
    attachments: list[AttachmentPublic]


class InboxPage(BaseModel):
    items: list[InboxItem]
    total: int
    limit: int
    offset: int


class ConvertedPublic(BaseModel):
    message: InboxMessage
    request_id: str
    reference: str
    received_at: datetime
    due_at: datetime
