"""Triage: a handler decides what becomes of a message waiting in triage or quarantine,
making a request of it (``convert``) or closing it with a note (``dismiss``)."""

from __future__ import annotations

import logging

from pydantic import ValidationError
from sqlmodel import Session

from dsrflow.audit.chain import append_event
from dsrflow.db import utcnow
from dsrflow.errors import Conflict, Invalid, NotFound
from dsrflow.inbound_mail import repository
from dsrflow.inbound_mail.decisions import request_details, requester_name
from dsrflow.inbound_mail.models import OPEN_STATUSES, InboundMessage
from dsrflow.inbound_mail.schemas import ConvertIn
from dsrflow.requests.models import Request
from dsrflow.requests.schemas import RequestCreate
from dsrflow.requests.service import open_request
from dsrflow.runtime import Runtime

log = logging.getLogger(__name__)


def convert(
    rt: Runtime, session: Session, inbound_id: int, data: ConvertIn, *, actor: str
) -> tuple[InboundMessage, Request]:
    """Make a request of a message waiting in triage (or quarantine), and commit.

    The request's arrival is the message's arrival, so the Art. 39 clock and the due date run
    from when the mail reached the mailbox, not from when a handler got to it. Raises
    NotFound, Conflict (already decided) or Invalid (unknown type, no usable address).
    """
    row = repository.get(session, inbound_id)
    if row is None:
        raise NotFound("No such message.")
    if row.status not in OPEN_STATUSES:
        raise Conflict(
            f"the message is '{row.status}', not waiting for a decision", status_now=row.status
        )
    email = str(data.email) if data.email else row.from_address
    if not email:
        raise Invalid({"email": "the message has no usable sender address; give one"})
    try:
        create = RequestCreate(
            type=data.type,
            name=data.name or requester_name(row.from_name, email),
            email=email,
            details=request_details(row.subject, row.text),
            language=data.language or ("en" if row.language == "en" else "ja"),
            agent=data.agent,
        )
    except ValidationError as exc:
        raise Invalid(
            {".".join(str(p) for p in e["loc"]) or "body": e["msg"] for e in exc.errors()}
        ) from exc
    request = open_request(
        rt, session, create, channel="email", received_at=row.received_at
    ).request
    now = utcnow()
    if not repository.update_if_status(
        session,
        inbound_id,
        OPEN_STATUSES,
        {"status": "created", "request_id": request.id, "decided_by": actor, "decided_at": now},
    ):
        session.rollback()
        current = repository.get(session, inbound_id)
        status = current.status if current else "unknown"
        raise Conflict(f"the message was decided meanwhile (now '{status}')", status_now=status)
    append_event(
        session,
        request.id,
        kind="message",
        actor=actor,
        at=row.received_at,
        detail={
            "inbound_message_id": row.id,
            "message_id": row.message_id,
            "converted_from": row.status,
        },
    )
    session.commit()
    session.refresh(row)
    log.info("inbound message #%s converted to %s by %s", row.id, request.reference, actor)
    return row, request


def dismiss(
    rt: Runtime, session: Session, inbound_id: int, note: str, *, actor: str
) -> InboundMessage:
    """Close a triage (or quarantined) message with a note, and commit. No mail is sent."""
    row = repository.get(session, inbound_id)
    if row is None:
        raise NotFound("No such message.")
    values = {"status": "dismissed", "note": note, "decided_by": actor, "decided_at": utcnow()}
    if not repository.update_if_status(session, inbound_id, OPEN_STATUSES, values):
        session.rollback()
        current = repository.get(session, inbound_id)
        status = current.status if current else row.status
        raise Conflict(f"the message is '{status}', not waiting for a decision", status_now=status)
    session.commit()
    log.info("inbound message #%s dismissed by %s", inbound_id, actor)
    session.refresh(row)
    return row
