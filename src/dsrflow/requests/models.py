"""Request tables."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from dsrflow.db import UTCDateTime, utcnow


def new_id() -> str:
    return uuid.uuid4().hex


class Request(SQLModel, table=True):
    """One data-subject request. ``state`` changes only through the service and the engine."""

    __tablename__ = "requests"
    __table_args__ = (
        Index("ix_requests_state_due_at", "state", "due_at"),
        Index("ix_requests_received_at", "received_at"),
        Index("ix_requests_next_sweep_at", "next_sweep_at"),
    )

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    reference: str = Field(unique=True, max_length=20)
    type: str = Field(index=True, max_length=64)
    state: str = Field(max_length=64)
    # The state to return to when the requester answers (set on entering awaiting_requester).
    resume_state: str | None = Field(default=None, max_length=64)
    version: int = 1
    channel: str = Field(default="web", max_length=16)
    language: str = Field(default="ja", max_length=2)

    requester_name: str = Field(max_length=200)
    requester_email: str = Field(max_length=320)
    requester_phone: str | None = Field(default=None, max_length=40)
    requester_postal_address: str | None = Field(default=None, max_length=500)
    details: str = Field(sa_column=Column(Text, nullable=False))
    disclosure_method: str | None = Field(default=None, max_length=16)
    agent_name: str | None = Field(default=None, max_length=200)
    agent_email: str | None = Field(default=None, max_length=320)
    agent_relation: str | None = Field(default=None, max_length=32)

    # The handler who looks after it (reminders go to them too), and when a handler last
    # opened it in the console (what the requester did since is flagged in the queue).
    assignee_id: int | None = Field(default=None, foreign_key="handlers.id", index=True)
    handler_seen_at: datetime | None = Field(default=None, sa_type=UTCDateTime)

    identity_method: str | None = Field(default=None, max_length=64)
    # What was checked to verify identity; for an agent, the authority and the agent's own check.
    identity_evidence: str | None = Field(default=None, max_length=2000)
    authority_document: str | None = Field(default=None, max_length=64)
    agent_identity_method: str | None = Field(default=None, max_length=64)
    # The disclosure method actually used (disclosure_method is the one the requester asked for).
    disclosure_method_used: str | None = Field(default=None, max_length=64)
    email_verified_at: datetime | None = Field(default=None, sa_type=UTCDateTime)

    received_at: datetime = Field(sa_type=UTCDateTime)
    identity_verified_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    awaiting_requester_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    closed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # Internal target (may be extended or paused); the Art. 39 date never moves.
    due_at: datetime = Field(sa_type=UTCDateTime)
    art39_date: date | None = None
    extension_days: int = 0
    # When the deadline sweep next has something to look at (a reminder step, or a change since
    # it last looked); NULL once closed. Sweeps read only what this says is due.
    next_sweep_at: datetime | None = Field(default=None, sa_type=UTCDateTime)

    status_token_hash: str = Field(unique=True, max_length=64)
    # The acknowledgment letter's Message-ID: the requester's later letters thread under it.
    acknowledgment_message_id: str | None = Field(default=None, max_length=250)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    # Set when purge removed its personal data (dsrflow purge, docs/reliability.md).
    purged_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class ReferenceCounter(SQLModel, table=True):
    """The last reference number handed out in a year (DSR-YYYY-NNNNNN)."""

    __tablename__ = "reference_counters"

    year: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    last_number: int = 0


class VerificationToken(SQLModel, table=True):
    """A single-use e-mail verification link, stored hashed."""

    __tablename__ = "verification_tokens"
    __table_args__ = (UniqueConstraint("token_hash"),)

    id: int | None = Field(default=None, primary_key=True)
    request_id: str = Field(foreign_key="requests.id", index=True, max_length=32)
    token_hash: str = Field(max_length=64)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class RequestNote(SQLModel, table=True):
    """An internal note on a request: for the desk only, never in a letter or on the status
    page. Adding one is an audit event (which records that a note was written, not its words)."""

    __tablename__ = "request_notes"

    id: int | None = Field(default=None, primary_key=True)
    request_id: str = Field(foreign_key="requests.id", index=True, max_length=32)
    handler_id: int = Field(foreign_key="handlers.id")
    body: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class DeskNotice(SQLModel, table=True):
    """A requester event waiting for the next batch mail to the desk (``REQUESTER_EVENT_MAIL``
    ``batch``); deleted once that mail is queued."""

    __tablename__ = "desk_notices"

    id: int | None = Field(default=None, primary_key=True)
    dedup_key: str = Field(unique=True, max_length=200)
    request_id: str = Field(foreign_key="requests.id", index=True, max_length=32)
    kind: str = Field(max_length=32)
    at: datetime = Field(sa_type=UTCDateTime)
    text: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    truncated: bool = False
    details: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Payment(SQLModel, table=True):
    """A fee payment recorded by a handler (audited)."""

    __tablename__ = "payments"

    id: int | None = Field(default=None, primary_key=True)
    request_id: str = Field(foreign_key="requests.id", index=True, max_length=32)
    amount_jpy: int
    method: str = Field(max_length=64)
    paid_at: datetime = Field(sa_type=UTCDateTime)
    note: str | None = Field(default=None, max_length=2000)
    recorded_by: str = Field(max_length=64)
    recorded_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
