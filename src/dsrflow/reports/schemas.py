"""Report shapes: typed results the API, the console and the CLI render."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel

ALL_TYPES = "*"


class MonthTypeFigures(BaseModel):
    """The requests of one type (or of all, ``type == "*"``) that arrived in one month."""

    month: str  # "2026-04", the month of arrival in the company's time zone
    type: str
    count: int
    closed: int
    # Calendar days from arrival to closing, counted on local dates; None when none closed.
    median_days_to_close: float | None
    # Went past the internal due date: closed after it, or open and past it now.
    overdue: int
    # Where Art. 39 applies: not closed before the Art. 39 date (closed on or after it, or
    # open on or after it now).
    art39_breaches: int
    outcomes: dict[str, int]  # terminal state -> count
    refusals_by_reason: dict[str, int]  # reason code -> count
    # Of the requests where Art. 39 applies and whose fate is known (closed, or open past the
    # date): how many were closed before the date.
    art39_decided: int
    closed_before_art39: int
    share_closed_before_art39: float | None


class RequestFigures(BaseModel):
    start: date  # first day of arrival counted (local)
    end: date  # last day of arrival counted (local, inclusive)
    generated_at: datetime
    rows: list[MonthTypeFigures]  # one per month and type with at least one arrival
    totals: list[MonthTypeFigures]  # one per month, all types together (type "*")


class RequestRow(BaseModel):
    """One line of the CSV export (the contract's columns, in order)."""

    reference: str
    type: str
    channel: str
    received_at: datetime
    acknowledged_at: datetime | None  # when the acknowledgment letter was sent
    identity_method: str | None
    outcome: str | None  # the terminal state; None while open
    reason_code: str | None  # the refusal's reason, or the withheld parts' reasons (";")
    closed_at: datetime | None
    days_taken: int | None  # calendar days from arrival to closing (local dates)


CSV_COLUMNS = list(RequestRow.model_fields)


class HandlingRecordEntry(BaseModel):
    """One request as the handling record (JIS Q 15001) lists it."""

    reference: str
    type: str
    type_title: str
    channel: str
    received_at: datetime
    requester_name: str
    agent_name: str | None
    agent_relation: str | None
    identity_method: str | None
    identity_verified_at: datetime | None
    state: str
    state_label: str
    reason_code: str | None
    reason_citation: str | None
    closed_at: datetime | None
    days_taken: int | None
    due_at: datetime
    art39_date: date | None
    handlers: list[str]  # who decided (actors of the transitions)
    events: int
    chain_head: str  # the hash of the request's last audit event


class AuditCheck(BaseModel):
    """The result of ``dsrflow audit verify`` at the time of the export."""

    events_checked: int
    breaks: list[str]

    @property
    def ok(self) -> bool:
        return not self.breaks


class HandlingRecord(BaseModel):
    start: date
    end: date
    generated_at: datetime
    entries: list[HandlingRecordEntry]
    audit: AuditCheck
