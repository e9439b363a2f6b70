"""Deadline sweeps: what reminders and escalations are due, queued once each; extensions.

A sweep is a pass over indexed queries, not a job per request. Each request is handled in its
own transaction: claimed (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite's write lock), its
due reminders computed, each queued under a unique key (request, kind, step, recipient) in the
outbox, committed. A rerun, a crash or a second scheduler never sends one twice, and an error on
one request is logged and skipped while the sweep goes on.
"""

from __future__ import annotations

import logging
import uuid
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from dsrflow.audit.chain import append_event
from dsrflow.db import read_session, utcnow
from dsrflow.deadlines import repository
from dsrflow.deadlines.schemas import PlannedMail, SweepReport
from dsrflow.errors import Invalid, NotFound
from dsrflow.inbound_mail import repository as inbox_repository
from dsrflow.outbound_mail import repository as mail_repository
from dsrflow.outbound_mail.outbox import OutgoingMail, Queued, enqueue
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


def plan(
    rt: Runtime,
    request: Request,
    now: datetime,
    ack_status: str | None = None,
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

    paused = request.state == AWAITING_STATE and request.type in rt.paused_types
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

    if request.state == IDENTITY_WAIT_STATE:
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

    if ack_status is not None:
        add(
            "acknowledgment_unsent",
            1,
            "acknowledgment_unsent",
            handlers,
            HANDLER_LANGUAGE,
            outbox_status=ack_status,
        )
    return planned


BATCH = 500


def next_step_at(rt: Runtime, request: Request, now: datetime) -> datetime | None:
    """The first moment after ``now`` at which ``plan`` has a step it did not have at ``now``;
    None when no step is ahead (closed, or a paused clock: a change wakes it again)."""
    wf = rt.definitions.workflow(request.type)
    if request.state in wf.terminal_states:
        return None
    send_at = wf.reminders.send_at
    ahead: list[datetime] = []
    due_day = request.due_at.astimezone(rt.settings.tz).date()
    if not (request.state == AWAITING_STATE and request.type in rt.paused_types):
        for days in wf.reminders.before_due_days:
            moment = _at(rt, due_day - timedelta(days), send_at)
            if now < moment <= request.due_at:
                ahead.append(moment)
        first_overdue = _at(rt, due_day + timedelta(1), send_at)
        if now < first_overdue:
            ahead.append(first_overdue)
        else:
            every = wf.reminders.overdue_every_days
            local_now = now.astimezone(rt.settings.tz)
            days_after = (local_now.date() - due_day).days - (local_now.time() < send_at)
            step = 1 + ((days_after - 1) // every + 1) * every
            ahead.append(_at(rt, due_day + timedelta(step), send_at))
    if request.state == IDENTITY_WAIT_STATE:
        wait = wf.identity_wait
        arrival_day = request.received_at.astimezone(rt.settings.tz).date()
        for days in (*wait.remind_requester_after_days, wait.escalate_after_days):
            moment = _at(rt, arrival_day + timedelta(days), send_at)
            if moment > now:
                ahead.append(moment)
    return min(ahead, default=None)


def _ack_overdue(rt: Runtime, request: Request, status: str | None, now: datetime) -> str | None:
    if status is None:
        return None
    grace = rt.definitions.workflow(request.type).reminders.acknowledgment_grace_minutes
    return status if request.received_at + timedelta(minutes=grace) <= now else None


def _plans(
    rt: Runtime,
    session: Session,
    requests: list[Request],
    unsent: dict[str, str],
    now: datetime,
    report: SweepReport | None,
) -> dict[str, list[PlannedMail]]:
    """What each request has to send that no earlier sweep queued: planned in memory, the keys
    checked in one query. A request whose planning fails is logged and left for the next sweep."""
    planned: dict[str, list[PlannedMail]] = {}
    for request in requests:
        try:
            ack = _ack_overdue(rt, request, unsent.get(request.id), now)
            assignee = requests_repository.assignee_email(session, request)
            planned[request.id] = plan(rt, request, now, ack, assignee)
        except Exception:
            if report is not None:
                report.errors += 1
            log.exception("deadline sweep failed for request %s; going on", request.id)
    taken = repository.taken_keys(
        session, [f"{rid}:{mail.key}" for rid, mails in planned.items() for mail in mails]
    )
    fresh: dict[str, list[PlannedMail]] = {}
    for rid, mails in planned.items():
        fresh[rid] = [m for m in mails if f"{rid}:{m.key}" not in taken]
        if report is not None:
            report.already_sent += len(mails) - len(fresh[rid])
    return fresh


def sweep(rt: Runtime, now: datetime | None = None, *, dry_run: bool = False) -> SweepReport:
    """One sweep as of ``now``: reminders before the due date, overdue escalations, identity
    waits and unsent acknowledgments. With ``dry_run`` nothing is written.

    It reads only the requests whose ``next_sweep_at`` has come (and acknowledgments still
    unsent past their grace), plans them in memory, checks their keys in one query per batch,
    and then claims only the requests that have something to send. When nothing is due it
    writes nothing at all.
    """
    now = now or utcnow()
    report = SweepReport()
    # The reads take no write lock (SQLite): a sweep with nothing to send writes nothing.
    with read_session(rt.db) as session:
        unsent = _unsent_acknowledgments(rt, session, now)
    after: tuple[datetime, str] | None = None
    extra = list(unsent)
    while True:
        with read_session(rt.db) as session:
            requests = repository.due_for_sweep(session, now, after, BATCH)
            if requests:
                after = (requests[-1].next_sweep_at, requests[-1].id)  # type: ignore[assignment]
            if extra:
                known = {r.id for r in requests}
                requests += [
                    r for r in repository.by_ids(session, extra[:BATCH]) if r.id not in known
                ]
                extra = extra[BATCH:]
            if not requests:
                return report
            fresh = _plans(rt, session, requests, unsent, now, report)
            # Leaving the block ends the read (closing keeps the rows loaded; a rollback would
            # expire them).
        if dry_run:
            report.planned += [mail for mails in fresh.values() for mail in mails]
        else:
            _queue_batch(rt, requests, fresh, unsent, now, report)


def _queue_batch(
    rt: Runtime,
    requests: list[Request],
    fresh: dict[str, list[PlannedMail]],
    unsent: dict[str, str],
    now: datetime,
    report: SweepReport,
) -> None:
    """Claim the requests that have something to send, queue it, and move every planned
    request's ``next_sweep_at`` on; one transaction for the batch."""
    sending = [rid for rid, mails in fresh.items() if mails]
    # Another sweeper may queue the same reminder between our read and our claim; the unique
    # key then refuses ours, and the batch is planned again (the key is taken by then).
    for attempt in range(3):
        if _try_batch(rt, requests, fresh, sending, unsent, now, report, last=attempt == 2):
            return


def _try_batch(
    rt: Runtime,
    requests: list[Request],
    fresh: dict[str, list[PlannedMail]],
    sending: list[str],
    unsent: dict[str, str],
    now: datetime,
    report: SweepReport,
    *,
    last: bool,
) -> bool:
    by_id = {r.id: r for r in requests}
    with Session(rt.db, expire_on_commit=False) as session:
        try:
            locked = repository.claim(session, sending)
            report.skipped_claimed += len(sending) - len(locked)
            # A request decided on since the read is planned again from its locked row; the
            # rest keep their plan (and its keys are checked again, under the lock).
            moved = [rid for rid, version in locked.items() if version != by_id[rid].version]
            for request in repository.by_ids(session, moved):
                by_id[request.id] = request
            claimed = [by_id[rid] for rid in locked]
            mails = _plans(rt, session, [by_id[rid] for rid in moved], unsent, now, None)
            kept = {rid: fresh[rid] for rid in locked if rid not in mails}
            taken = repository.taken_keys(
                session, [f"{rid}:{m.key}" for rid, planned in kept.items() for m in planned]
            )
            for rid, planned in kept.items():
                mails[rid] = [m for m in planned if f"{rid}:{m.key}" not in taken]
            queued = _queue(rt, session, claimed, mails)
            quiet = [r for r in requests if r.id in fresh and not fresh[r.id]]
            repository.move_next_sweep(
                session,
                [(r.id, r.version, next_step_at(rt, r, now)) for r in (*claimed, *quiet)],
            )
            session.commit()
            report.queued += queued
            report.planned += [mail for planned in mails.values() for mail in planned]
            return True
        except IntegrityError:
            session.rollback()
            if not last:
                log.info("deadline sweep: a batch raced another sweeper; planning it again")
                return False
            report.errors += len(sending) or 1
            log.exception("deadline sweep failed for a batch of %d requests", len(sending))
            return True
        except Exception:
            session.rollback()
            report.errors += len(sending) or 1
            log.exception("deadline sweep failed for a batch of %d requests", len(sending))
            return True


def handler_batch_context(
    rt: Runtime, items: list[tuple[Request, dict[str, object]]], language: str
) -> dict[str, Any]:
    """What a handlers' reminder lists: each request's line (reference, type, state, dates,
    link) with the step's own values (``days_overdue``, ``days_left``, ...), soonest due
    first."""
    tz = rt.settings.tz
    rows = []
    for request, extra in sorted(items, key=lambda item: (item[0].due_at, item[0].reference)):
        wf = rt.definitions.workflow(request.type)
        rows.append(
            {
                "reference": request.reference,
                "type_title": wf.title.for_language(language),
                "state_label": wf.states[request.state].label.for_language(language),
                "received_at_local": request.received_at.astimezone(tz).strftime("%Y-%m-%d %H:%M"),
                "due_on": request.due_at.astimezone(tz).date().isoformat(),
                "art39_on": request.art39_date.isoformat() if request.art39_date else None,
                "handler_url": f"{rt.settings.base_url}/api/v1/requests/{request.id}",
                **extra,
            }
        )
    return {
        "company_name": rt.definitions.company.name.for_language(language),
        "handler_email": rt.settings.handler_email,
        "requests": rows,
    }


def _queue(
    rt: Runtime, session: Session, claimed: list[Request], mails: dict[str, list[PlannedMail]]
) -> int:
    """Queue what the claimed requests have to send: a requester's reminder as its own letter;
    everything for the company's mailboxes as one mail per recipient and letter, listing the
    requests. Each reminder's key is recorded, so none is ever sent twice."""
    by_id = {r.id: r for r in claimed}
    grouped: dict[tuple[str, str, str], list[tuple[Request, PlannedMail]]] = {}
    keys: list[tuple[str, str, Queued | None]] = []
    for rid, planned in mails.items():
        request = by_id[rid]
        for mail in planned:
            # Everything not for the requester (or their agent) is for the desk: the handlers'
            # mailbox, the escalation address, an assignee; each gets one mail listing requests.
            if mail.recipient != (request.agent_email or request.requester_email):
                grouped.setdefault((mail.recipient, mail.letter, mail.language), []).append(
                    (request, mail)
                )
                continue
            context = {**letter_context(rt, request, language=mail.language), **mail.extra}
            row = queue_letter(
                rt,
                session,
                request,
                mail.key,
                mail.letter,
                context,
                recipient=mail.recipient,
                language=mail.language,
            )
            keys.append((rid, f"{rid}:{mail.key}", row))
    for (recipient, letter, language), items in grouped.items():
        only = items[0][0] if len(items) == 1 else None
        context = handler_batch_context(
            rt, [(request, mail.extra) for request, mail in items], language
        )
        rendered = rt.letters.render(letter, language, context)
        row = enqueue(
            session,
            OutgoingMail(
                dedup_key=f"sweep:{letter}:{recipient}:{uuid.uuid4().hex}",
                letter=letter,
                recipient=recipient,
                subject=rendered.subject,
                body=rendered.body,
                request_id=only.id if only else None,
                reference=only.reference if only else None,
            ),
            rt.mail_domain,
        )
        keys += [(request.id, f"{request.id}:{mail.key}", row) for request, mail in items]
    session.flush()
    repository.record_reminders(
        session, [(rid, key, row.id if row else None) for rid, key, row in keys]
    )
    return len(keys)


def _unsent_acknowledgments(rt: Runtime, session: Session, now: datetime) -> dict[str, str]:
    """Requests whose acknowledgment is still unsent past the shortest grace, and whose
    handlers were not told yet: request id -> outbox status."""
    workflows = rt.definitions.workflows.values()
    grace = min(wf.reminders.acknowledgment_grace_minutes for wf in workflows)
    return dict(repository.unsent_acknowledgments(session, now - timedelta(minutes=grace)))


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
