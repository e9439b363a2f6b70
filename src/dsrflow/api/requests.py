"""Request routes: public intake, and the handler queue and decisions."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from dsrflow.api.deps import (
    CurrentRequest,
    Decider,
    Offset,
    OptionalHandler,
    Reader,
    ReadSessionDep,
    RuntimeDep,
    SessionDep,
    rate_limited,
)
from dsrflow.api.problems import HANDLER_PROBLEMS as PROBLEMS
from dsrflow.auth.tokens import may
from dsrflow.db import utcnow
from dsrflow.deadlines import service as deadlines
from dsrflow.deadlines.schemas import DeadlineExtensionIn
from dsrflow.errors import Forbidden, Invalid
from dsrflow.requests import repository, service
from dsrflow.requests.schemas import (
    PaymentIn,
    RequestCreate,
    RequestCreated,
    RequestPage,
    RequestPublic,
    RequestSummary,
    RetypeIn,
    TransitionIn,
)
from dsrflow.runtime import Runtime

router = APIRouter(prefix="/api/v1/requests", tags=["requests"])
LIST_FILTERS = frozenset({"state", "type", "overdue", "due_before", "limit", "offset"})


def _values(name: str, given: list[str] | None, known: list[str]) -> list[str] | None:
    """The values of a repeatable, comma-separated filter, each one known, or a 422."""
    if not given:
        return None
    values = [v.strip() for item in given for v in item.split(",") if v.strip()]
    wrong = [v for v in values if v not in known]
    if wrong:
        raise Invalid({name: f"unknown value {', '.join(map(repr, wrong))}; one of {known}"})
    return values or None


def _states(rt: Runtime, given: list[str] | None) -> list[str] | None:
    groups = {"open": rt.open_states, "closed": rt.closed_states}
    values = _values("state", given, [*groups, *rt.open_states, *rt.closed_states])
    if values is None:
        return None
    return list(dict.fromkeys(s for v in values for s in groups.get(v, [v])))


def _due_before(rt: Runtime, value: str | None) -> datetime | None:
    """A plain date means "due by the end of that day" in the company's time zone."""
    if value is None or not value.strip():
        return None
    # An unencoded "+09:00" in a query string arrives as " 09:00".
    text = value.strip().replace(" ", "+")
    example = "2026-12-16 or 2026-12-16T09:00:00+09:00"
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            if not 1900 <= day.year <= 9000:
                raise Invalid({"due_before": "must be a date between the years 1900 and 9000"})
            return rt.calendar.end_of(day) + timedelta(seconds=1)
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise Invalid({"due_before": f"not a date or date-time (e.g. {example})"}) from None
    if moment.tzinfo is None:
        raise Invalid(
            {"due_before": f"a date-time must carry a time zone (e.g. {example})"},
        )
    if not 1900 <= moment.year <= 9000:  # a year-1 date overflows the database's type
        raise Invalid({"due_before": "must be a date between the years 1900 and 9000"})
    return moment


@router.post(
    "",
    status_code=201,
    response_model=RequestCreated,
    dependencies=[Depends(rate_limited("intake"))],
    responses={
        401: {"description": "A token was sent but is unknown or revoked"},
        403: {"description": "A public call set channel or received_at (handlers only)"},
        422: {"description": "Invalid body"},
        429: {"description": "Rate limited"},
    },
    summary="Submit a request (public, no auth)",
)
async def submit_request(
    data: RequestCreate,
    rt: RuntimeDep,
    session: SessionDep,
    response: Response,
    handler: OptionalHandler,
) -> RequestCreated:
    """Public intake; with a handler token also post, phone and counter intake, with the time
    the request truly arrived (``received_at``) from which every clock runs.

    Like ``fire_transition``, a coroutine that sends only its database work to the thread
    pool: a plain ``def`` route costs a second trip there, to check its response model."""
    channel = "api"
    received_at = None
    if data.channel is not None or data.received_at is not None:
        if handler is None or not may(handler.role, "transition"):
            raise Forbidden("Only a handler may set channel or received_at.")
        channel = data.channel or "api"
        received_at = data.received_at
        if received_at is not None:
            if received_at.tzinfo is None:
                raise Invalid(
                    {"received_at": "must carry a time zone (e.g. 2026-12-01T10:00:00+09:00)"}
                )
            if received_at > utcnow():
                raise Invalid({"received_at": "must not be in the future"})
    created = await run_in_threadpool(_submit, rt, session, data, channel, received_at)
    response.headers["Location"] = f"/api/v1/requests/{created.id}"
    return created


def _submit(
    rt: Runtime,
    session: Session,
    data: RequestCreate,
    channel: str,
    received_at: datetime | None,
) -> RequestCreated:
    submitted = service.submit(rt, session, data, channel=channel, received_at=received_at)
    return RequestCreated.model_validate(submitted.request, from_attributes=True)


@router.get("", response_model=RequestPage, responses=PROBLEMS, summary="The queue, newest first")
def list_requests(
    request: Request,
    rt: RuntimeDep,
    session: ReadSessionDep,
    _: Reader,
    state: Annotated[
        list[str] | None,
        Query(
            description="A state, `open` (every non-terminal state) or `closed`; repeat or "
            "separate by commas for several."
        ),
    ] = None,
    type: Annotated[
        list[str] | None, Query(description="A request type; repeat or separate by commas.")
    ] = None,
    overdue: bool = False,
    due_before: Annotated[
        str | None,
        Query(
            description="A date (`2026-12-16`: due by the end of that day, Japan time) or a "
            "date-time with a zone (`2026-12-16T09:00:00+09:00`)."
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Offset = 0,
) -> RequestPage:
    """Filters that name nothing known are a 422 (a typo never reads as an empty queue)."""
    unknown = sorted(set(request.query_params) - LIST_FILTERS)
    if unknown:
        raise Invalid({name: f"unknown filter; one of {sorted(LIST_FILTERS)}" for name in unknown})
    states = _states(rt, state)
    types = _values("type", type, sorted(rt.definitions.workflows))
    now = utcnow()
    rows, total = repository.search(
        session,
        state=states,
        request_type=types,
        overdue_as_of=now if overdue else None,
        due_before=_due_before(rt, due_before),
        closed_states=rt.closed_states,
        paused_types=rt.paused_types,
        today=now.astimezone(rt.settings.tz).date(),
        limit=limit,
        offset=offset,
    )
    items = [
        RequestSummary(
            id=r.id,
            reference=r.reference,
            type=r.type,
            state=r.state,
            version=r.version,
            received_at=r.received_at,
            due_at=r.due_at,
            overdue=rt.is_overdue(r.type, r.state, r.due_at, now, r.art39_date),
        )
        for r in rows
    ]
    return RequestPage(items=items, total=total, limit=limit, offset=offset)


@router.get(
    "/{request_id}",
    response_model=RequestPublic,
    responses=PROBLEMS,
    summary="One request with its history",
)
def get_request(
    request: CurrentRequest, rt: RuntimeDep, session: ReadSessionDep, _: Reader
) -> RequestPublic:
    return service.describe(rt, session, request, history=True)


@router.post(
    "/{request_id}/transitions",
    response_model=RequestPublic,
    responses={
        **PROBLEMS,
        409: {"description": "Trigger not allowed now, or stale expected_version"},
        422: {"description": "Incomplete body: missing or unknown reason, empty explanation…"},
    },
    summary="Advance a request (verify, request info, fulfil, refuse, withdraw…)",
)
async def fire_transition(
    request_id: str,
    body: TransitionIn,
    rt: RuntimeDep,
    session: SessionDep,
    handler: Decider,
) -> RequestPublic:
    """The request is read once, under its lock (not first by ``CurrentRequest``): a decision is
    the desk's busiest write. Only the decision itself goes to the thread pool."""
    return await run_in_threadpool(
        service.decide, rt, session, request_id, body, actor=f"handler:{handler.id}"
    )


@router.post(
    "/{request_id}/extensions",
    response_model=RequestPublic,
    responses={
        **PROBLEMS,
        409: {"description": "The request is closed, or expected_version is stale"},
        422: {"description": "The workflow allows no (or no such) extension, or no reason"},
    },
    summary="Extend the internal target date, with a reason (the Art. 39 date never moves)",
)
def extend_deadline(
    request: CurrentRequest,
    body: DeadlineExtensionIn,
    rt: RuntimeDep,
    session: SessionDep,
    handler: Decider,
) -> RequestPublic:
    request = deadlines.extend(
        rt,
        session,
        request.id,
        days=body.days,
        reason=body.reason,
        actor=f"handler:{handler.id}",
        expected_version=body.expected_version,
        confirm_past_art39=body.confirm_past_art39,
    )
    return service.describe(rt, session, request, history=True)


@router.post(
    "/{request_id}/payments",
    response_model=RequestPublic,
    responses={
        **PROBLEMS,
        409: {"description": "The request is closed"},
        422: {"description": "The workflow has no fee, or a bad amount or date"},
    },
    summary="Record a fee payment (audited)",
)
def record_payment(
    request: CurrentRequest,
    body: PaymentIn,
    rt: RuntimeDep,
    session: SessionDep,
    handler: Decider,
) -> RequestPublic:
    request = service.record_payment(rt, session, request.id, body, actor=f"handler:{handler.id}")
    return service.describe(rt, session, request, history=True)


@router.post(
    "/{request_id}/retype",
    response_model=RequestPublic,
    responses={
        **PROBLEMS,
        409: {"description": "The request is closed, or expected_version is stale"},
        422: {"description": "Unknown or same type, or no note"},
    },
    summary="Move a request to another type, keeping its reference, arrival and history",
)
def retype_request(
    request: CurrentRequest,
    body: RetypeIn,
    rt: RuntimeDep,
    session: SessionDep,
    handler: Decider,
) -> RequestPublic:
    request = service.retype(rt, session, request.id, body, actor=f"handler:{handler.id}")
    return service.describe(rt, session, request, history=True)
