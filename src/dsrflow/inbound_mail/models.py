"""Inbound mail tables: messages as received, their attachments, and the IMAP sync state."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Column, Index, LargeBinary, Text, column, func
from sqlmodel import Field, SQLModel

from dsrflow.db import UTCDateTime, utcnow

# What became of a message. ``triage`` and ``quarantined`` wait for a handler, who converts them
# (-> ``created``) or dismisses them (-> ``dismissed``).
STATUSES = ("joined", "created", "triage", "quarantined", "dismissed", "ignored")
OPEN_STATUSES = ("triage", "quarantined")


class InboundMessage(SQLModel, table=True):
    """One message that reached the mailbox, kept whole (``raw``) with what was read from it.

    ``message_id`` is unique: the same message delivered twice (IMAP and a pipe, or a re-run)
    is one row. A message without a usable Message-ID gets one derived from its bytes.
    """

    __tablename__ = "inbound_messages"
    __table_args__ = (
        Index("ix_inbound_messages_status_received_at", "status", "received_at"),
        # The per-sender limit counts what mail created in the last hours: read only those rows.
        Index("ix_inbound_messages_status_created_at", "status", "created_at"),
        # ... of one sender (any case): a backlog of new requests counts a few rows, not all.
        Index(
            "ix_inbound_messages_sender_created",
            func.lower(column("from_address")),
            "created_at",
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    message_id: str = Field(unique=True, max_length=250)
    source: str = Field(max_length=16)  # imap | file
    status: str = Field(max_length=16)
    # Why it is ignored, quarantined or in triage (for handlers; English, no personal data).
    reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    request_id: str | None = Field(
        default=None, foreign_key="requests.id", index=True, max_length=32
    )

    from_address: str | None = Field(default=None, max_length=320)
    from_name: str | None = Field(default=None, max_length=200)
    subject: str | None = Field(default=None, max_length=998)
    text: str = Field(default="", sa_column=Column(Text, nullable=False))
    language: str = Field(default="ja", max_length=2)
    # The request type its words name (set even when it went to triage, as a hint).
    detected_type: str | None = Field(default=None, max_length=64)
    in_reply_to: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    references: str | None = Field(default=None, sa_column=Column(Text, nullable=True))

    # When it reached the mailbox: the Art. 39 clock of a request made from it runs from here.
    received_at: datetime = Field(sa_type=UTCDateTime)
    received_at_source: str = Field(max_length=16)  # internaldate | received | date | now
    date_header: datetime | None = Field(default=None, sa_type=UTCDateTime)

    raw: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    raw_size: int
    raw_sha256: str = Field(max_length=64)
    # Attachments beyond the ``max_attachments`` limit: counted, not described (see ``raw``).
    attachments_omitted: int = Field(default=0, sa_column_kwargs={"server_default": "0"})

    imap_mailbox: str | None = Field(default=None, max_length=500)
    imap_uidvalidity: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    imap_uid: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))

    # A handler's decision on a triage or quarantined message.
    decided_by: str | None = Field(default=None, max_length=80)
    decided_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    note: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    # The handler a triage message is given to (bulk "assign" in the console).
    assignee_id: int | None = Field(default=None, foreign_key="handlers.id")
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    # Set when purge emptied ``raw`` (and, with its request, the words read from it).
    raw_purged_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class InboundAttachment(SQLModel, table=True):
    """A file attached to an inbound message. Over the size or count limit, only its
    description and hash are kept (``content`` is NULL); the raw message still holds it."""

    __tablename__ = "inbound_attachments"

    id: int | None = Field(default=None, primary_key=True)
    inbound_message_id: int = Field(foreign_key="inbound_messages.id", index=True)
    filename: str | None = Field(default=None, max_length=255)
    content_type: str = Field(max_length=255)
    size: int
    sha256: str = Field(max_length=64)
    content: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    # Erased before its time: "my_number" (a handler marked an Individual Number card), or
    # past its retention ("retention").
    erased_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    erased_reason: str | None = Field(default=None, max_length=32)


class ImapSyncState(SQLModel, table=True):
    """How far a mailbox folder has been read: its UIDVALIDITY and the last UID committed.

    ``last_uid`` advances in the same transaction as the message row, so a crash never skips
    a message. A poller claims the row (``claimed_by`` until ``claimed_until``) before reading,
    so of several processes only one reads the folder at a time.
    """

    __tablename__ = "imap_sync_state"

    id: int | None = Field(default=None, primary_key=True)
    mailbox: str = Field(unique=True, max_length=500)  # user@host:port/folder
    uidvalidity: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    last_uid: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    claimed_by: str | None = Field(default=None, max_length=64)
    claimed_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_polled_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
