"""Requester pages (HTML). Japanese by default, English with ``?lang=en``.

All text comes from ``messages/{ja,en}.yaml`` and the templates beside this file. Every POST
needs the page's CSRF token and a same-site ``Origin``/``Referer`` (``dsrflow.web.csrf``).
"""

from __future__ import annotations

import re
import unicodedata
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from markupsafe import Markup, escape
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.types import Scope

from dsrflow.api.deps import RuntimeDep, SessionDep, client_address
from dsrflow.auth.tokens import token_digest
from dsrflow.db import utcnow
from dsrflow.documents import service as documents
from dsrflow.errors import Conflict, Invalid, NotFound
from dsrflow.pages import receipts
from dsrflow.requests import repository, service
from dsrflow.requests.models import Request as DsrRequest
from dsrflow.requests.schemas import RequestCreate
from dsrflow.runtime import Runtime
from dsrflow.web.csrf import COOKIE as CSRF_COOKIE
from dsrflow.web.csrf import FIELD as CSRF_FIELD
from dsrflow.web.csrf import Csrf, browser_binding, remember_browser
from dsrflow.web.limits import Refusal, problem_refusal
from dsrflow.yamlio import read_yaml

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=str(HERE / "templates"))
router = APIRouter(include_in_schema=False)
LANGUAGES = ("ja", "en")
# The form's fields in page order: the first one in error gets the focus.
FORM_FIELDS = (
    "type",
    "name",
    "email",
    "phone",
    "postal_address",
    "details",
    "disclosure_method",
    "agent",
)
ASSETS = {"pages.js": "text/javascript; charset=utf-8"}
# A URL ends at a space, a quote or a closing full-width bracket (U+FF09, U+300D).
URL = re.compile("https?://[^\\s<>\"'\uff09\u300d]+")
REFUSAL_STATUS = {
    400: "bad_request",
    403: "cross_site",
    413: "too_large",
    415: "bad_request",
    431: "bad_request",
}


@lru_cache
def messages(language: str) -> dict[str, Any]:
    return read_yaml(HERE / "messages" / f"{language}.yaml")


def _linkify(text: str) -> Markup:
    """Escape a letter's text and make its URLs links (they wrap on a phone)."""
    escaped = str(escape(text))
    return Markup(URL.sub(lambda m: f'<a href="{m.group(0)}">{m.group(0)}</a>', escaped))


templates.env.filters["linkify"] = _linkify


def _language(request: Request, fallback: str = "ja") -> str:
    lang = request.query_params.get("lang", fallback)
    return lang if lang in LANGUAGES else "ja"


def _csrf(request: Request) -> Csrf:
    return request.app.state.csrf


def _render(
    request: Request, rt: Runtime, name: str, lang: str, status_code: int = 200, **context: Any
) -> HTMLResponse:
    binding, new = browser_binding(request)
    branding = rt.definitions.company.branding
    base = {
        "lang": lang,
        "t": messages(lang),
        "company": rt.definitions.company.name.for_language(lang),
        "branding": branding,
        "address": branding.address.for_language(lang) if branding.address else None,
        "hours": branding.hours.for_language(lang) if branding.hours else None,
        "handler_email": rt.settings.handler_email,
        "csrf_token": _csrf(request).token_for(binding),
        "csrf_field": CSRF_FIELD,
        "page_errors": False,
    }
    response = templates.TemplateResponse(
        request, name, {**base, **context}, status_code=status_code
    )
    if new:
        remember_browser(response, binding, secure=_csrf(request).secure)
    return response


def _notice(
    request: Request,
    rt: Runtime,
    lang: str,
    heading: str,
    *paragraphs: str,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
    **context: Any,
) -> HTMLResponse:
    t = messages(lang)
    response = _render(
        request,
        rt,
        "notice.html",
        lang,
        status_code,
        heading=t[heading],
        paragraphs=[t[p] for p in paragraphs],
        **context,
    )
    response.headers.update(headers or {})
    return response


def _too_many(request: Request, rt: Runtime, lang: str, wait: int) -> HTMLResponse:
    return _notice(
        request,
        rt,
        lang,
        "too_many_heading",
        "too_many",
        status_code=429,
        headers={"Retry-After": str(wait)},
    )


def _limited(request: Request, bucket: str) -> int | None:
    return request.app.state.rate_limiter.retry_after(bucket, client_address(request))


async def _guarded_form(request: Request) -> FormData | None:
    """The POSTed form, or None when it is cross-site or lacks this browser's CSRF token."""
    csrf = _csrf(request)
    if not csrf.same_origin(request.headers):  # before reading a body from elsewhere
        return None
    form = await request.form()
    token = form.get(CSRF_FIELD)
    binding = request.cookies.get(CSRF_COOKIE)
    return form if csrf.valid_token(binding, token if isinstance(token, str) else None) else None


def _cross_site(request: Request, rt: Runtime, lang: str) -> HTMLResponse:
    return _notice(request, rt, lang, "cross_site_heading", "cross_site_body", status_code=403)


def page_refusal(rt: Runtime) -> Refusal:
    """What the middlewares answer (413, 400, ...) on a page: a page in its language."""
    branding = rt.definitions.company.branding

    def refuse(scope: Scope, status: int, values: dict[str, Any]) -> tuple[str, bytes]:
        if scope["path"].startswith(("/api/", "/metrics", "/openapi.json")):
            return problem_refusal(scope, status, values)
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        lang = query.get("lang", ["ja"])[0]
        lang = lang if lang in LANGUAGES else "ja"
        t = messages(lang)
        key = REFUSAL_STATUS.get(status, "bad_request")
        html = templates.get_template("notice.html").render(
            lang=lang,
            t=t,
            company=rt.definitions.company.name.for_language(lang),
            branding=branding,
            address=branding.address.for_language(lang) if branding.address else None,
            hours=branding.hours.for_language(lang) if branding.hours else None,
            handler_email=rt.settings.handler_email,
            heading=t[f"{key}_heading"],
            paragraphs=[t[f"{key}_body"]],
            page_errors=False,
        )
        return "text/html; charset=utf-8", html.encode()

    return refuse


def _normalised(value: str) -> str:
    # Full-width letters, digits and @ typed with an IME carry no meaning in an address.
    return unicodedata.normalize("NFKC", value).strip()


def _form_to_request(rt: Runtime, form: dict[str, str]) -> dict[str, Any]:
    data: dict[str, Any] = {
        key: form[key]
        for key in ("type", "name", "email", "details", "phone", "postal_address", "language")
        if form.get(key, "").strip()
    }
    wf = rt.definitions.workflows.get(form.get("type", ""))
    # A method chosen, then a type without one: ignored (the field is hidden for such types).
    if wf is not None and wf.disclosure_methods and form.get("disclosure_method"):
        data["disclosure_method"] = form["disclosure_method"]
    for key in ("email", "phone"):
        if key in data:
            data[key] = _normalised(data[key])
    if form.get("as_agent"):
        data["agent"] = {
            "name": form.get("agent_name", ""),
            "email": _normalised(form.get("agent_email", "")),
            "relation": form.get("agent_relation", ""),
        }
    return data


def _error_fields(exc: ValidationError) -> list[str]:
    fields = [str(error["loc"][0]) if error["loc"] else "other" for error in exc.errors()]
    return list(dict.fromkeys(fields))


def _local(rt: Runtime, lang: str, moment: Any, *, time: bool = False) -> str:
    local = moment.astimezone(rt.settings.tz)
    weekday = messages(lang)["weekdays"][local.weekday()]
    pattern = messages(lang)["datetime_format" if time else "date_format"]
    return str(
        pattern.format(
            y=local.year,
            m=local.month,
            d=local.day,
            wd=weekday,
            hm=local.strftime("%H:%M"),
            month=local.strftime("%b"),
        )
    )


def _request_view(rt: Runtime, request: DsrRequest, lang: str) -> dict[str, Any]:
    wf = rt.definitions.workflow(request.type)
    return {
        "dsr": request,
        "type_title": wf.title.for_language(lang),
        "state_label": wf.states[request.state].label.for_language(lang),
        "received_at_local": _local(rt, lang, request.received_at, time=True),
        "due_on": _local(rt, lang, request.due_at),
    }


def _form_page(
    request: Request,
    rt: Runtime,
    lang: str,
    *,
    form: dict[str, str],
    errors: list[str],
    status_code: int = 200,
) -> HTMLResponse:
    ordered = [f for f in FORM_FIELDS if f in errors] + [f for f in errors if f not in FORM_FIELDS]
    return _render(
        request,
        rt,
        "form.html",
        lang,
        status_code,
        workflows=rt.definitions.workflows.values(),
        disclosure_types=" ".join(
            wf.id for wf in rt.definitions.workflows.values() if wf.disclosure_methods
        ),
        form=form,
        errors=ordered,
        first_error=ordered[0] if ordered else None,
        page_errors=bool(ordered),
    )


@router.get("/", response_class=HTMLResponse)
def request_form(request: Request, rt: RuntimeDep) -> HTMLResponse:
    return _form_page(request, rt, _language(request), form={}, errors=[])


@router.post("/", response_class=HTMLResponse)
async def submit_form(request: Request, rt: RuntimeDep, session: SessionDep) -> Response:
    lang = _language(request)
    wait = _limited(request, "intake")
    if wait is not None:
        return _too_many(request, rt, lang, wait)
    posted = await _guarded_form(request)
    if posted is None:
        return _cross_site(request, rt, lang)
    form = {key: str(value) for key, value in posted.items() if key != CSRF_FIELD}
    lang = form["language"] if form.get("language") in LANGUAGES else lang
    errors: list[str] = []
    try:
        data = RequestCreate.model_validate(_form_to_request(rt, form))
        window = timedelta(hours=rt.settings.duplicate_window_hours)
        submitted = await run_in_threadpool(
            service.submit_once, rt, session, data, channel="web", within=window
        )
    except ValidationError as exc:
        errors = _error_fields(exc)
    except Invalid as exc:
        errors = list(exc.errors)
    if errors:
        return _form_page(request, rt, lang, form=form, errors=errors, status_code=422)
    # POST/redirect/GET: a reload or the back button never files the request again.
    if submitted.duplicate:
        receipt = receipts.sign(rt.secret_key, submitted.request.id)
        return RedirectResponse(f"/received/{receipt}?lang={lang}", status_code=303)
    return RedirectResponse(
        f"/status/{submitted.status_token}?lang={lang}&received=1", status_code=303
    )


@router.get("/received/{receipt}", response_class=HTMLResponse)
def repeated_receipt(
    receipt: str, request: Request, rt: RuntimeDep, session: SessionDep
) -> HTMLResponse:
    """The receipt for a repeated submission: the earlier request's reference, no status link."""
    lang = _language(request)
    request_id = receipts.verify(rt.secret_key, receipt)
    dsr = repository.get(session, request_id) if request_id else None
    if dsr is None:
        return _notice(request, rt, lang, "not_found_heading", "not_found_body", status_code=404)
    return _render(
        request, rt, "received.html", lang, duplicate=True, **_request_view(rt, dsr, lang)
    )


@router.get("/verify/{token}", response_class=HTMLResponse)
def verify_page(token: str, request: Request, rt: RuntimeDep, session: SessionDep) -> HTMLResponse:
    """Shows a button and changes nothing: mail scanners that open the link spend nothing."""
    lang = _language(request)
    wait = _limited(request, "verify")
    if wait is not None:
        return _too_many(request, rt, lang, wait)
    outcome, dsr = service.check_email_link(session, token)
    lang = _language(request, dsr.language if dsr else "ja")
    if outcome is service.EmailCheck.PENDING and dsr is not None:
        return _render(request, rt, "verify.html", lang, token=token, reference=dsr.reference)
    return _link_outcome(request, rt, lang, outcome, dsr)


@router.post("/verify/{token}", response_class=HTMLResponse)
async def verify_confirm(
    token: str, request: Request, rt: RuntimeDep, session: SessionDep
) -> HTMLResponse:
    lang = _language(request)
    wait = _limited(request, "verify")
    if wait is not None:
        return _too_many(request, rt, lang, wait)
    if await _guarded_form(request) is None:
        return _cross_site(request, rt, lang)
    try:
        outcome, dsr = await run_in_threadpool(service.verify_email, rt, session, token)
    except Conflict:  # the request changed at the same moment: the link still works
        return _notice(
            request, rt, lang, "verify_retry_heading", "verify_retry_body", status_code=409
        )
    return _link_outcome(
        request, rt, _language(request, dsr.language if dsr else lang), outcome, dsr
    )


def _link_outcome(
    request: Request,
    rt: Runtime,
    lang: str,
    outcome: service.EmailCheck,
    dsr: DsrRequest | None,
) -> HTMLResponse:
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
            request,
            rt,
            lang,
            "verify_expired_heading",
            "verify_expired_body",
            "verify_expired_open",
            status_code=410,
            reference=dsr.reference if dsr else None,
        )
    return _notice(request, rt, lang, "not_found_heading", "not_found_body", status_code=404)


def _next_step(rt: Runtime, dsr: DsrRequest) -> str:
    """The key of the line that says what happens next in this state."""
    steps = messages("ja")["next_steps"]
    if dsr.state == "received" and dsr.email_verified_at is not None:
        return "received_email_verified"
    return dsr.state if dsr.state in steps else "other"


@router.get("/status/{token}", response_class=HTMLResponse)
def status_page(token: str, request: Request, rt: RuntimeDep, session: SessionDep) -> HTMLResponse:
    lang = _language(request)
    wait = _limited(request, "status")
    if wait is not None:
        return _too_many(request, rt, lang, wait)
    return _status(request, rt, session, token)


def _status(
    request: Request, rt: Runtime, session: Any, token: str, upload_error: str | None = None
) -> HTMLResponse:
    dsr = repository.by_status_token(session, token_digest(token))
    if dsr is None:
        return _notice(
            request, rt, _language(request), "not_found_heading", "not_found_body", status_code=404
        )
    lang = _language(request, dsr.language)
    keep = timedelta(days=rt.settings.status_link_days_after_close)
    if dsr.closed_at is not None and utcnow() > dsr.closed_at + keep:
        # Long closed: the link says only that, and shows nothing of the request.
        return _notice(request, rt, lang, "status_closed_heading", "status_closed_body")
    letters = [
        {"subject": m.subject, "body": m.body, "at": _local(rt, lang, m.created_at, time=True)}
        for m in reversed(repository.letters_to_requester(session, dsr, rt.internal_addresses))
    ]
    uploaded = documents.repository.for_request(session, dsr.id)
    t = messages(lang)
    query = request.query_params
    notice = None
    if query.get("done"):
        notice = t["withdrawn_notice"]
    elif query.get("uploaded"):
        notice = t["upload_done"]
    wf = rt.definitions.workflow(dsr.type)
    is_open = dsr.state not in wf.terminal_states
    mib = rt.settings.max_upload_bytes // (1024 * 1024)
    return _render(
        request,
        rt,
        "status.html",
        lang,
        status_code=422 if upload_error else 200,
        token=token,
        letters=letters,
        notice=notice,
        received=bool(query.get("received")),
        next_step=t["next_steps"][_next_step(rt, dsr)],
        email_verified=dsr.email_verified_at is not None,
        can_withdraw="withdraw" in rt.engine.allowed_triggers(dsr.type, dsr.state),
        can_upload=is_open and dsr.identity_verified_at is None,
        documents=[
            {"kind": d.kind, "filename": d.filename, "at": _local(rt, lang, d.uploaded_at)}
            for d in uploaded
        ],
        upload_error=t["upload_errors"][upload_error].replace("{mib}", str(mib))
        if upload_error
        else None,
        max_upload_mib=mib,
        has_agent=dsr.agent_relation is not None,
        page_errors=bool(upload_error),
        **_request_view(rt, dsr, lang),
    )


@router.post("/status/{token}/withdraw")
async def withdraw(token: str, request: Request, rt: RuntimeDep, session: SessionDep) -> Any:
    lang = _language(request)
    wait = _limited(request, "status")
    if wait is not None:
        return _too_many(request, rt, lang, wait)
    if await _guarded_form(request) is None:
        return _cross_site(request, rt, lang)
    try:
        await run_in_threadpool(service.withdraw_by_requester, rt, session, token)
    except NotFound:
        return _notice(request, rt, lang, "not_found_heading", "not_found_body", status_code=404)
    except Conflict:
        # Already closed: the status page shows the state it is in, with no "withdrawn" notice.
        return RedirectResponse(f"/status/{token}?lang={lang}", status_code=303)
    return RedirectResponse(f"/status/{token}?lang={lang}&done=1", status_code=303)


@router.post("/status/{token}/documents")
async def upload_document(token: str, request: Request, rt: RuntimeDep, session: SessionDep) -> Any:
    lang = _language(request)
    wait = _limited(request, "upload")
    if wait is not None:
        return _too_many(request, rt, lang, wait)
    form = await _guarded_form(request)
    if form is None:
        return _cross_site(request, rt, lang)
    upload = form.get("file")
    kind = form.get("kind")
    content, filename = b"", ""
    if isinstance(upload, UploadFile):
        content, filename = (
            await upload.read(rt.settings.max_upload_bytes + 1),
            upload.filename or "",
        )
    try:
        await run_in_threadpool(
            documents.upload,
            rt,
            session,
            token,
            kind=kind if isinstance(kind, str) else "",
            filename=filename,
            content=content,
        )
    except NotFound:
        return _notice(request, rt, lang, "not_found_heading", "not_found_body", status_code=404)
    except Conflict:
        return RedirectResponse(f"/status/{token}?lang={lang}", status_code=303)
    except Invalid as exc:
        return _status(request, rt, session, token, upload_error=exc.errors.get("file", "kind"))
    return RedirectResponse(f"/status/{token}?lang={lang}&uploaded=1", status_code=303)


@router.get("/assets/{name}")
def asset(name: str) -> Response:
    if name not in ASSETS:
        return Response(status_code=404)
    return FileResponse(HERE / "assets" / name, media_type=ASSETS[name])


@router.get("/branding/logo")
def logo(rt: RuntimeDep) -> Response:
    name = rt.definitions.company.branding.logo
    if name is None:
        return Response(status_code=404)
    path = rt.definitions.directory / name
    kind = {".svg": "image/svg+xml", ".png": "image/png"}.get(path.suffix.lower(), "image/jpeg")
    return FileResponse(path, media_type=kind, headers={"Content-Security-Policy": "sandbox"})
