"""Dependencies: the runtime, a database session, the current handler, rate limits."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel import Session

from dsrflow.api.problems import Problem
from dsrflow.auth.models import Handler
from dsrflow.auth.repository import handler_by_token
from dsrflow.auth.tokens import may
from dsrflow.db import read_session, write_session
from dsrflow.runtime import Runtime


def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def get_session(rt: RuntimeDep) -> Iterator[Session]:
    """For routes that write: the service commits once; what the route reads afterwards (its
    response) runs in a read transaction that holds no lock."""
    with write_session(rt.db, reads_after_commit=True) as session:
        yield session


def get_read_session(rt: RuntimeDep) -> Iterator[Session]:
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
        raise Problem(
            401, "A handler token is required (Authorization: Bearer ...).", headers=challenge
        )
    # Its own short read transaction, ended before the route runs.
    with read_session(rt.db) as session:
        handler = handler_by_token(session, credentials.credentials)
    if handler is None:
        raise Problem(401, "The token is unknown or revoked.", headers=challenge)
    return handler


CurrentHandler = Annotated[Handler, Depends(current_handler)]


def permission(name: str) -> Callable[[Handler], Handler]:
    def check(handler: CurrentHandler) -> Handler:
        if not may(handler.role, name):
            raise Problem(403, f"The role '{handler.role}' may not {name}.")
        return handler

    return check


Reader = Annotated[Handler, Depends(permission("read"))]
Decider = Annotated[Handler, Depends(permission("transition"))]


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def rate_limited(bucket: str) -> Callable[[Request], None]:
    def check(request: Request) -> None:
        limiter = request.app.state.rate_limiter
        wait = limiter.retry_after(bucket, client_address(request))
        if wait is not None:
            raise Problem(
                429, "Too many requests; try again later.", headers={"Retry-After": str(wait)}
            )

    return check
