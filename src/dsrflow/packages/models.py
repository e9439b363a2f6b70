"""Disclosure package tables. The files themselves live on disk (``PACKAGES_DIR``)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Column
from sqlmodel import Field, SQLModel

from dsrflow.db import UTCDateTime, utcnow
from dsrflow.requests.models import new_id


class DisclosurePackage(SQLModel, table=True):
    """Files disclosed to the requester, offered on the status page until ``expires_at`` and
    at most ``max_downloads`` times per file. ``removed_at`` is set once the files are gone
    (expired, purged or withdrawn by a handler)."""

    __tablename__ = "disclosure_packages"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    request_id: str = Field(foreign_key="requests.id", index=True, max_length=32)
    created_by: str = Field(max_length=80)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime, index=True)
    max_downloads: int
    total_size: int = Field(sa_column=Column(BigInteger, nullable=False))
    removed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    removed_reason: str | None = Field(default=None, max_length=16)  # expired | purged | revoked


class PackageFile(SQLModel, table=True):
    """One file of a package: stored under ``<package id>/<file id>``, never under its name."""

    __tablename__ = "package_files"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    package_id: str = Field(foreign_key="disclosure_packages.id", index=True, max_length=32)
    filename: str = Field(max_length=255)
    content_type: str = Field(max_length=255)
    size: int = Field(sa_column=Column(BigInteger, nullable=False))
    sha256: str = Field(max_length=64)
    downloads: int = 0
    last_downloaded_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
