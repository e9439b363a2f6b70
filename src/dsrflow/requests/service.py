"""The request service: the only place that commits.

A decision is one transaction: a conditional update on the request's version, the audit event,
and the letters it causes as outbox rows. Mail leaves after commit, so a failed send never undoes
a decision and a crash never loses one.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

from sqlmodel import Session

from dsrflow.audit.chain import append_event
from dsrflow.auth.models import Handler
from dsrflow.auth.tokens import new_token, token_digest
from dsrflow.db import pipelined, utcnow
from dsrflow.errors import Conflict, Invalid, NotFound, TriggerNotAllowed
from dsrflow.outbound_mail.outbox import OutgoingMail, enqueue_new, make_message_id
from dsrflow.requests import repository
from dsrflow.requests.letters import (
    HANDLER_LANGUAGE,
    compose_letter,
    letter_context,
)
from dsrflow.requests.models import Payment, Request, RequestNote
from dsrflow.requests.notices import tell_desk
from dsrflow.requests.schemas import (
    AgentPublic,
    EventPublic,
    PaymentIn,
    PaymentPublic,
    RequestCreate,
    RequestPublic,
    RetypeIn,
    TransitionIn,
)
from dsrflow.runtime import Runtime
from dsrflow.workflow.definitions import AWAITING_STATE, EMAIL_LINK, WorkflowDef
from dsrflow.workflow.engine import Subject

log = logging.getLogger(__name__)
MAX_NOTE_CHARS = 10_000
# The event every payment is recorded with, in the same commit as the payment's row.
PAYMENT_RECORDED = "payment_recorded"


def conflict(detail: str, request: Request, allowed: list[str]) -> Conflict:
    """A 409 that tells the caller where the request is now (state, version, what may fire)."""
    return Conflict(detail, state=request.state, version=request.version, allowed_triggers=allowed)


@dataclass(frozen=True)
class Submitted:
    request: Request
    # The status link's secret; None for a repeat of an earlier request (``duplicate``), whose
    # link only its acknowledgment carries (just its digest is stored).
    status_token: str | None
    duplicate: bool = False


class EmailCheck(Enum):
    VERIFIED = "verified"
    IDENTITY_VERIFIED = "identity_verified"
    USED = "used"
    EXPIRED = "expired"
    UNKNOWN = "unknown"
    PENDING = "pending"  # valid and not used yet (what the link's page shows before the click)


def _reference(year: int, number: int) -> str:
    return f"DSR-{year}-{number:06d}"


def submit(
    rt: Runtime,
    session: Session,
    data: RequestCreate,
    *,
    channel: str,
    received_at: datetime | None = None,
) -> Submitted:
    """Create a request as of its arrival, with its acknowledgment and notices queued, and commit.

    ``received_at`` is when it reached us (a mail's arrival); the Art. 39 clock runs from it.
    """
    submitted = open_request(rt, session, data, channel=channel, received_at=received_at)
    session.commit()
    log.debug("request submitted: %s (%s)", submitted.request.reference, submitted.request.type)
    return submitted


def submit_once(
    rt: Runtime, session: Session, data: RequestCreate, *, channel: str, within: timedelta
) -> Submitted:
    """``submit``, unless a request of the same type, address and details arrived ``within``
    the time before now: then that one, marked ``duplicate`` (a reload or a second click of
    the form files nothing twice)."""
    earlier = repository.recent_duplicate(
        session,
        request_type=data.type,
        email=str(data.email),
        details=data.details,
        since=utcnow() - within,
    )
    if earlier is not None:
        log.info("repeated submission of %s", earlier.reference)
        return Submitted(request=earlier, status_token=None, duplicate=True)
    submitted = open_request(rt, session, data, channel=channel)
    session.commit()
    log.info("request submitted: %s (%s)", submitted.request.reference, submitted.request.type)
    return submitted


def open_request(
    rt: Runtime,
    session: Session,
    data: RequestCreate,
    *,
    channel: str,
    received_at: datetime | None = None,
) -> Submitted:
    """``submit`` without the commit, for callers that create a request inside a larger
    transaction (mail intake records the message and the request together)."""
    wf = rt.definitions.workflows.get(data.type)
    if wf is None:
        raise Invalid({"type": f"unknown type; one of {sorted(rt.definitions.workflows)}"})
    if data.disclosure_method and data.disclosure_method not in wf.disclosure_methods:
        raise Invalid({"disclosure_method": f"not offered for {wf.id}"})
    option = wf.disclosure_method_options.get(data.disclosure_method or "")
    if option is not None and option.postal_address_required and not data.postal_address:
        raise Invalid(
            {"postal_address": f"is required for the disclosure method '{data.disclosure_method}'"}
        )
    received_at = received_at or utcnow()
    local = received_at.astimezone(rt.settings.tz)
    status_token = new_token("st")
    request = Request(
        reference="",
        type=wf.id,
        state=wf.initial,
        channel=channel,
        language=data.language,
        requester_name=data.name,
        requester_email=str(data.email),
        requester_phone=data.phone or None,
        requester_postal_address=data.postal_address or None,
        details=data.details,
        # Only what the requester chose: a method is never defaulted (Guideline 3-8-2).
        disclosure_method=data.disclosure_method or None,
        agent_name=data.agent.name if data.agent else None,
        agent_email=str(data.agent.email) if data.agent else None,
        agent_relation=data.agent.relation if data.agent else None,
        received_at=received_at,
        due_at=initial_due_at(rt, wf, received_at),
        art39_date=rt.calendar.art39_date(received_at) if wf.deadline.art39 else None,
        status_token_hash=token_digest(status_token),
        next_sweep_at=received_at,
        # Chosen here, so that every later letter to the requester threads under it.
        acknowledgment_message_id=make_message_id(rt.mail_domain),
    )
    # Built before the first statement: on SQLite that statement takes the write lock, held
    # until commit. The request is inserted first (its rows refer to it); nothing is read back,
    # so on PostgreSQL all of them travel in one round trip (``pipelined``).
    number = repository.next_reference_number(session, local.year)
    with session.no_autoflush, pipelined(session):
        request.reference = _reference(local.year, number)
        repository.add_new(session, request)
        append_event(
            session,
            request.id,
            kind="submitted",
            actor="requester",
            at=received_at,
            to_state=request.state,
            detail={"channel": channel, "type": wf.id, "agent": request.agent_relation},
            new_chain=True,
        )
        context = letter_context(rt, request, status_token=status_token)
        # The letters are queued together, in one statement.
        mails = [
            compose_letter(
                rt,
                session,
                request,
                "acknowledgment",
                wf.letters["acknowledgment"],
                context,
                message_id=request.acknowledgment_message_id,
            ),
            _verification_letter(rt, session, request, context),
        ]
        if request.agent_email and request.agent_email.lower() != request.requester_email.lower():
            # The principal learns that someone asked in their name, who, and how to object.
            mails.append(
                compose_letter(
                    rt,
                    session,
                    request,
                    "agent_notice",
                    wf.letters["agent_notice"],
                    context,
                    recipient=request.requester_email,
                )
            )
        mails.append(
            compose_letter(
                rt,
                session,
                request,
                "handler_notice",
                wf.letters["handler_notice"],
                letter_context(rt, request, language=HANDLER_LANGUAGE),
                recipient=rt.settings.handler_email,
                language=HANDLER_LANGUAGE,
            )
        )
        enqueue_new(session, mails, rt.mail_domain)
    return Submitted(request=request, status_token=status_token)


def initial_due_at(rt: Runtime, wf: WorkflowDef, received_at: datetime) -> datetime:
    """The internal target from arrival. One that crosses the Art. 39 date (business days over
    holidays) is cut back to the day before it, unless the workflow confirms the crossing."""
    due_at = rt.calendar.due_at(received_at, wf.deadline)
    if wf.deadline.art39 and not wf.deadline.confirm_past_art39:
        art39 = rt.calendar.art39_date(received_at)
        if rt.calendar.local_date(due_at) >= art39:
            due_at = rt.calendar.end_of(art39 - timedelta(days=1))
    return due_at


def retype(
    rt: Runtime,
    session: Session,
    request_id: str,
    data: RetypeIn,
    *,
    actor: str,
) -> Request:
    """Move an open request to another workflow: same reference, arrival and history; its
    clocks recomputed from arrival; audited; commit."""
    request = repository.lock(session, request_id)
    if request is None:
        raise NotFound("No such request.")
    allowed = rt.engine.allowed_triggers(request.type, request.state)
    if data.expected_version is not None and data.expected_version != request.version:
        raise conflict(
            f"expected version {data.expected_version}, but the request is at version "
            f"{request.version}",
            request,
            allowed,
        )
    old = rt.definitions.workflow(request.type)
    if request.state in old.terminal_states:
        raise conflict(f"the request is closed ('{request.state}')", request, allowed)
    new = rt.definitions.workflows.get(data.type)
    if new is None:
        raise Invalid({"type": f"unknown type; one of {sorted(rt.definitions.workflows)}"})
    if new.id == old.id:
        raise Invalid({"type": f"the request is already a {old.id} request"})
    if request.state not in new.states:
        raise Invalid({"type": f"a {new.id} workflow has no state '{request.state}'"})
    if not data.note.strip():
        raise Invalid({"note": "must not be empty"})
    now = utcnow()
    values: dict[str, Any] = {
        "type": new.id,
        "due_at": initial_due_at(rt, new, request.received_at),
        "art39_date": rt.calendar.art39_date(request.received_at) if new.deadline.art39 else None,
        "extension_days": 0,
        "updated_at": now,
    }
    if request.disclosure_method not in new.disclosure_methods:
        values["disclosure_method"] = None  # never a method the new type does not offer
    if not repository.update_if_version(session, request.id, request.version, values):
        session.rollback()
        raise conflict("the request changed meanwhile", request, allowed)
    append_event(
        session,
        request.id,
        kind="retyped",
        actor=actor,
        at=now,
        detail={"from_type": old.id, "to_type": new.id, "note": data.note},
    )
    session.commit()
    session.refresh(request)
    return request


def transition(
    rt: Runtime, session: Session, request_key: str, body: TransitionIn, *, actor: str
) -> Request:
    """Fire ``body.trigger`` on the request ``request_key`` names (its id or reference), read
    once, under its lock, and commit. Raises NotFound, Conflict or Invalid."""
    request = _transition(rt, session, request_key, body, actor=actor)
    session.commit()
    return request


def decide(
    rt: Runtime, session: Session, request_key: str, body: TransitionIn, *, actor: str
) -> RequestPublic:
    """``transition``, answered with the handler's view of the request as committed, read in
    the same transaction: a read after the commit would cost a second transaction (and on
    PostgreSQL a second pool checkout) on the desk's busiest write."""
    request = _transition(rt, session, request_key, body, actor=actor)
    view = describe(rt, session, request, history=True)
    session.commit()
    return view


def _transition(
    rt: Runtime, session: Session, request_key: str, body: TransitionIn, *, actor: str
) -> Request:
    request = repository.lock_by_id_or_reference(session, request_key)
    if request is None:
        raise NotFound("No such request.")
    if body.expected_version is not None and body.expected_version != request.version:
        raise conflict(
            f"expected version {body.expected_version}, but the request is at version "
            f"{request.version}",
            request,
            rt.engine.allowed_triggers(request.type, request.state),
        )
    fields = body.fields()
    also = _handler_rules(body.trigger, fields)
    return _apply(rt, session, request, body.trigger, fields, actor=actor, also_invalid=also)


def _handler_rules(trigger: str, fields: dict[str, Any]) -> dict[str, str]:
    """What a handler's decision needs beyond the engine's rules (a requester's needs less)."""
    if trigger == "withdraw" and not (fields.get("note") or "").strip():
        # The requester withdraws from the status page; a handler records why.
        return {"note": "is required when a handler records a withdrawal"}
    return {}


def withdraw_by_requester(rt: Runtime, session: Session, status_token: str) -> Request:
    """The requester withdraws their own request from the status page."""
    found = repository.by_status_token(session, token_digest(status_token))
    request = repository.lock(session, found.id) if found is not None else None
    if request is None:
        raise NotFound("No such request.")
    request = _apply(rt, session, request, "withdraw", {}, actor="requester")
    tell_desk(rt, session, request, "withdrawn", key="withdrawn")
    session.commit()
    return request


def check_email_link(session: Session, token: str) -> tuple[EmailCheck, Request | None]:
    """What the link is now, changing nothing (mail scanners open links): UNKNOWN, USED,
    EXPIRED or PENDING, with its request."""
    row = repository.verification_token(session, token_digest(token))
    if row is None:
        return EmailCheck.UNKNOWN, None
    request = repository.get(session, row.request_id)
    if row.used_at is not None:
        return EmailCheck.USED, request
    if row.expires_at <= utcnow():
        return EmailCheck.EXPIRED, request
    return EmailCheck.PENDING, request


def verify_email(rt: Runtime, session: Session, token: str) -> tuple[EmailCheck, Request | None]:
    """Record that the requester controls the address; where the workflow says that is enough,
    also verify identity with method ``email_link``. The link works once and expires."""
    digest = token_digest(token)
    row = repository.verification_token(session, digest)
    if row is None:
        return EmailCheck.UNKNOWN, None
    # The request's lock first, then the token read again under it: of links opened at the
    # same moment exactly one finds it unused.
    request = repository.lock(session, row.request_id)
    row = repository.verification_token(session, digest, locked=True)
    assert row is not None
    now = utcnow()
    if row.used_at is not None:
        return EmailCheck.USED, request
    if row.expires_at <= now:
        return EmailCheck.EXPIRED, request
    assert request is not None
    row.used_at = now
    session.add(row)
    append_event(session, request.id, kind="email_verified", actor="requester", at=now)
    wf = rt.definitions.workflow(request.type)
    allowed = rt.engine.allowed_triggers(request.type, request.state)
    outcome = EmailCheck.VERIFIED
    # An agent's authority is never proved by a link to the agent's own address.
    if wf.email_link_sufficient and request.agent_relation is None and "verify_identity" in allowed:
        request = _apply(
            rt,
            session,
            request,
            "verify_identity",
            {"method": EMAIL_LINK},
            actor="requester",
            extra={"email_verified_at": now},
            email_confirmed=True,
        )
        outcome = EmailCheck.IDENTITY_VERIFIED
    else:
        if not repository.update_if_version(
            session, request.id, request.version, {"email_verified_at": now, "updated_at": now}
        ):
            session.rollback()
            raise conflict("the request changed meanwhile; try the link again", request, allowed)
        session.refresh(request)
    kind = "identity_verified" if outcome is EmailCheck.IDENTITY_VERIFIED else "email_verified"
    tell_desk(rt, session, request, kind, key=f"email_verified:{row.id}", at=now)
    session.commit()
    return outcome, request


def _apply(
    rt: Runtime,
    session: Session,
    request: Request,
    trigger: str,
    fields: dict[str, Any],
    *,
    actor: str,
    extra: dict[str, Any] | None = None,
    email_confirmed: bool = False,
    also_invalid: dict[str, str] | None = None,
) -> Request:
    """The heart of a decision: engine, conditional update, event, letters (no commit)."""
    allowed = rt.engine.allowed_triggers(request.type, request.state)
    subject = subject_of(rt, session, request)
    subject.email_confirmed = subject.email_confirmed or email_confirmed
    try:
        outcome = rt.engine.fire(request.type, subject, trigger, fields)
    except TriggerNotAllowed as exc:
        raise conflict(str(exc), request, allowed) from exc
    except Invalid as exc:
        raise Invalid({**exc.errors, **(also_invalid or {})}) from exc
    if also_invalid:
        raise Invalid(also_invalid)
    wf = rt.definitions.workflow(request.type)
    now = utcnow()
    values: dict[str, Any] = {"state": outcome.dest, "updated_at": now, **(extra or {})}
    values[wf.states[outcome.dest].stamp] = now
    if outcome.dest == AWAITING_STATE:
        values["resume_state"] = outcome.source
    elif outcome.source == AWAITING_STATE:
        values["resume_state"] = None
        if wf.deadline.pause_while_awaiting_requester and request.awaiting_requester_at:
            # The internal clock stood still while we waited; the Art. 39 date does not move.
            # Kept at the end of a local day, so the day's reminders still fit around it.
            moved = request.due_at + (now - request.awaiting_requester_at)
            values["due_at"] = rt.calendar.end_of(rt.calendar.local_date(moved))
    for field, column in RECORDED_FIELDS.items():
        if field in fields:
            values[column] = fields[field]
    # Under the request's lock nothing else writes it or its chain, so the update, the event and
    # the letter need no answer before the next: on PostgreSQL they travel in one round trip.
    session.flush()
    with pipelined(session):
        applied = repository.send_update_if_version(session, request, values)
        append_event(
            session,
            request.id,
            kind="transition",
            trigger=trigger,
            from_state=outcome.source,
            to_state=outcome.dest,
            actor=actor,
            at=now,
            detail=fields,
        )
        if outcome.transition.letter:
            # Rendered as of the new state. The key names the version this transaction made:
            # no letter can have it yet.
            letter = outcome.transition.letter
            key = f"v{request.version}:{letter}"
            context = letter_context(rt, request, fields=fields)
            mail = compose_letter(rt, session, request, key, letter, context)
            enqueue_new(session, [mail], rt.mail_domain)
    if not applied():
        session.rollback()
        current = repository.get(session, request.id)
        assert current is not None
        session.refresh(current)
        raise conflict(
            f"the request changed meanwhile (now '{current.state}', version {current.version})",
            current,
            rt.engine.allowed_triggers(current.type, current.state),
        )
    return request


# Transition fields kept on the request itself (all of them are in the event's detail too).
RECORDED_FIELDS = {
    "method": "identity_method",
    "evidence": "identity_evidence",
    "authority_document": "authority_document",
    "agent_method": "agent_identity_method",
    "method_used": "disclosure_method_used",
}


def fee_due_jpy(
    rt: Runtime, session: Session, request: Request, payments: Sequence[Payment] | None = None
) -> int:
    """What of the workflow's fee no recorded payment covers yet (0 where there is no fee).
    ``payments``: the request's payments when the caller has read them already."""
    fee = rt.definitions.workflow(request.type).fee
    if fee is None:
        return 0
    paid = (
        sum(p.amount_jpy for p in payments)
        if payments is not None
        else repository.paid_total(session, request.id)
    )
    return max(0, fee.amount_jpy - paid)


def subject_of(rt: Runtime, session: Session, request: Request) -> Subject:
    """What the engine's field rules need to know about ``request``."""
    return Subject(
        state=request.state,
        resume_state=request.resume_state,
        email_confirmed=request.email_verified_at is not None,
        agent=request.agent_relation is not None,
        requested_method=request.disclosure_method,
        fee_outstanding=fee_due_jpy(rt, session, request) > 0,
    )


def record_payment(
    rt: Runtime, session: Session, request_id: str, data: PaymentIn, *, actor: str
) -> Request:
    """Record a fee payment on an open request (audited) and commit."""
    request = repository.lock(session, request_id)
    if request is None:
        raise NotFound("No such request.")
    wf = rt.definitions.workflow(request.type)
    if request.state in wf.terminal_states:
        raise conflict(f"the request is closed ('{request.state}')", request, [])
    if wf.fee is None:
        raise Invalid({"amount_jpy": f"a {wf.id} request has no fee"})
    now = utcnow()
    paid_at = data.paid_at or now
    if paid_at.tzinfo is None:
        raise Invalid({"paid_at": "must carry a time zone (e.g. 2026-12-01T10:00:00+09:00)"})
    if paid_at > now:
        raise Invalid({"paid_at": "must not be in the future"})
    payment = Payment(
        request_id=request.id,
        amount_jpy=data.amount_jpy,
        method=data.method,
        paid_at=paid_at,
        note=data.note or None,
        recorded_by=actor[:64],
        recorded_at=now,
    )
    session.add(payment)
    append_event(
        session,
        request.id,
        kind=PAYMENT_RECORDED,
        actor=actor,
        at=now,
        detail={
            "amount_jpy": data.amount_jpy,
            "method": data.method,
            "paid_at": paid_at.isoformat(),
            **({"note": data.note} if data.note else {}),
        },
    )
    session.commit()
    session.refresh(request)
    return request


def _verification_letter(
    rt: Runtime, session: Session, request: Request, context: dict[str, Any]
) -> OutgoingMail:
    """A new verification link (its token stored hashed) and the letter that carries it."""
    token = new_token("vt")
    hours = rt.settings.verification_link_hours
    repository.add_verification_token(
        session, request.id, token_digest(token), utcnow() + timedelta(hours=hours)
    )
    context = {
        **context,
        "verify_url": f"{rt.settings.base_url}/verify/{token}",
        "verify_hours": hours,
    }
    letter = rt.definitions.workflow(request.type).letters["verification"]
    return compose_letter(rt, session, request, "verification", letter, context)


def describe(rt: Runtime, session: Session, request: Request, *, history: bool) -> RequestPublic:
    """The handler's view of a request, with what may happen next and (optionally) its history."""
    agent = (
        AgentPublic(
            name=request.agent_name, email=request.agent_email, relation=request.agent_relation
        )
        if request.agent_name and request.agent_email and request.agent_relation
        else None
    )
    events = repository.history(session, request.id) if history else []
    # A payment's row and its event commit together, so a history without the event has none.
    has_payments = not history or any(e.kind == PAYMENT_RECORDED for e in events)
    payments = repository.payments(session, request.id) if has_payments else []
    return RequestPublic(
        overdue=rt.is_overdue(
            request.type, request.state, request.due_at, utcnow(), request.art39_date
        ),
        fee_due_jpy=fee_due_jpy(rt, session, request, payments),
        payments=[PaymentPublic.model_validate(p, from_attributes=True) for p in payments],
        identity_evidence=request.identity_evidence,
        authority_document=request.authority_document,
        agent_method=request.agent_identity_method,
        method_used=request.disclosure_method_used,
        id=request.id,
        reference=request.reference,
        type=request.type,
        state=request.state,
        version=request.version,
        channel=request.channel,
        language=request.language,
        name=request.requester_name,
        email=request.requester_email,
        phone=request.requester_phone,
        postal_address=request.requester_postal_address,
        details=request.details,
        disclosure_method=request.disclosure_method,
        agent=agent,
        identity_method=request.identity_method,
        email_verified_at=request.email_verified_at,
        received_at=request.received_at,
        identity_verified_at=request.identity_verified_at,
        awaiting_requester_at=request.awaiting_requester_at,
        closed_at=request.closed_at,
        due_at=request.due_at,
        art39_date=request.art39_date,
        allowed_triggers=rt.engine.allowed_triggers(request.type, request.state),
        history=[EventPublic.model_validate(e, from_attributes=True) for e in events],
    )


# --------------------------------------------------------------------------- the desk's own work


@dataclass(frozen=True)
class LetterPreview:
    """What a decision would send, rendered exactly as it would go out (nothing is saved)."""

    dest: str
    letter: str | None
    recipient: str | None
    language: str
    subject: str | None
    body: str | None


def preview(
    rt: Runtime, session: Session, request: Request, trigger: str, fields: dict[str, Any]
) -> LetterPreview:
    """Check a handler's decision as ``transition`` would and render its letter in the
    requester's language, without saving anything. Raises Conflict (not allowed now) or
    Invalid."""
    allowed = rt.engine.allowed_triggers(request.type, request.state)
    also = _handler_rules(trigger, fields)
    try:
        outcome = rt.engine.fire(request.type, subject_of(rt, session, request), trigger, fields)
    except TriggerNotAllowed as exc:
        raise conflict(str(exc), request, allowed) from exc
    except Invalid as exc:
        raise Invalid({**exc.errors, **also}) from exc
    if also:
        raise Invalid(also)
    letter = outcome.transition.letter
    if letter is None:
        return LetterPreview(outcome.dest, None, None, request.language, None, None)
    # The letter is rendered after the state has changed: show it as of the new state.
    after = Request(**{**request.model_dump(), "state": outcome.dest})
    rendered = rt.letters.render(letter, request.language, letter_context(rt, after, fields=fields))
    return LetterPreview(
        dest=outcome.dest,
        letter=letter,
        recipient=request.agent_email or request.requester_email,
        language=request.language,
        subject=rendered.subject,
        body=rendered.body,
    )


def add_note(session: Session, request: Request, handler_id: int, body: str) -> RequestNote:
    """An internal note (never sent to the requester), audited, and commit."""
    body = body.strip()
    if not body:
        raise Invalid({"body": "must not be empty"})
    if len(body) > MAX_NOTE_CHARS:
        raise Invalid({"body": f"at most {MAX_NOTE_CHARS} characters"})
    note = RequestNote(request_id=request.id, handler_id=handler_id, body=body)
    session.add(note)
    session.flush()
    # The chain records that a note was written and by whom, not its words (a purge may
    # remove the words; the chain must still verify).
    append_event(
        session,
        request.id,
        kind="note",
        actor=f"handler:{handler_id}",
        at=note.created_at,
        detail={"note_id": note.id},
    )
    session.commit()
    return note


def assign(session: Session, request: Request, assignee_id: int | None, *, actor: str) -> None:
    """Give the request to a handler (None: to nobody), audited, and commit. Reminders then go
    to the assignee as well as to the desk's mailbox."""
    if assignee_id is not None:
        assignee = session.get(Handler, assignee_id)
        if assignee is None or assignee.revoked_at is not None:
            raise Invalid({"assignee_id": "no such handler"})
    if assignee_id == request.assignee_id:
        return
    repository.set_handling(session, request.id, {"assignee_id": assignee_id})
    append_event(
        session,
        request.id,
        kind="assigned",
        actor=actor,
        at=utcnow(),
        detail={"assignee_id": assignee_id},
    )
    session.commit()
    session.refresh(request)


def mark_seen(session: Session, request: Request) -> None:
    """A handler has looked at the request now (clears the queue's "requester acted" flag)."""
    repository.set_handling(session, request.id, {"handler_seen_at": utcnow()})
    session.commit()
