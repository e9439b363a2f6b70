"""Requester pages (HTML). Japanese by default, English with ``?lang=en``.

All text comes from ``messages/{ja,en}.yaml`` and the templates beside this file.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from dsrflow.api.deps import RuntimeDep, SessionDep, client_address
from dsrflow.auth.tokens import token_digest
from dsrflow.errors import Conflict, Invalid, NotFound
from dsrflow.requests import repository, service
from dsrflow.requests.models import Request as DsrRequest
from dsrflow.requests.schemas import RequestCreate
from dsrflow.runtime import Runtime
from dsrflow.yamlio import read_yaml

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=str(HERE / "templates"))
router = APIRouter(include_in_schema=False)
LANGUAGES = ("ja", "en")
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "script-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
}


@lru_cache
def messages(language: str) -> dict[str, Any]:
    return read_yaml(HERE / "messages" / f"{language}.yaml")


def _language(request: Request, fallback: str = "ja") -> str:
    lang = request.query_params.get("lang", fallback)
    return lang if lang in LANGUAGES else "ja"


def _render(
    request: Request, rt: Runtime, name: str, lang: str, status_code: int = 200, **context: Any
) -> HTMLResponse:
    base = {
        "lang": lang,
        "t": messages(lang),
        "company": rt.definitions.company.name.for_language(lang),
        "handler_email": rt.settings.handler_email,
    }
    response = templates.TemplateResponse(
        request, name, {**base, **context}, status_code=status_code
    )
    response.headers.update(SECURITY_HEADERS)
    return response


def _notice(
    request: Request, rt: Runtime, lang: str, heading: str, *paragraphs: str, status_code: int = 200
) -> HTMLResponse:
    t = messages(lang)
    return _render(
        request,
        rt,
        "notice.html",
        lang,
        status_code,
        heading=t[heading],
        paragraphs=[t[p] for p in paragraphs],
    )


def _form_to_request(form: dict[str, str]) -> dict[str, Any]:
    data: dict[str, Any] = {
        key: form[key]
        for key in (
            "type",
            "name",
            "email",
            "details",
            "phone",
            "postal_address",
            "language",
            "disclosure_method",
        )
        if form.get(key, "").strip()
    }
    if form.get("as_agent"):
        data["agent"] = {
            "name": form.get("agent_name", ""),
            "email": form.get("agent_email", ""),
            "relation": form.get("agent_relation", ""),
        }
    return data


def _error_fields(exc: ValidationError) -> list[str]:
    fields = [str(error["loc"][0]) if error["loc"] else "other" for error in exc.errors()]
    return list(dict.fromkeys(fields))


def _request_view(rt: Runtime, request: DsrRequest, lang: str) -> dict[str, Any]:
    wf = rt.definitions.workflow(request.type)
    tz = rt.settings.tz
    return {
        "dsr": request,
        "type_title": wf.title.for_language(lang),
        "state_label": wf.states[request.state].label.for_language(lang),
        # Dates as letters write them (templates/formats.yaml).
        "received_at_local": rt.letters.format(
            "long_datetime", request.received_at.astimezone(tz), lang
        ),
        "due_on": rt.letters.format("long_date", request.due_at.astimezone(tz).date(), lang),
    }


@router.get("/", response_class=HTMLResponse)
def request_form(request: Request, rt: RuntimeDep) -> HTMLResponse:
    lang = _language(request)
    return _render(
        request,
        rt,
        "form.html",
        lang,
        workflows=rt.definitions.workflows.values(),
        form={},
        errors=[],
    )


@router.post("/", response_class=HTMLResponse)
async def submit_form(request: Request, rt: RuntimeDep, session: SessionDep) -> HTMLResponse:
    lang = _language(request)
    if request.app.state.rate_limiter.retry_after("intake", client_address(request)) is not None:
        return _notice(request, rt, lang, "site_title", "too_many", status_code=429)
    form = {key: str(value) for key, value in (await request.form()).items()}
    lang = form["language"] if form.get("language") in LANGUAGES else lang
    errors: list[str] = []
    try:
        data = RequestCreate.model_validate(_form_to_request(form))
        submitted = await run_in_threadpool(service.submit, rt, session, data, channel="web")
    except ValidationError as exc:
        errors = _error_fields(exc)
    except Invalid as exc:
        errors = list(exc.errors)
    if errors:
        return _render(
            request,
            rt,
            "form.html",
            lang,
            422,
            workflows=rt.definitions.workflows.values(),
            form=form,
            errors=errors,
        )
    status_url = f"/status/{submitted.status_token}?lang={lang}"
    return _render(
        request,
        rt,
        "received.html",
        lang,
        201,
        status_url=status_url,
        **_request_view(rt, submitted.request, lang),
    )


@router.get("/verify/{token}", response_class=HTMLResponse)
def verify(token: str, request: Request, rt: RuntimeDep, session: SessionDep) -> HTMLResponse:
    try:
        outcome, dsr = service.verify_email(rt, session, token)
    except Conflict:  # the request changed at the same moment: the link still works
        return _notice(
            request,
            rt,
            _language(request),
            "verify_retry_heading",
            "verify_retry_body",
            status_code=409,
        )
    lang = _language(request, dsr.language if dsr else "ja")
    check = service.EmailCheck
    if outcome is check.IDENTITY_VERIFIED:
        return _notice(
            request, rt, lang, "verify_ok_heading", "verify_ok_body", "verify_identity_done"
        )
    if outcome is check.VERIFIED and dsr is not None:
        wf = rt.definitions.workflow(dsr.type)
        if dsr.state in wf.terminal_states:
            follow = "verify_closed"
        elif dsr.identity_verified_at is not None:
            follow = "verify_identity_already"
        else:
            follow = "verify_more_needed"
        return _notice(request, rt, lang, "verify_ok_heading", "verify_ok_body", follow)
    if outcome is check.USED:
        return _notice(request, rt, lang, "verify_used_heading", "verify_used_body")
    if outcome is check.EXPIRED:
        return _notice(
            request, rt, lang, "verify_expired_heading", "verify_expired_body", status_code=410
        )
    return _notice(request, rt, lang, "not_found_heading", "not_found_body", status_code=404)


@router.get("/status/{token}", response_class=HTMLResponse)
def status_page(token: str, request: Request, rt: RuntimeDep, session: SessionDep) -> HTMLResponse:
    dsr = repository.by_status_token(session, token_digest(token))
    if dsr is None:
        return _notice(
            request, rt, _language(request), "not_found_heading", "not_found_body", status_code=404
        )
    lang = _language(request, dsr.language)
    tz = rt.settings.tz
    letters = [
        {
            "subject": m.subject,
            "body": m.body,
            "at": m.created_at.astimezone(tz).strftime("%Y-%m-%d %H:%M"),
        }
        for m in repository.letters_to_requester(session, dsr, rt.internal_addresses)
    ]
    notice = messages(lang)["withdrawn_notice"] if request.query_params.get("done") else None
    return _render(
        request,
        rt,
        "status.html",
        lang,
        token=token,
        letters=letters,
        notice=notice,
        can_withdraw="withdraw" in rt.engine.allowed_triggers(dsr.type, dsr.state),
        **_request_view(rt, dsr, lang),
    )


@router.post("/status/{token}/withdraw")
def withdraw(token: str, request: Request, rt: RuntimeDep, session: SessionDep) -> Any:
    lang = _language(request)
    if request.app.state.rate_limiter.retry_after("status", client_address(request)) is not None:
        return _notice(request, rt, lang, "site_title", "too_many", status_code=429)
    try:
        service.withdraw_by_requester(rt, session, token)
    except NotFound:
        return _notice(request, rt, lang, "not_found_heading", "not_found_body", status_code=404)
    except Conflict:
        # Already closed: the status page shows the state it is in, with no "withdrawn" notice.
        return RedirectResponse(f"/status/{token}?lang={lang}", status_code=303)
    return RedirectResponse(f"/status/{token}?lang={lang}&done=1", status_code=303)
