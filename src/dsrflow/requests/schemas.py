"""Request shapes for the API and the pages: XCreate in, XPublic out."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, field_validator

Language = Literal["ja", "en"]
AgentRelation = Literal["legal_representative", "appointed_agent"]
# Channels a handler may record at intake (the web form, the API and mail set their own).
HandlerChannel = Literal["post", "phone", "counter", "email"]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        # No database stores NUL in text (PostgreSQL refuses it): a clear 422, never a 500.
        if isinstance(value, str) and "\x00" in value:
            raise ValueError("must not contain NUL characters")
        return value


def _single_line(value: str | None) -> str | None:
    if value is not None and any(ch in value for ch in "\r\n"):
        raise ValueError("must be a single line")
    return value


class AgentIn(_In):
    name: str = Field(min_length=1, max_length=200)
    email: EmailStr
    relation: AgentRelation

    _one_line = field_validator("name")(_single_line)


class RequestCreate(_In):
    """A new request, from the public form, the JSON intake or a mail."""

    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={
            "examples": [
                {
                    "type": "disclosure",
                    "name": "Taro Yamada",
                    "email": "taro@example.jp",
                    "details": "Please disclose the personal data I gave when I signed up.",
                    "language": "ja",
                    "disclosure_method": "electronic",
                }
            ]
        },
    )

    type: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=200)
    email: EmailStr
    details: str = Field(min_length=1, max_length=20_000)
    phone: str | None = Field(default=None, max_length=40)
    postal_address: str | None = Field(default=None, max_length=500)
    language: Language = "ja"
    # One of the workflow's disclosure_methods (disclosure types); never defaulted.
    disclosure_method: str | None = Field(default=None, max_length=64)
    agent: AgentIn | None = None
    # Handler intake only (a public call setting either gets 403): how and when the request
    # reached the company; every clock runs from received_at.
    channel: HandlerChannel | None = None
    received_at: datetime | None = None

    _one_line = field_validator("name", "phone")(_single_line)


class RetypeIn(_In):
    """Move a request not yet closed to another workflow, keeping its reference and arrival."""

    type: str = Field(min_length=1, max_length=64)
    note: str = Field(min_length=1, max_length=10_000)
    expected_version: int | None = Field(default=None, ge=1)


class RequestCreated(BaseModel):
    id: str
    reference: str
    type: str
    state: str
    received_at: datetime
    due_at: datetime


class WithheldPart(_In):
    reason_code: str
    explanation: str


class TransitionIn(_In):
    """A handler's decision. Which fields a trigger needs is defined in workflows/."""

    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={
            "examples": [
                {
                    "trigger": "verify_identity",
                    "expected_version": 1,
                    "method": "id_document_copy",
                    "evidence": "Driving licence copy; name and address match the request.",
                },
                {
                    "trigger": "report_not_held",
                    "expected_version": 2,
                    "explanation": "We hold no personal data about you in that service.",
                },
            ]
        },
    )

    trigger: str = Field(min_length=1, max_length=64)
    expected_version: int | None = Field(default=None, ge=1)
    method: str | None = Field(default=None, max_length=64)
    note: str | None = Field(default=None, max_length=10_000)
    message: str | None = Field(default=None, max_length=10_000)
    summary: str | None = Field(default=None, max_length=20_000)
    withheld: list[WithheldPart] | None = Field(default=None, max_length=50)
    reason_code: str | None = Field(default=None, max_length=64)
    explanation: str | None = Field(default=None, max_length=10_000)
    evidence: str | None = Field(default=None, max_length=2_000)
    authority_document: str | None = Field(default=None, max_length=64)
    agent_method: str | None = Field(default=None, max_length=64)
    method_used: str | None = Field(default=None, max_length=64)
    method_difficulty: str | None = Field(default=None, max_length=10_000)
    measure: str | None = Field(default=None, max_length=10_000)

    def fields(self) -> dict[str, Any]:
        return self.model_dump(exclude={"trigger", "expected_version"}, exclude_none=True)


class EventPublic(BaseModel):
    seq: int
    kind: str
    trigger: str | None
    from_state: str | None
    to_state: str | None
    actor: str
    at: datetime
    detail: dict[str, Any]


class AgentPublic(BaseModel):
    name: str
    email: str
    relation: str


class PaymentIn(_In):
    """A fee payment, recorded by a handler."""

    amount_jpy: int = Field(ge=1, le=10_000_000)
    method: str = Field(min_length=1, max_length=64)
    paid_at: datetime | None = None
    note: str | None = Field(default=None, max_length=2_000)


class PaymentPublic(BaseModel):
    id: int
    amount_jpy: int
    method: str
    paid_at: datetime
    note: str | None
    recorded_by: str
    recorded_at: datetime


class RequestPublic(BaseModel):
    """The whole request, as handlers see it."""

    id: str
    reference: str
    type: str
    state: str
    version: int
    channel: str
    language: str
    name: str
    email: str
    phone: str | None
    postal_address: str | None
    details: str
    disclosure_method: str | None
    agent: AgentPublic | None
    identity_method: str | None
    email_verified_at: datetime | None
    received_at: datetime
    identity_verified_at: datetime | None
    awaiting_requester_at: datetime | None
    closed_at: datetime | None
    due_at: datetime
    art39_date: date | None
    # Past due_at (unless paused), or on or past art39_date whatever a pause or extension says.
    overdue: bool
    identity_evidence: str | None
    authority_document: str | None
    agent_method: str | None
    # The disclosure method used (disclosure_method is the one the requester asked for).
    method_used: str | None
    fee_due_jpy: int
    payments: list[PaymentPublic]
    allowed_triggers: list[str]
    history: list[EventPublic] = []


class RequestSummary(BaseModel):
    id: str
    reference: str
    type: str
    state: str
    version: int
    received_at: datetime
    due_at: datetime
    overdue: bool


class RequestPage(BaseModel):
    items: list[RequestSummary]
    total: int
    limit: int
    offset: int
