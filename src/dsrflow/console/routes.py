"""The handler console (HTML): sign-in, the queue, a request's page, the triage inbox, reports.

Routes are thin: they read a form, call the same services as the API, and render or redirect
(POST/redirect/GET). Japanese by default, English with ``?lang=en``.
"""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.responses import Response

from dsrflow.api.deps import RuntimeDep, SessionDep, client_address
from dsrflow.auth import service as auth_service
from dsrflow.console import views
from dsrflow.console.desk import (
    COOKIE,
    CSRF_FIELD,
    ConsoleRoute,
    CsrfRejected,
    DeskDep,
    FormDep,
    csrf,
    language,
    messages,
    render,
    url,
)
from dsrflow.console.forms import transition_fields
from dsrflow.db import utcnow
from dsrflow.deadlines import service as deadlines
from dsrflow.errors import Conflict, Invalid, NotFound
from dsrflow.inbound_mail import repository as inbound_repository
from dsrflow.inbound_mail import triage
from dsrflow.inbound_mail.schemas import ConvertIn
from dsrflow.requests import repository, service
from dsrflow.requests.models import Request as DsrRequest
from dsrflow.requests.schemas import PaymentIn, TransitionIn

router = APIRouter(prefix="/console", include_in_schema=False, route_class=ConsoleRoute)


def _redirect(lang: str, path: str, **params: Any) -> RedirectResponse:
    return RedirectResponse(url(lang, path, **params), status_code=303)


def _load(session: SessionDep, request_id: str) -> DsrRequest:
    dsr = repository.get(session, request_id)
    if dsr is None:
        raise NotFound("No such request.")
    return dsr


# --------------------------------------------------------------------------- sign-in


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, rt: RuntimeDep) -> HTMLResponse:
    lang = language(request)
    return render(request, rt, "login.html", lang, next=_next(request.query_params.get("next")))


def _next(target: str | None) -> str | None:
    # Only a console path: never an open redirect.
    if target and target.startswith("/console/") and "//" not in target and "\\" not in target:
        return target
    return None


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request, rt: RuntimeDep, session: SessionDep) -> Response:
    lang = language(request)
    t = messages(lang)

    def refuse(status: int, key: str) -> HTMLResponse:
        return render(request, rt, "login.html", lang, status_code=status, error=t[key])

    if not csrf(rt).same_origin(request.headers):
        return refuse(403, "login_cross_site")
    if request.app.state.rate_limiter.retry_after("console_login", client_address(request)):
        return refuse(429, "login_too_many")
    form = await request.form()
    token = str(form.get("token") or "").strip()
    started = (
        auth_service.start_console_session(session, token, rt.settings.console_session_hours)
        if token
        else None
    )
    if started is None:
        return refuse(401, "login_failed")
    _, session_id = started
    response = _redirect(lang, _next(str(form.get("next") or "")) or "/console/")
    response.set_cookie(
        COOKIE,
        session_id,
        max_age=rt.settings.console_session_hours * 3600,
        httponly=True,
        samesite="strict",
        secure=rt.settings.base_url.lower().startswith("https://"),
        path="/console",
    )
    return response


@router.post("/logout")
def logout(desk: DeskDep, form: FormDep, session: SessionDep) -> Response:
    auth_service.end_console_session(session, desk.session_id)
    response = _redirect(desk.lang, "/console/login")
    response.delete_cookie(COOKIE, path="/console")
    return response


# --------------------------------------------------------------------------- the queue


@router.get("/", response_class=HTMLResponse)
def queue(request: Request, rt: RuntimeDep, session: SessionDep, desk: DeskDep) -> HTMLResponse:
    filters = views.QueueFilters.from_query(rt, request.query_params)
    page = views.queue_page(rt, session, desk.lang, filters)
    return render(request, rt, "queue.html", desk.lang, desk=desk, filters=filters, **page)


# --------------------------------------------------------------------------- a request


@router.get("/requests/{request_id}", response_class=HTMLResponse)
def request_page(
    request_id: str, request: Request, rt: RuntimeDep, session: SessionDep, desk: DeskDep
) -> HTMLResponse:
    dsr = _load(session, request_id)
    context = views.request_context(rt, session, dsr, desk.lang)
    service.mark_seen(session, dsr)
    done = request.query_params.get("done")
    t = messages(desk.lang)
    notice = None
    if done in t["triggers"]:
        notice = str(t["done_notice"]).format(action=t["triggers"][done])
    elif done in ("assigned", "note_added", "package", "extended", "payment"):
        keys = {
            "assigned": "assigned_notice",
            "package": "package_added",
            "extended": "extended",
            "payment": "payment_recorded",
        }
        notice = t[keys.get(done, done)]
    return render(request, rt, "request.html", desk.lang, desk=desk, notice=notice, **context)


def _request_again(
    request: Request,
    rt: RuntimeDep,
    session: SessionDep,
    desk: DeskDep,
    dsr: DsrRequest,
    form: dict[str, Any],
    *,
    status_code: int,
    errors: dict[str, str] | None = None,
    stale: bool = False,
) -> HTMLResponse:
    """The request's page again, with what went wrong: errors next to their fields (and the
    values kept), or what changed since the page was opened."""
    session.expire_all()
    dsr = _load(session, dsr.id)
    context = views.request_context(rt, session, dsr, desk.lang)
    seen_seq = str(form.get("seen_seq") or "")
    seen = int(seen_seq) if seen_seq.isdigit() else 0
    context.update(
        errors=errors or {},
        failed_trigger=form.get("trigger"),
        values=form,
        stale=stale,
        changes=[e for e in context["history"] if e["seq"] > seen] if stale else [],
    )
    return render(
        request, rt, "request.html", desk.lang, desk=desk, status_code=status_code, **context
    )


@router.post("/requests/{request_id}/preview", response_class=HTMLResponse)
def preview(
    request_id: str,
    request: Request,
    rt: RuntimeDep,
    session: SessionDep,
    desk: DeskDep,
    form: FormDep,
) -> HTMLResponse:
    desk.require("transition")
    dsr = _load(session, request_id)
    trigger = str(form.get("trigger") or "")
    fields = transition_fields(form)
    version = str(form.get("expected_version") or "")
    if version.isdigit() and int(version) != dsr.version:
        return _request_again(request, rt, session, desk, dsr, form, status_code=409, stale=True)
    try:
        letter = service.preview(rt, session, dsr, trigger, fields)
    except Invalid as exc:
        return _request_again(
            request, rt, session, desk, dsr, form, status_code=422, errors=exc.errors
        )
    except Conflict:
        return _request_again(request, rt, session, desk, dsr, form, status_code=409, stale=True)
    return render(
        request,
        rt,
        "preview.html",
        desk.lang,
        desk=desk,
        **views.preview_context(rt, dsr, desk.lang, trigger, fields, letter, form),
    )


@router.post("/requests/{request_id}/transitions")
def fire_transition(
    request_id: str,
    request: Request,
    rt: RuntimeDep,
    session: SessionDep,
    desk: DeskDep,
    form: FormDep,
) -> Response:
    desk.require("transition")
    dsr = _load(session, request_id)
    version = str(form.get("expected_version") or "")
    try:
        body = TransitionIn(
            trigger=str(form.get("trigger") or ""),
            expected_version=int(version) if version.isdigit() else None,
            **transition_fields(form),
        )
        service.transition(rt, session, dsr.id, body, actor=desk.actor)
    except Invalid as exc:
        return _request_again(
            request, rt, session, desk, dsr, form, status_code=422, errors=exc.errors
        )
    except Conflict:
        return _request_again(request, rt, session, desk, dsr, form, status_code=409, stale=True)
    except ValueError as exc:  # pydantic: a field too long, a stray character
        errors = {str(e["loc"][0]) if e["loc"] else "form": e["msg"] for e in exc.errors()}  # type: ignore[attr-defined]
        return _request_again(request, rt, session, desk, dsr, form, status_code=422, errors=errors)
    return _redirect(desk.lang, f"/console/requests/{dsr.id}", done=body.trigger)


@router.post("/requests/{request_id}/extensions")
def extend(
    request_id: str,
    request: Request,
    rt: RuntimeDep,
    session: SessionDep,
    desk: DeskDep,
    form: FormDep,
) -> Response:
    """Extend the internal target date, with a reason (the requester is told; the Art. 39
    date never moves)."""
    desk.require("transition")
    dsr = _load(session, request_id)
    days, version = str(form.get("days") or ""), str(form.get("expected_version") or "")
    form = {**form, "trigger": "extend"}
    try:
        deadlines.extend(
            rt,
            session,
            dsr.id,
            days=int(days) if days.isdigit() else 0,
            reason=str(form.get("reason") or "").strip(),
            actor=desk.actor,
            expected_version=int(version) if version.isdigit() else None,
            confirm_past_art39=bool(form.get("confirm_past_art39")),
        )
    except Invalid as exc:
        return _request_again(
            request, rt, session, desk, dsr, form, status_code=422, errors=exc.errors
        )
    except Conflict:
        return _request_again(request, rt, session, desk, dsr, form, status_code=409, stale=True)
    return _redirect(desk.lang, f"/console/requests/{dsr.id}", done="extended")


@router.post("/requests/{request_id}/payments")
def record_payment(
    request_id: str,
    request: Request,
    rt: RuntimeDep,
    session: SessionDep,
    desk: DeskDep,
    form: FormDep,
) -> Response:
    """A fee payment (audited); a workflow that discloses only once paid then allows it."""
    desk.require("transition")
    dsr = _load(session, request_id)
    form = {**form, "trigger": "payment"}
    paid_on = str(form.get("paid_on") or "")
    today = utcnow().astimezone(rt.settings.tz).date()
    try:
        day = date.fromisoformat(paid_on) if paid_on else today
        data = PaymentIn(
            amount_jpy=int(str(form.get("amount_jpy") or "0").replace(",", "") or 0),
            method=str(form.get("method") or ""),
            # A day, not a moment: noon in Japan that day (now, for today).
            paid_at=None
            if day >= today
            else datetime.combine(day, time(12, 0), tzinfo=rt.settings.tz),
            note=str(form.get("note") or "").strip() or None,
        )
        service.record_payment(rt, session, dsr.id, data, actor=desk.actor)
    except Invalid as exc:
        return _request_again(
            request, rt, session, desk, dsr, form, status_code=422, errors=exc.errors
        )
    except Conflict:
        return _request_again(request, rt, session, desk, dsr, form, status_code=409, stale=True)
    except ValidationError as exc:
        errors = {str(e["loc"][0]) if e["loc"] else "form": e["msg"] for e in exc.errors()}
        return _request_again(request, rt, session, desk, dsr, form, status_code=422, errors=errors)
    except ValueError:  # a date or an amount that is not one
        errors = {"paid_on": "YYYY-MM-DD", "amount_jpy": "a whole number of yen"}
        return _request_again(request, rt, session, desk, dsr, form, status_code=422, errors=errors)
    return _redirect(desk.lang, f"/console/requests/{dsr.id}", done="payment")


@router.post("/requests/{request_id}/notes")
def add_note(request_id: str, session: SessionDep, desk: DeskDep, form: FormDep) -> Response:
    desk.require("transition")
    dsr = _load(session, request_id)
    assert desk.handler.id is not None
    service.add_note(session, dsr, desk.handler.id, str(form.get("body") or ""))
    return _redirect(desk.lang, f"/console/requests/{dsr.id}", done="note_added")


@router.post("/requests/{request_id}/assignee")
def assign(request_id: str, session: SessionDep, desk: DeskDep, form: FormDep) -> Response:
    desk.require("transition")
    dsr = _load(session, request_id)
    value = str(form.get("assignee_id") or "")
    service.assign(session, dsr, int(value) if value.isdigit() else None, actor=desk.actor)
    return _redirect(desk.lang, f"/console/requests/{dsr.id}", done="assigned")


@router.post("/requests/{request_id}/packages")
async def attach_package(
    request_id: str, request: Request, rt: RuntimeDep, session: SessionDep, desk: DeskDep
) -> Response:
    """The disclosure package that goes with a fulfilment (``dsrflow.packages``): stored,
    hashed, offered to the requester on the status page through an expiring link."""
    desk.require("transition")
    packages = views.optional("dsrflow.packages.service")
    schemas = views.optional("dsrflow.packages.schemas")
    if packages is None or schemas is None:
        raise NotFound("Disclosure packages are not available.")
    form = await request.form()
    if not csrf(rt).accepts(request, desk.session_id, str(form.get(CSRF_FIELD) or "")):
        raise CsrfRejected("The form's csrf_token is missing or not valid.")
    files = [
        schemas.IncomingFile(
            f.filename or "file", f.content_type or "application/octet-stream", f.file
        )
        for f in form.getlist("files")
        if isinstance(f, UploadFile) and f.filename
    ]
    dsr = _load(session, request_id)
    try:
        await run_in_threadpool(packages.attach, rt, session, dsr.id, files, actor=desk.actor)
    except (Invalid, Conflict) as exc:
        errors = exc.errors if isinstance(exc, Invalid) else {"files": exc.detail}
        return _request_again(
            request, rt, session, desk, dsr, {}, status_code=exc.status, errors=errors
        )
    return _redirect(desk.lang, f"/console/requests/{dsr.id}", done="package")


@router.get("/requests/{request_id}/messages/{inbound_id}/attachments/{attachment_id}")
def request_attachment(
    request_id: str, inbound_id: int, attachment_id: int, session: SessionDep, desk: DeskDep
) -> Response:
    message = inbound_repository.get(session, inbound_id)
    if message is None or message.request_id != request_id:
        raise NotFound("No such message for this request.")
    return _attachment(session, inbound_id, attachment_id)


def _attachment(session: SessionDep, inbound_id: int, attachment_id: int) -> Response:
    attachment = inbound_repository.attachment(session, inbound_id, attachment_id)
    if attachment is None or attachment.content is None:
        raise NotFound("No such attachment.")
    name = attachment.filename or f"attachment-{attachment_id}"
    ascii_name = name.encode("ascii", "replace").decode().replace('"', "_").replace("?", "_")
    content_type = attachment.content_type
    return Response(
        content=attachment.content,
        media_type=content_type if "/" in content_type else "application/octet-stream",
        headers={
            # Always a download, never rendered in the console's origin.
            "Content-Disposition": (
                f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name)}"
            ),
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "sandbox",
            "Cache-Control": "no-store",
        },
    )


# --------------------------------------------------------------------------- triage inbox


@router.get("/inbox", response_class=HTMLResponse)
def inbox(request: Request, rt: RuntimeDep, session: SessionDep, desk: DeskDep) -> HTMLResponse:
    page = views.inbox_page(rt, session, desk.lang)
    t = messages(desk.lang)
    done = request.query_params.get("done")
    notice = None
    if done == "dismissed":
        notice = t["dismissed_notice"]
    elif done == "converted":
        notice = str(t["converted_notice"]).format(
            reference=request.query_params.get("reference", "")
        )
    elif done == "bulk":
        notice = str(t["bulk_done"]).format(count=request.query_params.get("count", "0"))
    elif done == "none":
        notice = t["bulk_none"]
    return render(request, rt, "inbox.html", desk.lang, desk=desk, notice=notice, **page)


@router.get("/inbox/{inbound_id}", response_class=HTMLResponse)
def inbox_message(
    inbound_id: int, request: Request, rt: RuntimeDep, session: SessionDep, desk: DeskDep
) -> HTMLResponse:
    row = inbound_repository.get(session, inbound_id)
    if row is None:
        raise NotFound("No such message.")
    context = views.message_context(rt, session, row, desk.lang)
    return render(request, rt, "message.html", desk.lang, desk=desk, **context)


@router.post("/inbox/bulk")
def inbox_bulk(rt: RuntimeDep, session: SessionDep, desk: DeskDep, form: FormDep) -> Response:
    desk.require("transition")
    selected = form.get("selected") or []
    ids = [int(i) for i in ([selected] if isinstance(selected, str) else selected) if i.isdigit()]
    if not ids:
        return _redirect(desk.lang, "/console/inbox", done="none")
    count = 0
    if form.get("action") == "spam":
        note = str(messages(desk.lang)["spam_note"])
        count = triage.dismiss_many(rt, session, ids, note, actor=desk.actor)
    elif form.get("action") == "assign":
        value = str(form.get("assignee_id") or "")
        count = triage.assign(session, ids, int(value) if value.isdigit() else None)
    else:
        raise Invalid({"action": "spam or assign"})
    return _redirect(desk.lang, "/console/inbox", done="bulk", count=count)


@router.post("/inbox/{inbound_id}/convert", response_model=None)
def convert(
    inbound_id: int,
    request: Request,
    rt: RuntimeDep,
    session: SessionDep,
    desk: DeskDep,
    form: FormDep,
) -> Response:
    desk.require("transition")
    data: dict[str, Any] = {
        key: str(form[key]).strip()
        for key in ("type", "name", "email", "language")
        if str(form.get(key) or "").strip()
    }
    if form.get("as_agent"):
        data["agent"] = {
            "name": str(form.get("agent_name") or "").strip(),
            "email": str(form.get("agent_email") or "").strip(),
            "relation": str(form.get("agent_relation") or ""),
        }
    try:
        body = ConvertIn.model_validate(data)
        _, created = triage.convert(rt, session, inbound_id, body, actor=desk.actor)
    except (Invalid, ValueError) as exc:
        errors = (
            exc.errors
            if isinstance(exc, Invalid)
            else {
                ".".join(str(p) for p in e["loc"]) or "form": e["msg"]
                for e in exc.errors()  # type: ignore[attr-defined]
            }
        )
        return _message_again(request, rt, session, desk, inbound_id, form, errors)
    return _redirect(desk.lang, f"/console/requests/{created.id}", done="converted")


@router.post("/inbox/{inbound_id}/dismiss", response_model=None)
def dismiss(
    inbound_id: int,
    request: Request,
    rt: RuntimeDep,
    session: SessionDep,
    desk: DeskDep,
    form: FormDep,
) -> Response:
    desk.require("transition")
    note = str(form.get("note") or "").strip()
    reply = str(form.get("reply") or "") or None
    if not note:
        return _message_again(
            request, rt, session, desk, inbound_id, form, {"note": "must not be empty"}
        )
    try:
        triage.dismiss(rt, session, inbound_id, note, actor=desk.actor, reply=reply)
    except Invalid as exc:
        return _message_again(request, rt, session, desk, inbound_id, form, exc.errors)
    return _redirect(desk.lang, "/console/inbox", done="dismissed")


def _message_again(
    request: Request,
    rt: RuntimeDep,
    session: SessionDep,
    desk: DeskDep,
    inbound_id: int,
    form: dict[str, Any],
    errors: dict[str, str],
) -> HTMLResponse:
    session.rollback()
    row = inbound_repository.get(session, inbound_id)
    if row is None:
        raise NotFound("No such message.")
    context = views.message_context(rt, session, row, desk.lang)
    return render(
        request,
        rt,
        "message.html",
        desk.lang,
        desk=desk,
        status_code=422,
        errors=errors,
        values=form,
        **context,
    )


@router.get("/inbox/{inbound_id}/attachments/{attachment_id}")
def inbox_attachment(
    inbound_id: int, attachment_id: int, session: SessionDep, desk: DeskDep
) -> Response:
    return _attachment(session, inbound_id, attachment_id)


# --------------------------------------------------------------------------- reports


def _period(request: Request, rt: RuntimeDep) -> tuple[date, date]:
    today = utcnow().astimezone(rt.settings.tz).date()
    try:
        start = date.fromisoformat(request.query_params.get("from") or "")
    except ValueError:  # by default, the year so far
        start = date(today.year, 1, 1)
    try:
        end = date.fromisoformat(request.query_params.get("to") or "")
    except ValueError:
        end = today
    return start, end


@router.get("/reports", response_class=HTMLResponse)
def reports(request: Request, rt: RuntimeDep, session: SessionDep, desk: DeskDep) -> HTMLResponse:
    start, end = _period(request, rt)
    context = views.reports_context(rt, session, desk.lang, start, end)
    return render(request, rt, "reports.html", desk.lang, desk=desk, **context)


@router.get("/reports/requests.csv")
def reports_csv(request: Request, rt: RuntimeDep, session: SessionDep, desk: DeskDep) -> Response:
    start, end = _period(request, rt)
    text = views.requests_csv(rt, session, start, end)
    if text is None:
        raise NotFound("Reports are not available yet.")
    return Response(
        content=text,
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="requests-{start}-{end}.csv"',
            "Cache-Control": "no-store",
        },
    )
