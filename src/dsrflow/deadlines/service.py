"""Deadline sweeps: what reminders and escalations are due, queued once each; extensions.

A sweep costs what is newly due, not what is open. It reads the requests whose
``next_sweep_at`` has come (plain rows, in pages), plans each in memory (the steps of requests
that share a workflow, state and dates are computed once), checks the planned keys in one query
per page, and then, in one transaction for the run, claims only the requests that have
something to send and are unchanged since the read, moving their ``next_sweep_at`` on in the
same statement (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite's write lock), checks their
keys again under the lock, queues the mail and records each key (request, kind, step,
recipient), and moves the watermark of the rest. A request changed since the read stays due
for the next sweep. A rerun, a crash or a
second scheduler never sends one twice; an error planning one request is logged and skipped
while the sweep goes on. Mail for the company's mailboxes is one mail per recipient and letter
per run (up to ``RUN_REQUESTS`` requests), listing the requests.
"""

from __future__ import annotations

import logging
import uuid
from datetime import date, datetime, time, timedelta
from types import SimpleNamespace
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from dsrflow.audit.chain import append_event
from dsrflow.db import read_session, utcnow
from dsrflow.deadlines import art39, repository
from dsrflow.deadlines.repository import SweepRow
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
# Rows read per page; requests per write transaction (and per listing mail).
BATCH = 2_000
RUN_REQUESTS = 20_000


# (kind, step, letter, audience, language or None for the request's, extra); the audience is
# resolved per request: "desk" (the handlers' mailbox and the assignee), "handlers" (and the
# escalation address), "alert" (the handlers' mailbox), "requester".
Step = tuple[str, str, str, str, str | None, dict[str, object]]
StepCache = dict[tuple[Any, ...], list[Step]]


def _at(rt: Runtime, day: date, moment: time) -> datetime:
    return datetime.combine(day, moment, tzinfo=rt.settings.tz)


def _steps_key(rt: Runtime, request: SweepRow) -> tuple[Any, ...]:
    # Everything _steps reads: requests that share these share their steps (the day of
    # arrival counts only while the identity wait runs).
    arrival_day = (
        request.received_at.astimezone(rt.settings.tz).date()
        if request.state == IDENTITY_WAIT_STATE
        else None
    )
    return (request.type, request.state, request.due_at, arrival_day, request.art39_date)


def _steps(rt: Runtime, request: SweepRow, now: datetime) -> list[Step]:
    """The steps due for ``request`` at ``now``, whoever receives them."""
    wf = rt.definitions.workflow(request.type)
    if request.state in wf.terminal_states:
        return []
    tz = rt.settings.tz
    send_at = wf.reminders.send_at
    steps: list[Step] = []
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
            step = f"{due_day.isoformat()}:{days_left}"
            extra: dict[str, object] = {"days_left": days_left}
            steps.append(("due", step, wf.letters["due_reminder"], "desk", HANDLER_LANGUAGE, extra))
    elif not paused:
        local_now = now.astimezone(tz)
        days_after = (local_now.date() - due_day).days - (1 if local_now.time() < send_at else 0)
        if days_after >= 1:
            every = wf.reminders.overdue_every_days
            overdue = 1 + ((days_after - 1) // every) * every
            steps.append(
                (
                    "overdue",
                    f"{due_day.isoformat()}:{overdue}",
                    wf.letters["overdue"],
                    "handlers",
                    HANDLER_LANGUAGE,
                    {"days_overdue": overdue},
                )
            )

    if request.state == IDENTITY_WAIT_STATE:
        wait = wf.identity_wait
        arrival_day = request.received_at.astimezone(tz).date()
        reached = [
            d
            for d in wait.remind_requester_after_days
            if _at(rt, arrival_day + timedelta(d), send_at) <= now
        ]
        if reached:
            letter = wf.letters["identity_reminder"]
            steps.append(("identity", str(max(reached)), letter, "requester", None, {}))
        if _at(rt, arrival_day + timedelta(wait.escalate_after_days), send_at) <= now:
            steps.append(
                (
                    "identity_escalation",
                    str(wait.escalate_after_days),
                    wf.letters["identity_escalation"],
                    "desk",
                    HANDLER_LANGUAGE,
                    {"days_waiting": wait.escalate_after_days},
                )
            )

    # Whatever due_at, an extension or a pause says: before the date, the desk; once it has
    # come, the escalation address too.
    alert_left = art39.alert_days_left(rt, wf, request.art39_date, now)
    if alert_left is not None:
        steps.append(
            (
                art39.KIND,
                now.astimezone(tz).date().isoformat(),
                wf.letters[art39.KIND],
                "alert" if alert_left > 0 else "alert_all",
                HANDLER_LANGUAGE,
                {"art39_days_left": alert_left},
            )
        )
    return steps


def plan(
    rt: Runtime,
    request: SweepRow,
    now: datetime,
    ack_status: str | None = None,
    assignee_email: str | None = None,
    *,
    cache: StepCache | None = None,
) -> list[PlannedMail]:
    """The reminders due for ``request`` at ``now`` (pure: reads nothing, writes nothing).
    The desk's reminders also go to ``assignee_email``, the handler the request is given to.
    ``cache`` keeps the steps of requests that share a workflow, state and dates.

    Only the latest step of each series is planned: after an outage the handlers get one
    reminder that says where things stand, not a burst of stale ones.
    """
    if cache is None:
        steps = _steps(rt, request, now)
    else:
        key = _steps_key(rt, request)
        steps = cache.get(key)  # type: ignore[assignment]
        if steps is None:
            steps = cache[key] = _steps(rt, request, now)
    if not steps and ack_status is None:
        return []
    handler = rt.settings.handler_email
    handlers = [handler]
    if rt.settings.escalation_email:
        handlers.append(rt.settings.escalation_email)
    assignee = [assignee_email] if assignee_email and assignee_email not in handlers else []
    audiences = {
        "desk": [handler, *assignee],
        "handlers": [*handlers, *assignee],
        "alert": [handler],
        "alert_all": handlers,
        "requester": [request.agent_email or request.requester_email],
    }
    if ack_status is not None:
        wf = rt.definitions.workflow(request.type)
        extra: dict[str, object] = {"outbox_status": ack_status}
        steps = [
            *steps,
            (
                "acknowledgment_unsent",
                "1",
                wf.letters["acknowledgment_unsent"],
                "handlers",
                HANDLER_LANGUAGE,
                extra,
            ),
        ]
    return [
        PlannedMail(
            request.reference, kind, step, recipient, letter, language or request.language, extra
        )
        for kind, step, letter, audience, language, extra in steps
        for recipient in audiences[audience]
    ]


def next_step_at(rt: Runtime, request: SweepRow, now: datetime) -> datetime | None:
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
    alert = art39.next_alert_at(rt, wf, request.art39_date, now)
    if alert is not None:
        ahead.append(alert)
    return min(ahead, default=None)


class _Planner:
    """Plans for one sweep: the steps and next times of requests that share a workflow,
    state and dates are computed once."""

    def __init__(self, rt: Runtime, now: datetime, unsent: dict[str, str]) -> None:
        self.rt, self.now, self.unsent = rt, now, unsent
        self.steps: StepCache = {}
        self.nexts: dict[tuple[Any, ...], datetime | None] = {}
        self.graces = {
            wf.id: timedelta(minutes=wf.reminders.acknowledgment_grace_minutes)
            for wf in rt.definitions.workflows.values()
        }

    def next_at(self, request: SweepRow) -> datetime | None:
        key = _steps_key(self.rt, request)
        if key not in self.nexts:
            self.nexts[key] = next_step_at(self.rt, request, self.now)
        return self.nexts[key]

    def plans(
        self, session: Session, requests: list[SweepRow], report: SweepReport | None
    ) -> dict[str, list[PlannedMail]]:
        """What each request has to send that no earlier sweep queued: planned in memory, the
        keys checked in one query per chunk. A request whose planning fails is logged and left
        for the next sweep."""
        assigned = {r.assignee_id for r in requests if r.assignee_id is not None}
        assignees = repository.assignee_emails(session, assigned) if assigned else {}
        planned: dict[str, list[PlannedMail]] = {}
        for request in requests:
            try:
                status = self.unsent.get(request.id)
                if (
                    status is not None
                    and request.received_at + self.graces[request.type] > self.now
                ):
                    status = None
                assignee = assignees.get(request.assignee_id) if request.assignee_id else None
                planned[request.id] = plan(
                    self.rt, request, self.now, status, assignee, cache=self.steps
                )
            except Exception:
                if report is not None:
                    report.errors += 1
                log.exception("deadline sweep failed for request %s; going on", request.id)
        taken = repository.taken_keys(
            session, [f"{rid}:{mail.key}" for rid, mails in planned.items() for mail in mails]
        )
        if not taken:
            return planned
        fresh: dict[str, list[PlannedMail]] = {}
        for rid, mails in planned.items():
            fresh[rid] = [m for m in mails if f"{rid}:{m.key}" not in taken]
            if report is not None:
                report.already_sent += len(mails) - len(fresh[rid])
        return fresh


def sweep(rt: Runtime, now: datetime | None = None, *, dry_run: bool = False) -> SweepReport:
    """One sweep as of ``now``: reminders before the due date, overdue escalations, identity
    waits, unsent acknowledgments and the daily Art. 39 alerts. With ``dry_run`` nothing is
    written.

    It reads only the requests whose ``next_sweep_at`` has come (and acknowledgments still
    unsent past their grace), plans them in memory, checks their keys in one query per page,
    and then claims only the requests that have something to send. When nothing is due it
    writes nothing at all.
    """
    now = now or utcnow()
    report = SweepReport()
    # The reads take no write lock (SQLite): a sweep with nothing to send writes nothing.
    with read_session(rt.db) as session:
        unsent = _unsent_acknowledgments(rt, session, now)
    planner = _Planner(rt, now, unsent)
    after: tuple[datetime, str] | None = None
    extra = list(unsent)
    run: dict[str, tuple[SweepRow, list[PlannedMail]]] = {}
    while True:
        with read_session(rt.db) as session:
            requests = repository.due_for_sweep(session, now, after, BATCH)
            if requests:
                after = (requests[-1].next_sweep_at, requests[-1].id)  # type: ignore[assignment]
            if extra:
                known = {r.id for r in requests}
                requests += [
                    r
                    for r in repository.rows_by_ids(session, extra[:BATCH])
                    if r.id not in known and r.id not in run
                ]
                extra = extra[BATCH:]
            if requests:
                fresh = planner.plans(session, requests, report)
        if not requests:
            break
        by_id = {r.id: r for r in requests}
        for rid, mails in fresh.items():
            run[rid] = (by_id[rid], mails)
        if dry_run:
            report.planned += [mail for mails in fresh.values() for mail in mails]
            run.clear()
        elif len(run) >= RUN_REQUESTS:
            _queue_run(rt, planner, run, report)
            run = {}
    if run:
        _queue_run(rt, planner, run, report)
    return report


def _queue_run(
    rt: Runtime,
    planner: _Planner,
    run: dict[str, tuple[SweepRow, list[PlannedMail]]],
    report: SweepReport,
) -> None:
    """Claim the requests that have something to send, queue it, and move every planned
    request's ``next_sweep_at`` on; one transaction."""
    # Another sweeper may queue the same reminder between our read and our claim; the unique
    # key then refuses ours, and the run is planned again (the key is taken by then).
    for attempt in range(3):
        if _try_run(rt, planner, run, report, last=attempt == 2):
            return


def _try_run(
    rt: Runtime,
    planner: _Planner,
    run: dict[str, tuple[SweepRow, list[PlannedMail]]],
    report: SweepReport,
    *,
    last: bool,
) -> bool:
    sending = [rid for rid, (_, mails) in run.items() if mails]
    with Session(rt.db, expire_on_commit=False) as session:
        try:
            # The claim moves each claimed request's next sweep on; a request decided on
            # since the read is not claimed and stays due for the next sweep.
            locked = repository.claim(
                session,
                [(rid, run[rid][0].version, planner.next_at(run[rid][0])) for rid in sending],
            )
            skipped = len(sending) - len(locked)
            kept = {rid: run[rid][1] for rid in sending if rid in locked}
            # The keys are checked again under the lock: another sweeper may have queued them.
            taken = repository.taken_keys(
                session, [f"{rid}:{m.key}" for rid, planned in kept.items() for m in planned]
            )
            mails = {
                rid: [m for m in planned if f"{rid}:{m.key}" not in taken]
                for rid, planned in kept.items()
            }
            queued = _queue(rt, session, [run[rid][0] for rid in kept], mails)
            quiet = [request for request, planned in run.values() if not planned]
            repository.move_next_sweep(
                session, [(r.id, r.version, planner.next_at(r)) for r in quiet]
            )
            session.commit()
            report.skipped_claimed += skipped
            report.queued += queued
            report.planned += [mail for planned in mails.values() for mail in planned]
            return True
        except IntegrityError:
            session.rollback()
            if not last:
                log.info("deadline sweep: a run raced another sweeper; planning it again")
                return False
            report.errors += len(sending) or 1
            log.exception("deadline sweep failed for a run of %d requests", len(sending))
            return True
        except Exception:
            session.rollback()
            report.errors += len(sending) or 1
            log.exception("deadline sweep failed for a run of %d requests", len(sending))
            return True


def handler_batch_context(
    rt: Runtime, items: list[tuple[SweepRow, dict[str, object]]], language: str
) -> dict[str, Any]:
    """What a handlers' reminder lists: each request's line (reference, type, state, dates,
    link) with the step's own values (``days_overdue``, ``days_left``, ...), soonest due
    first."""
    tz = rt.settings.tz
    labels: dict[tuple[str, str], tuple[str, str]] = {}
    days: dict[datetime, str] = {}
    base = f"{rt.settings.base_url}/api/v1/requests/"
    rows = []
    for request, extra in sorted(items, key=lambda item: (item[0].due_at, item[0].reference)):
        label = labels.get((request.type, request.state))
        if label is None:
            wf = rt.definitions.workflow(request.type)
            label = labels[(request.type, request.state)] = (
                wf.title.for_language(language),
                wf.states[request.state].label.for_language(language),
            )
        due_on = days.get(request.due_at)
        if due_on is None:
            due_on = days[request.due_at] = request.due_at.astimezone(tz).date().isoformat()
        # Attributes, not keys: the templates read ``r.reference``, which Jinja tries as an
        # attribute first (a dict costs an exception per lookup).
        rows.append(
            SimpleNamespace(
                reference=request.reference,
                type_title=label[0],
                state_label=label[1],
                received_at_local=request.received_at.astimezone(tz).isoformat(" ", "minutes")[:16],
                due_on=due_on,
                art39_on=request.art39_date.isoformat() if request.art39_date else None,
                handler_url=base + request.id,
                **extra,
            )
        )
    return {
        "company_name": rt.definitions.company.name.for_language(language),
        "handler_email": rt.settings.handler_email,
        "requests": rows,
    }


def _queue(
    rt: Runtime, session: Session, claimed: list[SweepRow], mails: dict[str, list[PlannedMail]]
) -> int:
    """Queue what the claimed requests have to send: a requester's reminder as its own letter;
    everything for the company's mailboxes as one mail per recipient and letter, listing the
    requests (rendered once for recipients whose lists are the same). Each reminder's key is
    recorded, so none is ever sent twice."""
    by_id = {r.id: r for r in claimed}
    grouped: dict[tuple[str, str, str], list[tuple[SweepRow, PlannedMail]]] = {}
    own: list[tuple[str, PlannedMail]] = []
    for rid, planned in mails.items():
        request = by_id[rid]
        for mail in planned:
            # Everything not for the requester (or their agent) is for the desk: the handlers'
            # mailbox, the escalation address, an assignee; each gets one mail listing requests.
            if mail.recipient != (request.agent_email or request.requester_email):
                grouped.setdefault((mail.recipient, mail.letter, mail.language), []).append(
                    (request, mail)
                )
            else:
                own.append((rid, mail))
    # Each outbox row with the (request id, reminder key) pairs it carries.
    carried: list[tuple[Queued | None, list[tuple[str, str]]]] = []
    if own:
        # A requester's letter shows more of the request than the sweep reads.
        full = {r.id: r for r in repository.by_ids(session, sorted({rid for rid, _ in own}))}
        for rid, mail in own:
            context = {**letter_context(rt, full[rid], language=mail.language), **mail.extra}
            row = queue_letter(
                rt,
                session,
                full[rid],
                mail.key,
                mail.letter,
                context,
                recipient=mail.recipient,
                language=mail.language,
            )
            carried.append((row, [(rid, f"{rid}:{mail.key}")]))
    rendered_for: dict[tuple[str, str, tuple[str, ...]], Any] = {}
    for (recipient, letter, language), items in grouped.items():
        only = items[0][0] if len(items) == 1 else None
        listed = (letter, language, tuple(f"{r.id}:{m.kind}:{m.step}" for r, m in items))
        rendered = rendered_for.get(listed)
        if rendered is None:
            context = handler_batch_context(rt, [(r, m.extra) for r, m in items], language)
            rendered = rendered_for[listed] = rt.letters.render(letter, language, context)
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
            new_key=True,  # a fresh uuid: no row can hold it
        )
        carried.append((row, [(r.id, f"{r.id}:{m.key}") for r, m in items]))
    keys = [
        (rid, key, row.id if row is not None else None)
        for row, pairs in carried
        for rid, key in pairs
    ]
    repository.record_reminders(session, keys)
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
