"""Outbox table: every message to send, written in the same transaction as its cause."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Index, Text
from sqlmodel import Field, SQLModel

from dsrflow.db import UTCDateTime, utcnow


class OutboxMessage(SQLModel, table=True):
    """One rendered message. ``dedup_key`` is unique, so the same letter is never queued twice."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_status_next_attempt_at", "status", "next_attempt_at"),)

    id: int | None = Field(default=None, primary_key=True)
    # Room for a request id, a kind and step, and a full recipient address (RFC 5321: 254+).
    dedup_key: str = Field(unique=True, max_length=512)
    request_id: str | None = Field(default=None, index=True, max_length=32)
    reference: str | None = Field(default=None, max_length=20)
    letter: str = Field(max_length=64)
    recipient: str = Field(max_length=320)
    subject: str = Field(max_length=998)
    body: str = Field(sa_column=Column(Text, nullable=False))
    message_id: str = Field(unique=True, max_length=250)
    in_reply_to: str | None = Field(default=None, max_length=250)
    # pending -> sending (claimed) -> sent | failed; a temporary failure goes back to pending.
    status: str = Field(default="pending", max_length=16)
    attempts: int = 0
    next_attempt_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    claimed_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
