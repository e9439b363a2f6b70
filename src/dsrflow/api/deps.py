"""Dependencies: the runtime, a database session, the current handler, rate limits, and the
load-or-404 of the things a path names (``CurrentRequest``, ``CurrentMessage``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel import Session

from dsrflow.auth.models import Handler
from dsrflow.auth.repository import handler_by_token
from dsrflow.auth.tokens import may
from dsrflow.db import lookup_session, read_session, write_session
from dsrflow.errors import Forbidden, NotFound, TooManyRequests, Unauthorized
from dsrflow.inbound_mail import repository as inbound_repository
from dsrflow.inbound_mail.models import InboundMessage
from dsrflow.requests import repository as requests_repository
from dsrflow.requests.models import Request as DsrRequest
from dsrflow.runtime import Runtime

# Dependencies that do no I/O are ``async``: FastAPI runs a plain ``def`` dependency in the
# thread pool, and each such hop costs more than the dependency itself.


async def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_session(rt: RuntimeDep) -> AsyncIterator[Session]:
    """For routes that write: the service commits once; what the route reads afterwards (its
    response) runs in a read transaction that holds no lock. Opening a session does no I/O, and
    closing one after the commit ends at most a read transaction, so both stay in the event loop
    instead of costing two trips to the thread pool per call."""
    with write_session(rt.db, reads_after_commit=True) as session:
        yield session


async def get_read_session(rt: RuntimeDep) -> AsyncIterator[Session]:
    """For routes that only read: never takes SQLite's write lock."""
    with read_session(rt.db) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]
ReadSessionDep = Annotated[Session, Depends(get_read_session)]

_bearer = HTTPBearer(auto_error=False, description="A handler token from `dsrflow handlers add`.")


def current_handler(
    rt: RuntimeDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Handler:
    challenge = {"WWW-Authenticate": 'Bearer realm="dsrflow"'}
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized(
            "A handler token is required (Authorization: Bearer ...).", headers=challenge
        )
    # Its own one-statement read, ended before the route runs.
    with lookup_session(rt.db) as session:
        handler = handler_by_token(session, credentials.credentials)
    if handler is None:
        raise Unauthorized("The token is unknown or revoked.", headers=challenge)
    return handler


CurrentHandler = Annotated[Handler, Depends(current_handler)]


async def optional_handler(
    rt: RuntimeDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Handler | None:
    """The handler behind a bearer token, or None for a public call (a bad token is 401)."""
    if credentials is None:
        return None
    return await run_in_threadpool(current_handler, rt, credentials)


OptionalHandler = Annotated[Handler | None, Depends(optional_handler)]


def permission(name: str) -> Callable[[Handler], Awaitable[Handler]]:
    async def check(handler: CurrentHandler) -> Handler:
        if not may(handler.role, name):
            raise Forbidden(f"The role '{handler.role}' may not {name}.")
        return handler

    return check


Reader = Annotated[Handler, Depends(permission("read"))]
Decider = Annotated[Handler, Depends(permission("transition"))]


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def rate_limited(bucket: str) -> Callable[[Request], Awaitable[None]]:
    async def check(request: Request) -> None:
        limiter = request.app.state.rate_limiter
        wait = limiter.retry_after(bucket, client_address(request))
        if wait is not None:
            raise TooManyRequests(wait)

    return check


def current_request(request_id: str, session: ReadSessionDep, _: CurrentHandler) -> DsrRequest:
    """The request the path names, by id or by reference (``DSR-2026-000001``), or a 404 (only
    to a handler: nobody learns what exists)."""
    request = requests_repository.get_by_id_or_reference(session, request_id)
    if request is None:
        raise NotFound("No such request.")
    return request


CurrentRequest = Annotated[DsrRequest, Depends(current_request)]


# Ids and offsets the databases can hold (PostgreSQL integer ids; SQLite refuses 2**63): a
# larger number is a 422, never a database error.
RowId = Annotated[int, Path(ge=1, le=2**31 - 1)]
Offset = Annotated[int, Query(ge=0, le=2**31 - 1)]


def current_message(
    inbound_id: RowId, session: ReadSessionDep, _: CurrentHandler
) -> InboundMessage:
    """The inbound message the path names, or a 404 (only to a handler)."""
    row = inbound_repository.get(session, inbound_id)
    if row is None:
        raise NotFound("No such message.")
    return row


CurrentMessage = Annotated[InboundMessage, Depends(current_message)]
