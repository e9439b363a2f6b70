"""RFC 9457 problem details for every error the API returns.

Every ``dsrflow.errors.DsrflowError`` maps here once, with its status and problem type; routes
and services never build error responses themselves.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException

from dsrflow.errors import DsrflowError

PROBLEM_JSON = "application/problem+json"
# What every handler route may answer besides its own success (for the OpenAPI document).
HANDLER_PROBLEMS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing or bad token (problem details)"},
    403: {"description": "The handler's role lacks the right (problem details)"},
    404: {"description": "Unknown id (problem details)"},
}


def problem_response(
    status: int,
    detail: str,
    *,
    title: str | None = None,
    type: str = "about:blank",
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    **extensions: Any,
) -> JSONResponse:
    body = {
        "type": type,
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        **({"instance": instance} if instance else {}),
        **extensions,
    }
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _field_errors(exc: RequestValidationError) -> dict[str, str]:
    errors: dict[str, str] = {}
    for error in exc.errors():
        loc = [str(p) for p in error.get("loc", ()) if p not in ("body", "query", "path")]
        errors[".".join(loc) or "body"] = error.get("msg", "invalid")
    return errors


def install(app: FastAPI) -> None:
    """Map every exception the API can raise to a problem document (never a stack trace)."""

    @app.exception_handler(DsrflowError)
    async def _domain_error(request: Request, exc: DsrflowError) -> JSONResponse:
        return problem_response(
            exc.status,
            exc.detail,
            title=exc.title,
            type=exc.type,
            instance=request.url.path,
            headers=exc.headers,
            **exc.extensions,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem_response(
            exc.status_code,
            str(exc.detail),
            instance=request.url.path,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _field_errors(exc)
        return problem_response(
            422,
            "The request body is invalid: " + "; ".join(f"{k}: {v}" for k, v in errors.items()),
            instance=request.url.path,
            errors=errors,
        )

    @app.exception_handler(OverflowError)
    @app.exception_handler(DataError)
    async def _out_of_range(request: Request, exc: Exception) -> JSONResponse:
        # A number or date the database cannot hold (2**63, the year 1 moved to UTC): the
        # client's input, so a 422 rather than a 500. Nothing was committed.
        return problem_response(
            422, "A value is out of the range this service can store.", instance=request.url.path
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Logged without the request body: it may hold personal data.
        import logging

        route = request.scope.get("route")
        where = getattr(route, "path", "?")  # the route's template: no secret from the URL
        logging.getLogger("dsrflow.api").exception("unexpected error on %s", where)
        # Connection: close, because the server drops the connection after an unhandled error;
        # told so, the client opens a fresh one for its next call instead of failing on it.
        return problem_response(
            500, "Internal error; it has been logged.", headers={"Connection": "close"}
        )
