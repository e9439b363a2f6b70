"""Report figures, the CSV export and the handling record, computed from the database.

Periods are Japan-time dates of arrival (the company's time zone), both ends included. Days are
counted as calendar days between local dates: a request answered on the day it arrived took 0.
"""

from __future__ import annotations

import csv
import io
import logging
import statistics
from collections import defaultdict
from collections.abc import Iterable
from datetime import date, datetime, time, timedelta

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from dsrflow.audit.chain import verify_chains
from dsrflow.audit.models import Event
from dsrflow.db import utcnow
from dsrflow.errors import Invalid
from dsrflow.reports import repository
from dsrflow.reports.schemas import (
    ALL_TYPES,
    CSV_COLUMNS,
    AuditCheck,
    HandlingRecord,
    HandlingRecordEntry,
    MonthTypeFigures,
    RequestFigures,
    RequestRow,
)
from dsrflow.requests.models import Request
from dsrflow.runtime import Runtime

log = logging.getLogger(__name__)
# A period longer than this is refused (a report is built in memory).
MAX_PERIOD_DAYS = 3 * 366


def _bounds(rt: Runtime, start: date, end: date) -> tuple[datetime, datetime]:
    if end < start:
        raise Invalid({"to": "must not be before 'from'"})
    if (end - start).days > MAX_PERIOD_DAYS:
        raise Invalid({"to": f"the period may span at most {MAX_PERIOD_DAYS} days"})
    tz = rt.settings.tz
    return datetime.combine(start, time(0), tz), datetime.combine(end + timedelta(1), time(0), tz)


def _days(rt: Runtime, start: datetime, end: datetime | None) -> int | None:
    if end is None:
        return None
    return (rt.calendar.local_date(end) - rt.calendar.local_date(start)).days


def _closing_events(events: Iterable[Event], requests: dict[str, Request]) -> dict[str, Event]:
    """Request id -> the transition that closed it (into the state it is in now)."""
    closing: dict[str, Event] = {}
    for event in events:
        request = requests.get(event.request_id)
        if request is not None and event.to_state == request.state:
            closing[event.request_id] = event  # the last such event wins
    return closing


def _reason_codes(event: Event | None) -> list[str]:
    """The refusal's reason, or the reasons of the parts withheld from a partial outcome."""
    if event is None:
        return []
    detail = event.detail or {}
    if detail.get("reason_code"):
        return [str(detail["reason_code"])]
    return [str(p["reason_code"]) for p in detail.get("withheld") or [] if p.get("reason_code")]


def _is_closed(rt: Runtime, request: Request) -> bool:
    return request.state in rt.closed_states


def _went_overdue(rt: Runtime, request: Request, now: datetime) -> bool:
    """Past the due date when closed (or now, a paused clock excepted), or not closed before
    the Art. 39 date whatever any pause or extension says."""
    if _art39_passed(rt, request, now):
        return True
    if _is_closed(rt, request):
        return request.closed_at is not None and request.closed_at > request.due_at
    return rt.is_overdue(request.type, request.state, request.due_at, now, request.art39_date)


def _art39_passed(rt: Runtime, request: Request, now: datetime) -> bool:
    """Not closed before the Art. 39 date (closed on or after it, or still open on it)."""
    if request.art39_date is None:
        return False
    if _is_closed(rt, request):
        closed = request.closed_at or now
        return rt.calendar.local_date(closed) >= request.art39_date
    return rt.calendar.local_date(now) >= request.art39_date


def _figures(
    rt: Runtime,
    month: str,
    request_type: str,
    requests: list[Request],
    closing: dict[str, Event],
    now: datetime,
) -> MonthTypeFigures:
    closed = [r for r in requests if _is_closed(rt, r)]
    days = [d for r in closed if (d := _days(rt, r.received_at, r.closed_at)) is not None]
    outcomes: dict[str, int] = defaultdict(int)
    refusals: dict[str, int] = defaultdict(int)
    for r in closed:
        outcomes[r.state] += 1
        if r.state == "refused":
            for code in _reason_codes(closing.get(r.id)):
                refusals[code] += 1
    applicable = [r for r in requests if r.art39_date is not None]
    breaches = [r for r in applicable if _art39_passed(rt, r, now)]
    decided = [r for r in applicable if _is_closed(rt, r) or _art39_passed(rt, r, now)]
    before = len(decided) - len(breaches)
    return MonthTypeFigures(
        month=month,
        type=request_type,
        count=len(requests),
        closed=len(closed),
        median_days_to_close=float(statistics.median(days)) if days else None,
        overdue=sum(1 for r in requests if _went_overdue(rt, r, now)),
        art39_breaches=len(breaches),
        outcomes=dict(sorted(outcomes.items())),
        refusals_by_reason=dict(sorted(refusals.items())),
        art39_decided=len(decided),
        closed_before_art39=before,
        share_closed_before_art39=before / len(decided) if decided else None,
    )


def monthly_figures(
    rt: Runtime, session: Session, start: date, end: date, *, now: datetime | None = None
) -> RequestFigures:
    """Per month of arrival and type: the count, the median days to close, how many went
    overdue, the outcomes, the refusals by reason and the share closed before the Art. 39
    date, for the requests that arrived from ``start`` to ``end`` (local dates, inclusive)."""
    now = now or utcnow()
    lower, upper = _bounds(rt, start, end)
    requests = repository.arrived_between(session, lower, upper)
    by_id = {r.id: r for r in requests}
    closing = _closing_events(repository.transitions_of_arrivals(session, lower, upper), by_id)
    session.rollback()
    groups: dict[tuple[str, str], list[Request]] = defaultdict(list)
    for r in requests:
        month = rt.calendar.local_date(r.received_at).strftime("%Y-%m")
        groups[(month, r.type)].append(r)
        groups[(month, ALL_TYPES)].append(r)
    figures = [
        _figures(rt, month, request_type, rows, closing, now)
        for (month, request_type), rows in sorted(groups.items())
    ]
    return RequestFigures(
        start=start,
        end=end,
        generated_at=now,
        rows=[f for f in figures if f.type != ALL_TYPES],
        totals=[f for f in figures if f.type == ALL_TYPES],
    )


def request_rows(rt: Runtime, session: Session, start: date, end: date) -> list[RequestRow]:
    """One row per request that arrived from ``start`` to ``end`` (local dates, inclusive),
    oldest first: the contract's CSV export."""
    lower, upper = _bounds(rt, start, end)
    requests = repository.arrived_between(session, lower, upper)
    by_id = {r.id: r for r in requests}
    closing = _closing_events(repository.transitions_of_arrivals(session, lower, upper), by_id)
    acknowledged = repository.acknowledgments_sent(session, lower, upper)
    session.rollback()
    rows = []
    for r in requests:
        closed = _is_closed(rt, r)
        codes = _reason_codes(closing.get(r.id)) if closed else []
        rows.append(
            RequestRow(
                reference=r.reference,
                type=r.type,
                channel=r.channel,
                received_at=r.received_at,
                acknowledged_at=acknowledged.get(r.id),
                identity_method=r.identity_method,
                outcome=r.state if closed else None,
                reason_code=";".join(codes) or None,
                closed_at=r.closed_at if closed else None,
                days_taken=_days(rt, r.received_at, r.closed_at) if closed else None,
            )
        )
    return rows


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    text = str(value)
    # A cell a spreadsheet would run as a formula is quoted (CSV injection).
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def requests_csv(rows: Iterable[RequestRow]) -> str:
    """The CSV text of ``rows``: a header, then one line each (times in UTC, ISO 8601)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        values = row.model_dump()
        writer.writerow([_cell(values[c]) for c in CSV_COLUMNS])
    return buffer.getvalue()


def record_job_run(
    rt: Runtime, job: str, started_at: datetime, finished_at: datetime, errors: int
) -> None:
    """Record one run of a scheduler job (for the metrics), and commit. Never raises: the
    figures are worth less than the job."""
    for _attempt in range(2):  # a second process may create the row at the same moment
        with Session(rt.db) as session:
            try:
                repository.record_job_run(session, job, started_at, finished_at, errors)
                session.commit()
                return
            except IntegrityError:
                session.rollback()
            except Exception:
                session.rollback()
                log.exception("could not record the run of job %s", job)
                return


def audit_check(session: Session) -> AuditCheck:
    """What ``dsrflow audit verify`` says now."""
    checked, breaks = verify_chains(session)
    session.rollback()
    return AuditCheck(
        events_checked=checked,
        breaks=[f"{b.request_id} #{b.seq}: {b.problem}" for b in breaks],
    )


def handling_record(
    rt: Runtime, session: Session, start: date, end: date, *, language: str = "ja"
) -> HandlingRecord:
    """The handling record of requests for disclosure etc. (JIS Q 15001)
    for the requests that arrived from ``start`` to ``end``, with the audit chains' check."""
    now = utcnow()
    lower, upper = _bounds(rt, start, end)
    requests = repository.arrived_between(session, lower, upper)
    by_id = {r.id: r for r in requests}
    events = repository.transitions_of_arrivals(session, lower, upper)
    closing = _closing_events(events, by_id)
    deciders: dict[str, list[str]] = defaultdict(list)
    for event in events:
        if event.actor not in deciders[event.request_id]:
            deciders[event.request_id].append(event.actor)
    heads = repository.chain_heads(session, list(by_id))
    session.rollback()
    entries = []
    for r in requests:
        wf = rt.definitions.workflow(r.type)
        closed = _is_closed(rt, r)
        codes = _reason_codes(closing.get(r.id)) if closed else []
        reason = rt.definitions.reasons.get(codes[0]) if codes else None
        head = heads.get(r.id)
        entries.append(
            HandlingRecordEntry(
                reference=r.reference,
                type=r.type,
                type_title=wf.title.for_language(language),
                channel=r.channel,
                received_at=r.received_at,
                requester_name=r.requester_name,
                agent_name=r.agent_name,
                agent_relation=r.agent_relation,
                identity_method=r.identity_method,
                identity_verified_at=r.identity_verified_at,
                state=r.state,
                state_label=wf.states[r.state].label.for_language(language),
                reason_code=";".join(codes) or None,
                reason_citation=reason.citation.for_language(language) if reason else None,
                closed_at=r.closed_at if closed else None,
                days_taken=_days(rt, r.received_at, r.closed_at) if closed else None,
                due_at=r.due_at,
                art39_date=r.art39_date,
                handlers=deciders.get(r.id, []),
                events=head.seq if head else 0,
                chain_head=head.hash if head else "",
            )
        )
    return HandlingRecord(
        start=start, end=end, generated_at=now, entries=entries, audit=audit_check(session)
    )
