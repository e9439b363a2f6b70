"""Document shapes for the handlers' API."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict


class DocumentPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: str
    filename: str
    content_type: str
    size: int
    sha256: str
    uploaded_at: datetime
    removed_at: datetime | None
    removed_reason: str | None


class DocumentDiscardIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Literal["my_number_back", "not_needed"]
