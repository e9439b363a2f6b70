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
from dsrflow.runtime import Runtime


def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def get_session(rt: RuntimeDep) -> Iterator[Session]:
    with Session(rt.db, expire_on_commit=False) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]

_bearer = HTTPBearer(auto_error=False, description="A handler token from `dsrflow handlers add`.")


def current_handler(
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Handler:
    challenge = {"WWW-Authenticate": 'Bearer realm="dsrflow"'}
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Problem(
            401, "A handler token is required (Authorization: Bearer ...).", headers=challenge
        )
    handler = handler_by_token(session, credentials.credentials)
    session.rollback()  # end the read transaction (SQLite holds its lock until then)
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
