"""The daily Art. 39 alert: every open request whose Art. 39 date is near or has come.

Independent of ``due_at``, of any extension and of any pause: the date from which the requester
may sue (Art. 39(1)) never moves, so the handlers hear of it whatever the internal target says.
One alert per request and local day, from the reminders' hour, under a dedup key in the outbox
(so a rerun, a restart or a second scheduler sends nothing twice).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlmodel import Session

from dsrflow.db import utcnow
from dsrflow.deadlines.schemas import PlannedMail, SweepReport
from dsrflow.outbound_mail import repository as mail_repository
from dsrflow.requests import repository as requests_repository
from dsrflow.requests.letters import HANDLER_LANGUAGE, letter_context, queue_letter
from dsrflow.runtime import Runtime

log = logging.getLogger(__name__)
KIND = "art39_alert"


def art39_alerts(rt: Runtime, now: datetime | None = None, *, dry_run: bool = False) -> SweepReport:
    """Queue today's Art. 39 alerts to the handlers; with ``dry_run`` nothing is written."""
    now = now or utcnow()
    today = now.astimezone(rt.settings.tz).date()
    report = SweepReport()
    covered = [wf for wf in rt.definitions.workflows.values() if wf.deadline.art39]
    if not covered:
        return report
    if now.astimezone(rt.settings.tz).time() < min(wf.reminders.send_at for wf in covered):
        return report  # not yet: the alerts go out at the reminders' hour
    lead = max(wf.reminders.art39_alert_days for wf in covered)
    with Session(rt.db) as session:
        ids = requests_repository.open_with_art39_by(
            session, rt.open_states, today + timedelta(days=lead)
        )
        session.rollback()
    recipients = [rt.settings.handler_email]
    if rt.settings.escalation_email:
        recipients.append(rt.settings.escalation_email)
    for request_id in ids:
        with Session(rt.db, expire_on_commit=False) as session:
            try:
                # The row lock first, so that two sweepers never queue the same alert.
                request = (
                    requests_repository.get(session, request_id)
                    if dry_run
                    else requests_repository.lock(session, request_id)
                )
                if request is None or request.art39_date is None:
                    continue
                wf = rt.definitions.workflow(request.type)
                days_left = (request.art39_date - today).days
                if request.state in wf.terminal_states or days_left > (
                    wf.reminders.art39_alert_days
                ):
                    continue
                # Before the date, the desk; once it has come, the escalation address too.
                for recipient in recipients if days_left <= 0 else recipients[:1]:
                    mail = PlannedMail(
                        request.reference,
                        KIND,
                        today.isoformat(),
                        recipient,
                        wf.letters[KIND],
                        HANDLER_LANGUAGE,
                        {"art39_days_left": days_left},
                    )
                    if mail_repository.dedup_key_taken(session, f"{request.id}:{mail.key}"):
                        report.already_sent += 1
                        continue
                    report.planned.append(mail)
                    if dry_run:
                        continue
                    context = {
                        **letter_context(rt, request, language=HANDLER_LANGUAGE),
                        **mail.extra,
                    }
                    queue_letter(
                        rt,
                        session,
                        request,
                        mail.key,
                        mail.letter,
                        context,
                        recipient=recipient,
                        language=HANDLER_LANGUAGE,
                    )
                    report.queued += 1
                if dry_run:
                    session.rollback()
                else:
                    session.commit()
            except Exception:
                session.rollback()
                report.errors += 1
                log.exception("Art. 39 alert failed for request %s; going on", request_id)
    return report
