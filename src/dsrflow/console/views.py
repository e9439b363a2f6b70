"""What each console page shows, gathered from the repositories and services (no decisions)."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from sqlmodel import Session

from dsrflow.auth import repository as auth_repository
from dsrflow.console.desk import messages
from dsrflow.console.forms import action_forms
from dsrflow.db import utcnow
from dsrflow.errors import Invalid
from dsrflow.inbound_mail import repository as inbound_repository
from dsrflow.inbound_mail import service as inbound_service
from dsrflow.inbound_mail import triage
from dsrflow.inbound_mail.models import InboundMessage
from dsrflow.requests import repository, service
from dsrflow.requests.models import Request
from dsrflow.requests.service import LetterPreview
from dsrflow.runtime import Runtime

CHANNELS = ("web", "api", "email", "post", "phone", "counter")
QUEUE_PAGE = 100
SOON_DAYS = 3


@dataclass
class QueueFilters:
    state: str = "open"
    type: str = ""
    overdue: bool = False
    due_within: int | None = None
    assignee: str = ""  # a handler id, "none" (unassigned) or "" (anyone)
    channel: str = ""
    q: str = ""
    page: int = 1

    @classmethod
    def from_query(cls, rt: Runtime, query: Mapping[str, str]) -> QueueFilters:
        """The filters of the queue's URL; a value that names nothing is a 422, never an
        empty list that reads as "nothing to do"."""
        errors: dict[str, str] = {}
        states = {"open", "all", *rt.open_states, *rt.closed_states}
        state = query.get("state") or "open"
        if state not in states:
            errors["state"] = f"unknown state; one of {sorted(states)}"
        request_type = query.get("type") or ""
        if request_type and request_type not in rt.definitions.workflows:
            errors["type"] = f"unknown type; one of {sorted(rt.definitions.workflows)}"
        channel = query.get("channel") or ""
        if channel and channel not in CHANNELS:
            errors["channel"] = f"unknown channel; one of {list(CHANNELS)}"
        within = query.get("due_within") or ""
        if within and not (within.isdigit() and int(within) <= 3650):
            errors["due_within"] = "a number of days"
        assignee = query.get("assignee") or ""
        if assignee and assignee != "none" and not assignee.isdigit():
            errors["assignee"] = "a handler id or 'none'"
        page = query.get("page") or "1"
        if errors:
            raise Invalid(errors)
        return cls(
            state=state,
            type=request_type,
            overdue=query.get("overdue") in ("1", "true", "on"),
            due_within=int(within) if within else None,
            assignee=assignee,
            channel=channel,
            q=(query.get("q") or "").strip()[:320],
            page=max(1, int(page)) if page.isdigit() else 1,
        )

    def query(self, **changes: Any) -> dict[str, Any]:
        values = {
            "state": self.state if self.state != "open" else None,
            "type": self.type,
            "overdue": "1" if self.overdue else None,
            "due_within": self.due_within,
            "assignee": self.assignee,
            "channel": self.channel,
            "q": self.q,
        }
        return {**values, **changes}


def days_left(rt: Runtime, request: Request, today: date) -> int:
    """Whole days from today (Japan time) to the due date; negative once it has passed."""
    return (request.due_at.astimezone(rt.settings.tz).date() - today).days


def _handler_names(session: Session) -> dict[int, str]:
    return {h.id: h.name for h in auth_repository.list_handlers(session) if h.id is not None}


def queue_page(rt: Runtime, session: Session, lang: str, f: QueueFilters) -> dict[str, Any]:
    now = utcnow()
    today = now.astimezone(rt.settings.tz).date()
    if f.state == "open":
        states = rt.open_states
    elif f.state == "all":
        states = [*rt.open_states, *rt.closed_states]
    else:
        states = [f.state]
    due_before = (
        rt.calendar.end_of(today + timedelta(days=f.due_within)) + timedelta(microseconds=1)
        if f.due_within is not None
        else None
    )
    rows, total = repository.queue(
        session,
        states=states,
        request_type=f.type or None,
        overdue_as_of=now if f.overdue else None,
        due_before=due_before,
        assignee_id=int(f.assignee) if f.assignee.isdigit() else None,
        unassigned=f.assignee == "none",
        channel=f.channel or None,
        lookup=f.q or None,
        closed_states=rt.closed_states,
        paused_types=rt.paused_types,
        today=today,
        limit=QUEUE_PAGE,
        offset=(f.page - 1) * QUEUE_PAGE,
    )
    activity = repository.requester_activity(session, [r.id for r in rows])
    names = _handler_names(session)
    items = []
    for r in rows:
        wf = rt.definitions.workflow(r.type)
        left = days_left(rt, r, today)
        closed = r.state in wf.terminal_states
        overdue = rt.is_overdue(r.type, r.state, r.due_at, now, r.art39_date)
        acted = activity.get(r.id)
        items.append(
            {
                "dsr": r,
                "type_title": wf.title.for_language(lang),
                "state_label": wf.states[r.state].label.for_language(lang),
                "agent_name": r.agent_name,
                "days_left": None if closed else left,
                "tone": "closed"
                if closed
                else "overdue"
                if overdue
                else "soon"
                if left <= SOON_DAYS
                else "ok",
                "assignee": names.get(r.assignee_id) if r.assignee_id else None,
                "acted": acted is not None
                and (r.handler_seen_at is None or acted > r.handler_seen_at),
                "unseen": r.handler_seen_at is None,
            }
        )
    session.rollback()
    return {
        "items": items,
        "total": total,
        "workflows": list(rt.definitions.workflows.values()),
        "states": _state_choices(rt, lang),
        "channels": CHANNELS,
        "handlers": auth_repository.active_handlers(session),
        "pages": (total + QUEUE_PAGE - 1) // QUEUE_PAGE,
    }


def _state_choices(rt: Runtime, lang: str) -> list[tuple[str, str]]:
    labels: dict[str, str] = {}
    for wf in rt.definitions.workflows.values():
        for name, state in wf.states.items():
            labels.setdefault(name, state.label.for_language(lang))
    order = [*rt.open_states, *rt.closed_states]
    return [(name, labels[name]) for name in order if name in labels]


def _actor(actor: str, names: dict[int, str], t: dict[str, Any]) -> str:
    kind, _, number = actor.partition(":")
    if kind == "handler" and number.isdigit():
        return names.get(int(number), actor)
    return str(t["actors"].get(actor, actor))


def request_context(rt: Runtime, session: Session, dsr: Request, lang: str) -> dict[str, Any]:
    t = messages(lang)
    wf = rt.definitions.workflow(dsr.type)
    names = _handler_names(session)
    now = utcnow()
    today = now.astimezone(rt.settings.tz).date()
    history = []
    for e in repository.history(session, dsr.id):
        what = t["event_kinds"].get(e.kind, e.kind)
        if e.trigger:
            what = t["triggers"].get(e.trigger, e.trigger)
        detail = []
        for key in ("method", "reason_code", "method_used", "days"):
            value = e.detail.get(key)
            if value:
                shown = t["identity_methods"].get(value, value) if key == "method" else value
                detail.append((t["fields"].get(key, key), shown))
        if e.kind == "assigned":
            assignee = e.detail.get("assignee_id")
            shown_name = names.get(assignee, t["unassigned"]) if assignee else t["unassigned"]
            detail.append((t["section_assignment"], shown_name))
        to_state = (
            wf.states[e.to_state].label.for_language(lang)
            if e.to_state and e.to_state in wf.states
            else None
        )
        history.append(
            {
                "seq": e.seq,
                "at": e.at,
                "what": what,
                "to_state": to_state,
                "who": _actor(e.actor, names, t),
                "detail": detail,
            }
        )
    inbound = [
        inbound_service.describe(session, row)
        for row in inbound_repository.for_request(session, dsr.id)
    ]
    letters = repository.letters_to_requester(session, dsr, rt.internal_addresses)
    notes = [
        {"at": n.created_at, "who": names.get(n.handler_id, ""), "body": n.body}
        for n in repository.notes(session, dsr.id)
    ]
    closed = dsr.state in wf.terminal_states
    overdue = rt.is_overdue(dsr.type, dsr.state, dsr.due_at, now, dsr.art39_date)
    left = days_left(rt, dsr, today)
    # Read whatever the workflow: a request moved from a workflow with a fee keeps its payments.
    payments = repository.payments(session, dsr.id)
    context: dict[str, Any] = {
        "dsr": dsr,
        "wf": wf,
        "type_title": wf.title.for_language(lang),
        "state_label": wf.states[dsr.state].label.for_language(lang),
        "days_left": None if closed else left,
        "tone": "closed"
        if closed
        else "overdue"
        if overdue
        else "soon"
        if left <= SOON_DAYS
        else "ok",
        "history": history,
        "seen_seq": history[-1]["seq"] if history else 0,
        "inbound": inbound,
        "letters": letters,
        "notes": notes,
        "handlers": auth_repository.active_handlers(session),
        "assignee": names.get(dsr.assignee_id) if dsr.assignee_id else None,
        "actions": action_forms(rt, dsr, lang, t),
        "values": {},
        "errors": {},
        "failed_trigger": None,
        "stale": False,
        "changes": [],
        "package": _package_files(rt, session, dsr),
        "extension_days": _extension_room(dsr, wf) if not closed else 0,
        "fee_due": service.fee_due_jpy(rt, session, dsr, payments) if wf.fee else 0,
        "payments": payments,
    }
    session.rollback()
    return context


def _extension_room(dsr: Request, wf: Any) -> int:
    """How many more days the internal target may still be extended."""
    return max(0, wf.deadline.extension_max_days - dsr.extension_days)


def preview_context(
    rt: Runtime,
    dsr: Request,
    lang: str,
    trigger: str,
    fields: dict[str, Any],
    letter: LetterPreview,
    form: Mapping[str, Any],
) -> dict[str, Any]:
    t = messages(lang)
    wf = rt.definitions.workflow(dsr.type)
    shown = []
    for name, value in fields.items():
        label = t["fields"].get(name, name)
        if name == "method":
            value = t["identity_methods"].get(value, value)
        elif name == "method_used":
            value = t["disclosure_methods"].get(value, value)
        elif name == "reason_code" and value in rt.definitions.reasons:
            reason = rt.definitions.reasons[value]
            value = f"{reason.label.for_language(lang)} ({reason.article}, {value})"
        elif name == "withheld":
            value = "; ".join(f"{part['reason_code']}: {part['explanation']}" for part in value)
        shown.append((label, value))
    return {
        "dsr": dsr,
        "type_title": wf.title.for_language(lang),
        "state_label": wf.states[dsr.state].label.for_language(lang),
        "trigger": trigger,
        "trigger_label": t["triggers"].get(trigger, trigger),
        "fields": fields,
        "shown": shown,
        "letter": letter,
        "dest_label": wf.states[letter.dest].label.for_language(lang),
        "letter_language": t["language_names"].get(letter.language, letter.language),
        "expected_version": dsr.version,
        "seen_seq": form.get("seen_seq") or "",
    }


def inbox_page(rt: Runtime, session: Session, lang: str) -> dict[str, Any]:
    rows, total = inbound_repository.waiting(session, limit=200, offset=0)
    names = _handler_names(session)
    items = []
    for item, row in zip(inbound_service.describe_items(session, rows), rows, strict=True):
        items.append(
            {
                "item": item,
                "art39": rt.calendar.art39_date(item.received_at),
                "assignee": names.get(row.assignee_id) if row.assignee_id else None,
                "detected": rt.definitions.workflows[item.detected_type].title.for_language(lang)
                if item.detected_type in rt.definitions.workflows
                else None,
            }
        )
    session.rollback()
    return {"items": items, "total": total, "handlers": auth_repository.active_handlers(session)}


def message_context(
    rt: Runtime, session: Session, row: InboundMessage, lang: str
) -> dict[str, Any]:
    message = inbound_service.describe(session, row)
    names = _handler_names(session)
    context = {
        "message": message,
        "art39": rt.calendar.art39_date(message.received_at),
        "waiting": message.status in ("triage", "quarantined"),
        "workflows": list(rt.definitions.workflows.values()),
        "replies": list(triage.triage_replies(rt).values()),
        "assignee": names.get(row.assignee_id) if row.assignee_id else None,
        "values": {},
        "errors": {},
    }
    session.rollback()
    return context


# --------------------------------------------------------------------------- consoledata's parts
# Report figures, the CSV and the disclosure package are built by the consoledata work
# (dsrflow.reports, dsrflow.delivery); the console shows them once they are there.


def optional(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


def reports_context(
    rt: Runtime, session: Session, lang: str, start: date, end: date
) -> dict[str, Any]:
    reports = optional("dsrflow.reports.service")
    rows = totals = None
    if reports is not None and hasattr(reports, "monthly_figures"):
        figures = reports.monthly_figures(rt, session, start, end)
        rows, totals = list(figures.rows), list(figures.totals)
    session.rollback()
    titles = {wf.id: wf.title.for_language(lang) for wf in rt.definitions.workflows.values()}
    return {
        "start": start,
        "end": end,
        "rows": rows,
        "totals": totals,
        "titles": titles,
        "reasons": {code: r.label.for_language(lang) for code, r in rt.definitions.reasons.items()},
        "csv_available": reports is not None and hasattr(reports, "requests_csv"),
    }


def requests_csv(rt: Runtime, session: Session, start: date, end: date) -> str | None:
    reports = optional("dsrflow.reports.service")
    if reports is None or not hasattr(reports, "requests_csv"):
        return None
    text: str = reports.requests_csv(reports.request_rows(rt, session, start, end))
    session.rollback()
    return text


def _package_files(rt: Runtime, session: Session, dsr: Request) -> dict[str, Any] | None:
    packages = optional("dsrflow.packages.service")
    if packages is None or not hasattr(packages, "describe"):
        return None
    return {
        "packages": list(packages.describe(rt, session, dsr)),
        "may_attach": bool(packages.may_attach(rt, dsr)),
    }
