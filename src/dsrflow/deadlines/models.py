"""Reminder keys: each reminder or escalation a sweep queued, once per request, step and recipient.

A handler-bound mail lists many requests, so the outbox key of that mail cannot be the reminder's
key; this table holds the per-request keys and points at the mail that carried each.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from dsrflow.db import UTCDateTime, utcnow


class Reminder(SQLModel, table=True):
    __tablename__ = "reminders"

    # "<request id>:<kind>:<step>:<recipient>", e.g. "...:overdue:2026-04-15:1:info@example.jp".
    key: str = Field(primary_key=True, max_length=512)
    request_id: str = Field(index=True, max_length=32)
    outbox_id: int | None = Field(default=None)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
