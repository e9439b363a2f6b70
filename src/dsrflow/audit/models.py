"""Audit event table."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, UniqueConstraint
from sqlmodel import Field, SQLModel

from dsrflow.db import UTCDateTime

# Format 1 hashed ``detail`` itself; format 2 hashes a digest of each detail value, salted per
# value, so that purge can erase a value with its salt and the chain still verifies.
EVENT_FORMAT = 2


class Event(SQLModel, table=True):
    """Something that happened to a request. Never reordered or deleted; ``hash`` chains them.
    Only purge touches a row: it erases ``detail`` values with their salts, never a digest."""

    __tablename__ = "events"
    __table_args__ = (UniqueConstraint("request_id", "seq", name="uq_events_request_seq"),)

    id: int | None = Field(default=None, primary_key=True)
    request_id: str = Field(foreign_key="requests.id", index=True, max_length=32)
    seq: int
    kind: str = Field(max_length=32)
    trigger: str | None = Field(default=None, max_length=64)
    from_state: str | None = Field(default=None, max_length=64)
    to_state: str | None = Field(default=None, max_length=64)
    actor: str = Field(max_length=80)
    at: datetime = Field(sa_type=UTCDateTime)
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    format: int = Field(default=EVENT_FORMAT, sa_column_kwargs={"server_default": "1"})
    detail_digest: dict[str, str] | None = Field(
        default=None, sa_column=Column(JSON, nullable=True)
    )
    detail_salts: dict[str, str] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64)


class AuditHead(SQLModel, table=True):
    """The last event of each request's chain, so a deleted tail is detected too."""

    __tablename__ = "audit_heads"

    request_id: str = Field(primary_key=True, max_length=32)
    seq: int = 0
    hash: str = Field(default="", max_length=64)
