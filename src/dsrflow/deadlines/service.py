"""Deadline sweeps: what reminders and escalations are due, queued once each; extensions.

A sweep is a pass over indexed queries, not a job per request. Each request is handled in its
own transaction: claimed (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite's write lock), its
due reminders computed, each queued under a unique key (request, kind, step, recipient) in the
outbox, committed. A rerun, a crash or a second scheduler never sends one twice, and an error on
one request is logged and skipped while the sweep goes on.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlmodel import Session

from dsrflow.audit.chain import append_event
from dsrflow.db import utcnow
from dsrflow.deadlines import repository
from dsrflow.deadlines.schemas import PlannedMail, SweepReport
from dsrflow.errors import Invalid, NotFound
from dsrflow.inbound_mail import repository as inbox_repository
from dsrflow.outbound_mail import repository as mail_repository
from dsrflow.outbound_mail.outbox import OutgoingMail, enqueue
from dsrflow.requests import repository as requests_repository
from dsrflow.requests.letters import HANDLER_LANGUAGE, letter_context, queue_letter
from dsrflow.requests.models import Request
from dsrflow.requests.service import conflict
from dsrflow.runtime import Runtime
from dsrflow.workflow.definitions import AWAITING_STATE, WorkflowDef

log = logging.getLogger(__name__)
IDENTITY_WAIT_STATE = "received"
DIGEST_DUE_SOON = timedelta(days=3)


def _at(rt: Runtime, day: date, moment: time) -> datetime:
    return datetime.combine(day, moment, tzinfo=rt.settings.tz)


DEADLINES = "deadlines"
IDENTITY = "identity"
ALL_SERIES = frozenset({DEADLINES, IDENTITY})


def plan(
    rt: Runtime,
    request: Request,
    now: datetime,
    ack_status: str | None = None,
    series: frozenset[str] = ALL_SERIES,
    assignee_email: str | None = None,
) -> list[PlannedMail]:
    """The reminders due for ``request`` at ``now`` (pure: reads nothing, writes nothing).
    The desk's reminders also go to ``assignee_email``, the handler the request is given to.

    Only the latest step of each series is planned: after an outage the handlers get one
    reminder that says where things stand, not a burst of stale ones.
    """
    wf = rt.definitions.workflow(request.type)
    if request.state in wf.terminal_states:
        return []
    tz = rt.settings.tz
    send_at = wf.reminders.send_at
    handlers = [rt.settings.handler_email]
    if rt.settings.escalation_email:
        handlers.append(rt.settings.escalation_email)
    assignee = [assignee_email] if assignee_email and assignee_email not in handlers else []
    handlers += assignee
    desk = [handlers[0], *assignee]
    planned: list[PlannedMail] = []

    def add(
        kind: str,
        step: int | str,
        letter_key: str,
        recipients: list[str],
        language: str,
        **extra: object,
    ) -> None:
        for recipient in recipients:
            planned.append(
                PlannedMail(
                    request.reference,
                    kind,
                    str(step),
                    recipient,
                    wf.letters[letter_key],
                    language,
                    extra,
                )
            )

    paused = (
        request.state == AWAITING_STATE and request.type in rt.paused_types
    ) or DEADLINES not in series
    due_day = request.due_at.astimezone(tz).date()
    if not paused and now <= request.due_at:
        reached = [
            d
            for d in wf.reminders.before_due_days
            if _at(rt, due_day - timedelta(d), send_at) <= now
        ]
        if reached:
            days_left = min(reached)
            # The due date is part of the step: after an extension or a pause the new date
            # gets its own reminders.
            add(
                "due",
                f"{due_day.isoformat()}:{days_left}",
                "due_reminder",
                desk,
                HANDLER_LANGUAGE,
                days_left=days_left,
            )
    elif not paused:
        local_now = now.astimezone(tz)
        days_after = (local_now.date() - due_day).days - (1 if local_now.time() < send_at else 0)
        if days_after >= 1:
            every = wf.reminders.overdue_every_days
            step = 1 + ((days_after - 1) // every) * every
            add(
                "overdue",
                f"{due_day.isoformat()}:{step}",
                "overdue",
                handlers,
                HANDLER_LANGUAGE,
                days_overdue=step,
            )

    if request.state == IDENTITY_WAIT_STATE and IDENTITY in series:
        wait = wf.identity_wait
        arrival_day = request.received_at.astimezone(tz).date()
        reached = [
            d
            for d in wait.remind_requester_after_days
            if _at(rt, arrival_day + timedelta(d), send_at) <= now
        ]
        requester = request.agent_email or request.requester_email
        if reached:
            add("identity", max(reached), "identity_reminder", [requester], request.language)
        if _at(rt, arrival_day + timedelta(wait.escalate_after_days), send_at) <= now:
            add(
                "identity_escalation",
                wait.escalate_after_days,
                "identity_escalation",
                desk,
                HANDLER_LANGUAGE,
                days_waiting=wait.escalate_after_days,
            )

    if ack_status is not None and DEADLINES in series:
        add(
            "acknowledgment_unsent",
            1,
            "acknowledgment_unsent",
            handlers,
            HANDLER_LANGUAGE,
            outbox_status=ack_status,
        )
    return planned


def _candidates(rt: Runtime, session: Session, now: datetime) -> tuple[list[str], dict[str, str]]:
    workflows = list(rt.definitions.workflows.values())
    lead = max((max(wf.reminders.before_due_days, default=0) for wf in workflows), default=0)
    ids = repository.due_by(session, rt.open_states, now + timedelta(days=lead + 1))
    first_wait = min(
        (min(wf.identity_wait.remind_requester_after_days, default=365) for wf in workflows),
        default=365,
    )
    ids += repository.unverified_since(
        session, IDENTITY_WAIT_STATE, now - timedelta(days=first_wait - 1)
    )
    grace = min(wf.reminders.acknowledgment_grace_minutes for wf in workflows)
    unsent = dict(
        mail_repository.undelivered(session, "acknowledgment", now - timedelta(minutes=grace))
    )
    return list(dict.fromkeys([*ids, *unsent])), unsent


def _ack_overdue(rt: Runtime, request: Request, status: str | None, now: datetime) -> str | None:
    if status is None:
        return None
    grace = rt.definitions.workflow(request.type).reminders.acknowledgment_grace_minutes
    return status if request.received_at + timedelta(minutes=grace) <= now else None


def sweep(
    rt: Runtime,
    now: datetime | None = None,
    *,
    dry_run: bool = False,
    series: frozenset[str] = ALL_SERIES,
) -> SweepReport:
    """One sweep as of ``now``: reminders, overdue escalations and unsent acknowledgments
    (series ``deadlines``), identity waits (series ``identity``). With ``dry_run`` nothing is
    written."""
    now = now or utcnow()
    report = SweepReport()
    with Session(rt.db) as session:
        ids, unsent = _candidates(rt, session, now)
        session.rollback()
    for request_id in ids:
        with Session(rt.db, expire_on_commit=False) as session:
            try:
                request = repository.claim(session, request_id)
                if request is None:
                    report.skipped_claimed += 1
                    continue
                ack = _ack_overdue(rt, request, unsent.get(request_id), now)
                assignee = requests_repository.assignee_email(session, request)
                for mail in plan(rt, request, now, ack, series, assignee):
                    if mail_repository.dedup_key_taken(session, f"{request.id}:{mail.key}"):
                        report.already_sent += 1
                        continue
                    report.planned.append(mail)
                    if not dry_run:
                        context = {
                            **letter_context(rt, request, language=mail.language),
                            **mail.extra,
                        }
                        queue_letter(
                            rt,
                            session,
                            request,
                            mail.key,
                            mail.letter,
                            context,
                            recipient=mail.recipient,
                            language=mail.language,
                        )
                        report.queued += 1
                if dry_run:
                    session.rollback()
                else:
                    session.commit()
            except Exception:
                session.rollback()
                report.errors += 1
                log.exception("deadline sweep failed for request %s; going on", request_id)
    return report


def _digest_row(rt: Runtime, request: Request) -> dict[str, str]:
    wf = rt.definitions.workflow(request.type)
    return {
        "reference": request.reference,
        "due_on": request.due_at.astimezone(rt.settings.tz).date().isoformat(),
        "type_title": wf.title.for_language(HANDLER_LANGUAGE),
        "state_label": wf.states[request.state].label.for_language(HANDLER_LANGUAGE),
    }


def digest(rt: Runtime, now: datetime | None = None, *, dry_run: bool = False) -> SweepReport:
    """The daily digest to the handlers' mailbox, once per local day."""
    now = now or utcnow()
    local = now.astimezone(rt.settings.tz)
    today = local.date()
    report = SweepReport()
    if local.time() < min(wf.reminders.send_at for wf in rt.definitions.workflows.values()):
        return report  # not yet: the digest goes out at the reminders' hour
    with Session(rt.db) as session:
        key = f"digest:{today.isoformat()}"
        if mail_repository.dedup_key_taken(session, key):
            report.already_sent += 1
            return report
        open_requests = repository.open_requests(session, rt.open_states)
        context: dict[str, Any] = {
            "today": today.isoformat(),
            "new": [
                _digest_row(rt, r)
                for r in repository.received_since(session, now - timedelta(days=1))
            ],
            "overdue": [_digest_row(rt, r) for r in open_requests if r.due_at < now],
            "due_soon": [
                _digest_row(rt, r)
                for r in open_requests
                if now <= r.due_at <= now + DIGEST_DUE_SOON
            ],
            "awaiting": [_digest_row(rt, r) for r in open_requests if r.state == AWAITING_STATE],
            "queue_url": f"{rt.settings.base_url}/console/",
            "inbox_waiting": inbox_repository.waiting_count(session),
            "inbox_url": f"{rt.settings.base_url}/api/v1/inbox?status=triage",
        }
        mail = PlannedMail(
            "", "digest", today.isoformat(), rt.settings.handler_email, "digest", HANDLER_LANGUAGE
        )
        report.planned.append(mail)
        if dry_run:
            return report
        rendered = rt.letters.render("digest", HANDLER_LANGUAGE, context)
        if enqueue(
            session,
            OutgoingMail(
                dedup_key=key,
                letter="digest",
                recipient=mail.recipient,
                subject=rendered.subject,
                body=rendered.body,
            ),
            rt.mail_domain,
        ):
            report.queued += 1
        session.commit()
    return report


def past_art39(rt: Runtime, request: Request, due_at: datetime) -> bool:
    """Whether a target lands on or after the request's Art. 39 date."""
    return request.art39_date is not None and rt.calendar.local_date(due_at) >= request.art39_date


def extend(
    rt: Runtime,
    session: Session,
    request_id: str,
    *,
    days: int,
    reason: str,
    actor: str,
    expected_version: int | None = None,
    confirm_past_art39: bool = False,
) -> Request:
    """Move the internal target date by ``days`` (counted as the workflow counts), where the
    workflow allows it; audited, and the requester is told why. The Art. 39 date stays."""
    request = requests_repository.lock(session, request_id)
    if request is None:
        raise NotFound("No such request.")
    wf: WorkflowDef = rt.definitions.workflow(request.type)
    allowed = rt.engine.allowed_triggers(request.type, request.state)
    if expected_version is not None and expected_version != request.version:
        raise conflict(
            f"expected version {expected_version}, but the request is at version {request.version}",
            request,
            allowed,
        )
    if request.state in wf.terminal_states:
        raise conflict(f"the request is closed ('{request.state}')", request, allowed)
    room = wf.deadline.extension_max_days - request.extension_days
    if room <= 0:
        raise Invalid({"days": f"no (further) extension is allowed for a {wf.id} request"})
    if days > room:
        raise Invalid({"days": f"at most {room} more days may be added"})
    if not reason.strip():
        raise Invalid({"reason": "must not be empty"})
    cal = rt.calendar
    previous = request.due_at
    due_at = cal.end_of(cal.add_days(cal.local_date(previous), days, wf.deadline.counting))
    if past_art39(rt, request, due_at) and not confirm_past_art39:
        raise Invalid(
            {
                "confirm_past_art39": f"the new target is on or after the Art. 39 date "
                f"({request.art39_date}), when the requester may sue; send true to confirm"
            }
        )
    now = utcnow()
    values = {"due_at": due_at, "extension_days": request.extension_days + days, "updated_at": now}
    if not requests_repository.update_if_version(session, request.id, request.version, values):
        session.rollback()
        raise conflict("the request changed meanwhile", request, allowed)
    append_event(
        session,
        request.id,
        kind="deadline_extended",
        actor=actor,
        at=now,
        detail={
            "days": days,
            "reason": reason,
            "previous_due_at": previous.isoformat(),
            "due_at": due_at.isoformat(),
            **({"confirmed_past_art39": True} if past_art39(rt, request, due_at) else {}),
        },
    )
    session.refresh(request)
    context = {**letter_context(rt, request), "reason": reason}
    queue_letter(
        rt,
        session,
        request,
        f"v{request.version}:deadline_extended",
        wf.letters["deadline_extended"],
        context,
    )
    session.commit()
    return request
