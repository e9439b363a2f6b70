"""Triage: a handler decides what becomes of a message waiting in triage or quarantine,
making a request of it (``convert``) or closing it with a note (``dismiss``)."""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path

from pydantic import ValidationError
from sqlmodel import Session

from dsrflow.audit.chain import append_event
from dsrflow.db import utcnow
from dsrflow.errors import Conflict, Invalid, NotFound
from dsrflow.inbound_mail import repository
from dsrflow.inbound_mail.decisions import request_details, requester_name
from dsrflow.inbound_mail.models import OPEN_STATUSES, InboundMessage
from dsrflow.inbound_mail.schemas import ConvertIn, TriageReply
from dsrflow.outbound_mail.outbox import OutgoingMail, enqueue
from dsrflow.requests.models import Request
from dsrflow.requests.schemas import RequestCreate
from dsrflow.requests.service import open_request
from dsrflow.runtime import Runtime
from dsrflow.workflow.definitions import WorkflowError
from dsrflow.yamlio import read_yaml

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
    rt: Runtime,
    session: Session,
    inbound_id: int,
    note: str,
    *,
    actor: str,
    reply: str | None = None,
) -> InboundMessage:
    """Close a triage (or quarantined) message with a note, and commit. With ``reply`` (a key
    of ``triage_replies``) the sender gets that letter, queued in the same transaction and
    threaded under their mail; without, no mail is sent."""
    row = repository.get(session, inbound_id)
    if row is None:
        raise NotFound("No such message.")
    answer = None
    if reply is not None:
        answer = triage_replies(rt).get(reply)
        if answer is None:
            raise Invalid({"reply": f"unknown reply; one of {sorted(triage_replies(rt))}"})
        if not row.from_address:
            raise Invalid({"reply": "the message has no sender address to reply to"})
    values = {"status": "dismissed", "note": note, "decided_by": actor, "decided_at": utcnow()}
    if not repository.update_if_status(session, inbound_id, OPEN_STATUSES, values):
        session.rollback()
        current = repository.get(session, inbound_id)
        status = current.status if current else row.status
        raise Conflict(f"the message is '{status}', not waiting for a decision", status_now=status)
    if answer is not None and row.from_address:
        _queue_reply(rt, session, row, answer)
    session.commit()
    log.info("inbound message #%s dismissed by %s", inbound_id, actor)
    session.refresh(row)
    return row


def dismiss_many(
    rt: Runtime, session: Session, inbound_ids: list[int], note: str, *, actor: str
) -> int:
    """Close many triage messages with one note (spam, say), in one transaction, and commit.
    Messages decided meanwhile by someone else are left as they are. Returns how many closed."""
    values = {"status": "dismissed", "note": note, "decided_by": actor, "decided_at": utcnow()}
    closed = sum(
        1
        for inbound_id in inbound_ids
        if repository.update_if_status(session, inbound_id, OPEN_STATUSES, values)
    )
    session.commit()
    log.info("%d inbound messages dismissed by %s", closed, actor)
    return closed


def _queue_reply(rt: Runtime, session: Session, row: InboundMessage, answer: TriageReply) -> None:
    assert row.from_address is not None
    language = "en" if row.language == "en" else "ja"
    rendered = rt.letters.render(
        answer.letter,
        language,
        {
            "company_name": rt.definitions.company.name.for_language(language),
            "handler_email": rt.settings.handler_email,
            "sender_name": row.from_name,
            "original_subject": row.subject,
            "procedure_url": f"{rt.settings.base_url}/procedure",
            "form_url": f"{rt.settings.base_url}/",
        },
    )
    enqueue(
        session,
        OutgoingMail(
            dedup_key=f"inbox:{row.id}:reply",
            letter=answer.letter,
            recipient=row.from_address,
            subject=rendered.subject,
            body=rendered.body,
            in_reply_to=row.message_id,
        ),
        rt.mail_domain,
    )


def assign(session: Session, inbound_ids: list[int], assignee_id: int | None) -> int:
    """Give waiting messages to a handler (or to nobody), and commit; returns how many."""
    count = repository.assign_waiting(session, inbound_ids, assignee_id)
    session.commit()
    return count


REPLIES_FILE = Path("intake") / "replies.yaml"


def triage_replies(rt: Runtime) -> dict[str, TriageReply]:
    """The replies a handler may send on dismissing a message, from
    ``workflows/intake/replies.yaml`` (each names a letter template)."""
    return _load_replies(rt.settings.workflows_dir / REPLIES_FILE)


@lru_cache(maxsize=8)
def _load_replies(path: Path) -> dict[str, TriageReply]:
    if not path.exists():
        return {}
    raw = read_yaml(path) or {}
    replies = {}
    templates = path.parent.parent / "templates"
    for key, entry in (raw.get("replies") or {}).items():
        if not isinstance(entry, dict) or "letter" not in entry or "label" not in entry:
            raise WorkflowError([f"{path}: replies.{key}: needs a letter and a label (ja, en)"])
        for language in ("ja", "en"):
            if not (templates / language / f"{entry['letter']}.txt.j2").is_file():
                raise WorkflowError([f"{path}: replies.{key}.letter: no {language} template"])
        replies[key] = TriageReply(key=key, letter=entry["letter"], label=dict(entry["label"]))
    return replies
