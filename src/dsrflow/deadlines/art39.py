"""The daily Art. 39 alert: every open request whose Art. 39 date is near or has come.

Independent of ``due_at``, of any extension and of any pause: the date from which the requester
may sue (Art. 39(1)) never moves, so the handlers hear of it whatever the internal target says.
One alert per request and local day, from the reminders' hour. The deadline sweep queues it
(``service.plan`` asks :func:`alert_days_left`; ``service.next_step_at`` asks
:func:`next_alert_at`), so it rides on the sweep's watermark and dedup keys: a request costs
the sweep something on the days its alert is due, not on every pass.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from dsrflow.runtime import Runtime
from dsrflow.workflow.definitions import WorkflowDef

KIND = "art39_alert"


def alert_days_left(
    rt: Runtime, wf: WorkflowDef, art39_date: date | None, now: datetime
) -> int | None:
    """Days left to the Art. 39 date (zero or less once it has come) when today's alert is due
    at ``now``; None when no alert is due (outside Art. 39, too early in the day or the
    window)."""
    if not wf.deadline.art39 or art39_date is None:
        return None
    local = now.astimezone(rt.settings.tz)
    if local.time() < wf.reminders.send_at:
        return None  # not yet: the alerts go out at the reminders' hour
    days_left = (art39_date - local.date()).days
    return days_left if days_left <= wf.reminders.art39_alert_days else None


def next_alert_at(
    rt: Runtime, wf: WorkflowDef, art39_date: date | None, now: datetime
) -> datetime | None:
    """The first moment after ``now`` at which a new day's alert is due."""
    if not wf.deadline.art39 or art39_date is None:
        return None
    tz, send_at = rt.settings.tz, wf.reminders.send_at
    local_day = now.astimezone(tz).date()
    today = datetime.combine(local_day, send_at, tzinfo=tz)
    upcoming = today if now < today else datetime.combine(local_day + timedelta(1), send_at, tz)
    first = datetime.combine(
        art39_date - timedelta(wf.reminders.art39_alert_days), send_at, tzinfo=tz
    )
    return max(first, upcoming)
