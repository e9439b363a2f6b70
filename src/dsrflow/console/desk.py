"""The console's plumbing: who is signed in, CSRF on every form, rendering, HTML errors.

A route of the console router never answers with JSON: a missing session is a 303 to the
login page, a bad CSRF token or a role without the right is a 403 page, an unknown id a 404
page. All text comes from ``messages/{ja,en}.yaml``.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from starlette.responses import Response

from dsrflow.api.deps import RuntimeDep, SessionDep
from dsrflow.auth.models import Handler
from dsrflow.auth.repository import handler_by_session
from dsrflow.auth.tokens import may, token_digest
from dsrflow.db import utcnow
from dsrflow.errors import DsrflowError, Forbidden, NotFound
from dsrflow.runtime import Runtime
from dsrflow.web.csrf import FIELD as CSRF_FIELD
from dsrflow.web.csrf import Csrf
from dsrflow.yamlio import read_yaml

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=str(HERE / "templates"))
COOKIE = "dsrflow_console"
LANGUAGES = ("ja", "en")
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    # Not no-referrer: under it the browser sends "Origin: null" with every form post, and the
    # origin check could not tell the console's own forms from another site's.
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    # No script at all: plain forms. Styles are inline in the base template.
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
}


@lru_cache
def messages(language: str) -> dict[str, Any]:
    catalog: dict[str, Any] = read_yaml(HERE / "messages" / f"{language}.yaml")
    return catalog


def language(request: Request) -> str:
    lang = request.query_params.get("lang", "ja")
    return lang if lang in LANGUAGES else "ja"


def url(lang: str, path: str, **params: Any) -> str:
    """A console URL that keeps the language (Japanese needs no parameter)."""
    query = {k: v for k, v in params.items() if v not in (None, "", False)}
    if lang != "ja":
        query["lang"] = lang
    return f"{path}?{urlencode(query)}" if query else path


class SignInRequired(Exception):
    """No live session: the page answers 303 to the login page."""


class CsrfRejected(Forbidden):
    """A form post without a valid csrf_token (or from another site)."""


def csrf(rt: Runtime) -> Csrf:
    return Csrf(rt.secret_key, rt.settings.base_url)


@dataclass
class Desk:
    """The signed-in handler, and what every page of theirs needs."""

    handler: Handler
    session_id: str
    lang: str
    csrf_token: str

    @property
    def may_decide(self) -> bool:
        return may(self.handler.role, "transition")

    def require(self, permission: str) -> None:
        if not may(self.handler.role, permission):
            raise Forbidden(f"The role '{self.handler.role}' may not {permission}.")

    @property
    def actor(self) -> str:
        return f"handler:{self.handler.id}"


def signed_in(request: Request, rt: RuntimeDep, session: SessionDep) -> Desk:
    session_id = request.cookies.get(COOKIE, "")
    handler = (
        handler_by_session(session, token_digest(session_id), utcnow()) if session_id else None
    )
    session.rollback()  # end the read transaction (SQLite holds its lock until then)
    if handler is None:
        raise SignInRequired
    if not may(handler.role, "read"):
        raise Forbidden(f"The role '{handler.role}' may not read.")
    return Desk(
        handler=handler,
        session_id=session_id,
        lang=language(request),
        csrf_token=csrf(rt).token_for(session_id),
    )


DeskDep = Annotated[Desk, Depends(signed_in)]


async def posted_form(request: Request, rt: RuntimeDep, desk: DeskDep) -> dict[str, Any]:
    """The fields of a signed-in form post, once its CSRF token and origin are checked.
    Repeated names (checkboxes) become lists."""
    form = await request.form()
    if not csrf(rt).accepts(request, desk.session_id, str(form.get(CSRF_FIELD) or "")):
        raise CsrfRejected("The form's csrf_token is missing or not valid.")
    fields: dict[str, Any] = {}
    for key in form:
        values = [v for v in form.getlist(key) if isinstance(v, str)]
        fields[key] = values if len(values) > 1 else (values[0] if values else "")
    fields.pop(CSRF_FIELD, None)
    return fields


FormDep = Annotated[dict[str, Any], Depends(posted_form)]


def formatted_date(lang: str, value: date | None) -> str:
    if value is None:
        return ""
    t = messages(lang)
    return str(t["date_format"]).format(
        year=value.year,
        month_number=value.month,
        month=t["months"][value.month - 1],
        day=value.day,
        weekday=t["weekdays"][value.weekday()],
    )


def render(
    request: Request,
    rt: Runtime,
    name: str,
    lang: str,
    *,
    desk: Desk | None = None,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    t = messages(lang)
    tz = rt.settings.tz

    def local_date(value: datetime | date | None) -> str:
        if isinstance(value, datetime):
            value = value.astimezone(tz).date()
        return formatted_date(lang, value)

    def local_time(value: datetime | None) -> str:
        if value is None:
            return ""
        local = value.astimezone(tz)
        return str(t["datetime_format"]).format(
            year=local.year,
            month_number=local.month,
            month=t["months"][local.month - 1],
            day=local.day,
            weekday=t["weekdays"][local.weekday()],
            hour=local.hour,
            minute=local.minute,
        )

    path = request.url.path
    other_query = {k: v for k, v in request.query_params.items() if k != "lang"}
    other_path = path
    if request.method != "GET" and path != "/console/login":
        # A page answering a post (a preview, a form with errors): switch on the page it
        # came from, which a GET can show.
        other_path, other_query = path.rsplit("/", 1)[0] or "/console/", {}
    base = {
        "lang": lang,
        "t": t,
        "desk": desk,
        "csrf_field": CSRF_FIELD,
        "company": rt.definitions.company.name.for_language(lang),
        "u": lambda p, **params: url(lang, p, **params),
        "other_lang_url": url(t["other_lang"], other_path, **other_query),
        "local_date": local_date,
        "local_time": local_time,
        "path": path,
    }
    response = templates.TemplateResponse(
        request, name, {**base, **context}, status_code=status_code
    )
    response.headers.update(SECURITY_HEADERS)
    return response


def error_page(request: Request, exc: DsrflowError) -> Response:
    rt: Runtime = request.app.state.runtime
    lang = language(request)
    t = messages(lang)
    if isinstance(exc, CsrfRejected):
        heading, body = t["forbidden_heading"], t["forbidden_csrf"]
    elif isinstance(exc, Forbidden):
        heading, body = t["forbidden_heading"], t["forbidden_role"]
    elif isinstance(exc, NotFound):
        heading, body = t["not_found_heading"], t["not_found_body"]
    else:
        heading, body = t["error_heading"], exc.detail
    return render(
        request,
        rt,
        "notice.html",
        lang,
        status_code=exc.status,
        heading=heading,
        paragraphs=[body],
    )


class ConsoleRoute(APIRoute):
    """Turns the domain's errors into console pages, and a missing session into a 303."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        original = super().get_route_handler()

        async def handler(request: Request) -> Response:
            try:
                return await original(request)
            except SignInRequired:
                lang = language(request)
                target = request.url.path if request.method == "GET" else None
                return RedirectResponse(url(lang, "/console/login", next=target), status_code=303)
            except DsrflowError as exc:
                return error_page(request, exc)

        return handler
