"""Shapes for deadline extensions and sweep reports."""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field


class DeadlineExtensionIn(BaseModel):
    """Move a request's internal target date; the Art. 39 date never moves."""

    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={
            "examples": [
                {
                    "days": 7,
                    "reason": "The records are archived off-site; retrieving them takes a week.",
                    "expected_version": 2,
                }
            ]
        },
    )

    days: int = Field(ge=1, le=365)
    reason: str = Field(min_length=1, max_length=5_000)
    expected_version: int | None = Field(default=None, ge=1)
    # Required (true) when the new target is on or after the Art. 39 date.
    confirm_past_art39: bool = False


@dataclass(slots=True)
class PlannedMail:
    """One reminder, escalation or digest that a sweep sends (or, dry, would send)."""

    reference: str
    kind: str
    step: str
    recipient: str
    letter: str
    language: str
    extra: dict[str, object] = field(default_factory=dict, hash=False, compare=False)

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.step}:{self.recipient}"


@dataclass
class SweepReport:
    planned: list[PlannedMail] = field(default_factory=list)
    queued: int = 0
    already_sent: int = 0
    skipped_claimed: int = 0
    errors: int = 0
