"""Package shapes for the API, the console and the status page."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO

from pydantic import BaseModel


@dataclass(frozen=True)
class IncomingFile:
    """A file a handler hands over: its name as given, its type, and a stream to read."""

    filename: str
    content_type: str
    stream: BinaryIO


class PackageFilePublic(BaseModel):
    id: str
    filename: str
    content_type: str
    size: int
    sha256: str
    downloads: int
    downloads_left: int


class PackagePublic(BaseModel):
    id: str
    request_id: str
    created_by: str
    created_at: datetime
    expires_at: datetime
    max_downloads: int
    total_size: int
    removed_at: datetime | None
    removed_reason: str | None
    files: list[PackageFilePublic]


@dataclass
class PackageSweepReport:
    removed: int = 0
    errors: int = 0
