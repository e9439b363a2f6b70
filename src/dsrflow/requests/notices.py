"""The desk hears of every requester event: a reply, an e-mail verification, a withdrawal, an
upload. Each notice carries the requester's name and what they wrote.

With ``REQUESTER_EVENT_MAIL=each`` (the default) every event is one mail to the handlers'
mailbox, queued in the caller's transaction. With ``batch`` the event waits in
``desk_notices`` and ``send_batch`` (the scheduler's ``requester_event_batch`` job, every
``REQUESTER_EVENT_BATCH_MINUTES``) sends one mail listing them all, then deletes them.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from dsrflow.db import utcnow
from dsrflow.outbound_mail.outbox import OutgoingMail, enqueue
from dsrflow.requests.letters import HANDLER_LANGUAGE, letter_context, queue_letter
from dsrflow.requests.models import DeskNotice, Request
from dsrflow.runtime import Runtime
from dsrflow.workflow.definitions import AWAITING_STATE

log = logging.getLogger(__name__)
EVENT_LETTER = "requester_event"
BATCH_LETTER = "requester_events"
# The events a notice is about (the template words each).
KINDS = ("reply", "email_verified", "identity_verified", "withdrawn", "upload")
# What a notice quotes of the requester's text at most; the rest is in the request's mail.
MAX_QUOTED = 4000
BATCH_SIZE = 200


def _quoted(text: str | None) -> tuple[str | None, bool]:
    if not text or not text.strip():
        return None, False
    text = text.strip()
    return text[:MAX_QUOTED], len(text) > MAX_QUOTED


def tell_desk(
    rt: Runtime,
    session: Session,
    request: Request,
    kind: str,
    *,
    key: str,
    at: datetime | None = None,
    text: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Tell the handlers of a requester event (in the caller's transaction; it commits).

    ``key`` makes the notice unique (the same event is never announced twice); ``text`` is
    what the requester wrote; ``details`` are extra lines for the template (counts, flags).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown requester event {kind!r}")
    at = at or utcnow()
    quoted, truncated = _quoted(text)
    if rt.settings.requester_event_mail == "batch":
        dedup_key = f"{request.id}:desk:{key}"
        if session.exec(select(DeskNotice.id).where(DeskNotice.dedup_key == dedup_key)).first():
            return
        session.add(
            DeskNotice(
                dedup_key=dedup_key,
                request_id=request.id,
                kind=kind,
                at=at,
                text=quoted,
                truncated=truncated,
                details=details or {},
            )
        )
        return
    queue_letter(
        rt,
        session,
        request,
        f"desk:{key}",
        EVENT_LETTER,
        {
            **letter_context(rt, request, language=HANDLER_LANGUAGE),
            **_event_context(rt, request, kind, at, quoted, truncated, details or {}),
        },
        recipient=rt.settings.handler_email,
        language=HANDLER_LANGUAGE,
    )


def _event_context(
    rt: Runtime,
    request: Request,
    kind: str,
    at: datetime,
    text: str | None,
    truncated: bool,
    details: dict[str, Any],
) -> dict[str, Any]:
    return {
        "event": kind,
        "event_at_local": at.astimezone(rt.settings.tz).strftime("%Y-%m-%d %H:%M"),
        "principal_name": request.requester_name,
        "agent_name": request.agent_name,
        "text": text,
        "truncated": truncated,
        "awaiting": request.state == AWAITING_STATE,
        "details": details,
        "request_url": f"{rt.settings.base_url}/console/requests/{request.id}",
    }


def send_batch(rt: Runtime, now: datetime | None = None) -> int:
    """Send the waiting requester events as one mail to the handlers, delete them, and commit.
    Returns how many events the mail lists (0: nothing was waiting, nothing sent)."""
    now = now or utcnow()
    with Session(rt.db, expire_on_commit=False) as session:
        notices = list(
            session.exec(
                select(DeskNotice)
                .where(col(DeskNotice.created_at) <= now)
                .order_by(col(DeskNotice.id))
                .limit(BATCH_SIZE)
                .with_for_update(skip_locked=True)
            )
        )
        if not notices:
            session.rollback()
            return 0
        requests = {
            r.id: r
            for r in session.exec(
                select(Request).where(col(Request.id).in_({n.request_id for n in notices}))
            )
        }
        events = []
        for notice in notices:
            request = requests.get(notice.request_id)
            if request is None:
                continue
            context = letter_context(rt, request, language=HANDLER_LANGUAGE)
            events.append(
                {
                    **{k: context[k] for k in ("reference", "type_title", "requester_name")},
                    "state_label": context["state_label"],
                    "due_on": context["due_on"],
                    **_event_context(
                        rt,
                        request,
                        notice.kind,
                        notice.at,
                        notice.text,
                        notice.truncated,
                        notice.details,
                    ),
                }
            )
        if events:
            rendered = rt.letters.render(
                BATCH_LETTER,
                HANDLER_LANGUAGE,
                {
                    "events": events,
                    "company_name": rt.definitions.company.name.for_language(HANDLER_LANGUAGE),
                    "handler_email": rt.settings.handler_email,
                    "since_local": min(n.at for n in notices)
                    .astimezone(rt.settings.tz)
                    .strftime("%Y-%m-%d %H:%M"),
                },
            )
            enqueue(
                session,
                OutgoingMail(
                    dedup_key=f"desk-batch:{notices[0].id}:{notices[-1].id}",
                    letter=BATCH_LETTER,
                    recipient=rt.settings.handler_email,
                    subject=rendered.subject,
                    body=rendered.body,
                ),
                rt.mail_domain,
            )
        for notice in notices:
            session.delete(notice)
        session.commit()
    log.info("requester events: %d sent in one mail", len(events))
    return len(events)
