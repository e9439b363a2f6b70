"""The uploaded documents table."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, LargeBinary
from sqlmodel import Field, SQLModel

from dsrflow.db import UTCDateTime, utcnow


class RequesterDocument(SQLModel, table=True):
    """A file the requester uploaded for identity or authority. ``content`` is NULL once it has
    been removed (retention, or a handler discarded it); the row stays as the record."""

    __tablename__ = "requester_documents"

    id: int | None = Field(default=None, primary_key=True)
    request_id: str = Field(foreign_key="requests.id", index=True, max_length=32)
    kind: str = Field(max_length=16)  # identity | authority
    filename: str = Field(max_length=255)
    content_type: str = Field(max_length=64)
    size: int
    sha256: str = Field(max_length=64)
    content: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    uploaded_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    removed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    removed_reason: str | None = Field(default=None, max_length=32)
