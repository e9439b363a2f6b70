"""Request routes: public intake, and the handler queue and decisions."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

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

router = APIRouter(prefix="/api/v1/requests", tags=["requests"])


@router.post(
    "",
    status_code=201,
    response_model=RequestCreated,
    dependencies=[Depends(rate_limited("intake"))],
    responses={422: {"description": "Invalid body"}, 429: {"description": "Rate limited"}},
    summary="Submit a request (public, no auth)",
)
def submit_request(
    data: RequestCreate,
    rt: RuntimeDep,
    session: SessionDep,
    response: Response,
    handler: OptionalHandler,
) -> RequestCreated:
    """Public intake; with a handler token also post, phone and counter intake, with the time
    the request truly arrived (``received_at``) from which every clock runs."""
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
    submitted = service.submit(rt, session, data, channel=channel, received_at=received_at)
    response.headers["Location"] = f"/api/v1/requests/{submitted.request.id}"
    return RequestCreated.model_validate(submitted.request, from_attributes=True)


@router.get("", response_model=RequestPage, responses=PROBLEMS, summary="The queue, newest first")
def list_requests(
    rt: RuntimeDep,
    session: ReadSessionDep,
    _: Reader,
    state: str | None = None,
    type: str | None = None,
    overdue: bool = False,
    due_before: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Offset = 0,
) -> RequestPage:
    if due_before is not None and due_before.tzinfo is None:
        raise Invalid(
            {"due_before": "must carry a time zone (e.g. 2026-12-01T00:00:00+09:00)"},
            detail="due_before must carry a time zone (e.g. 2026-12-01T00:00:00+09:00).",
        )
    if due_before is not None and not 1900 <= due_before.year <= 9000:
        raise Invalid({"due_before": "must be a date between the years 1900 and 9000"})
    now = utcnow()
    rows, total = repository.search(
        session,
        state=state,
        request_type=type,
        overdue_as_of=now if overdue else None,
        due_before=due_before,
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
def fire_transition(
    request_id: str, body: TransitionIn, rt: RuntimeDep, session: SessionDep, handler: Decider
) -> RequestPublic:
    request = service.transition(rt, session, request_id, body, actor=f"handler:{handler.id}")
    return service.describe(rt, session, request, history=True)


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
    request_id: str,
    body: DeadlineExtensionIn,
    rt: RuntimeDep,
    session: SessionDep,
    handler: Decider,
) -> RequestPublic:
    request = deadlines.extend(
        rt,
        session,
        request_id,
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
    request_id: str, body: PaymentIn, rt: RuntimeDep, session: SessionDep, handler: Decider
) -> RequestPublic:
    request = service.record_payment(rt, session, request_id, body, actor=f"handler:{handler.id}")
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
    request_id: str, body: RetypeIn, rt: RuntimeDep, session: SessionDep, handler: Decider
) -> RequestPublic:
    request = service.retype(rt, session, request_id, body, actor=f"handler:{handler.id}")
    return service.describe(rt, session, request, history=True)
