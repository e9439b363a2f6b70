"""Handler table."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from dsrflow.db import UTCDateTime, utcnow


class Handler(SQLModel, table=True):
    """A person at the privacy desk (or a tool acting for one) with a bearer token."""

    __tablename__ = "handlers"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200)
    email: str = Field(max_length=320)
    role: str = Field(max_length=16)
    token_hash: str = Field(unique=True, max_length=64)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class ConsoleSession(SQLModel, table=True):
    """A handler signed in to the console. The cookie holds a random id; only its SHA-256 is
    stored, so a copy of the database opens no session. It ends at ``expires_at``, on logout,
    or when the handler's token is revoked (checked on every page)."""

    __tablename__ = "console_sessions"

    id: int | None = Field(default=None, primary_key=True)
    session_hash: str = Field(unique=True, max_length=64)
    handler_id: int = Field(foreign_key="handlers.id", index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    ended_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
