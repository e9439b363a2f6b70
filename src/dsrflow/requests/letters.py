"""Letters about a request: what a letter may show, and queuing it in the outbox.

Used by every service that writes to a requester or to the handlers (decisions, deadlines,
inbound mail). A letter is rendered from the workflow's template in the recipient's language and
queued under a dedup key, in the caller's transaction; the caller commits.
"""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from dsrflow.outbound_mail.outbox import OutgoingMail, Queued, enqueue
from dsrflow.requests.models import Request
from dsrflow.runtime import Runtime

# Letters to the privacy desk are in Japanese, whatever the requester's language.
HANDLER_LANGUAGE = "ja"


def queue_letter(
    rt: Runtime,
    session: Session,
    request: Request,
    key: str,
    letter: str,
    context: dict[str, Any],
    *,
    recipient: str | None = None,
    language: str | None = None,
) -> Queued | None:
    """Render ``letter`` and queue it under the key ``<request id>:<key>``, unless a letter with
    that key was ever queued. Returns the queued row, or None. The caller commits."""
    mail = compose_letter(
        rt,
        session,
        request,
        key,
        letter,
        context,
        recipient=recipient,
        language=language,
    )
    return enqueue(session, mail, rt.mail_domain)


def compose_letter(
    rt: Runtime,
    session: Session,
    request: Request,
    key: str,
    letter: str,
    context: dict[str, Any],
    *,
    recipient: str | None = None,
    language: str | None = None,
    message_id: str | None = None,
) -> OutgoingMail:
    """``letter`` rendered for the outbox (see ``queue_letter``), not yet queued: a create
    queues its letters together (``outbox.enqueue_new``)."""
    rendered = rt.letters.render(letter, language or request.language, context)
    return OutgoingMail(
        dedup_key=f"{request.id}:{key}",
        letter=letter,
        recipient=recipient or request.agent_email or request.requester_email,
        subject=rendered.subject,
        body=rendered.body,
        request_id=request.id,
        reference=request.reference,
        # Letters to the requester thread under the acknowledgment.
        in_reply_to=None
        if recipient or key == "acknowledgment"
        else request.acknowledgment_message_id,
        message_id=message_id,
    )


def reason_context(rt: Runtime, code: str, language: str) -> dict[str, str]:
    reason = rt.definitions.reasons[code]
    return {
        "code": reason.code,
        "article": reason.article,
        "citation": reason.citation.for_language(language),
        "label": reason.label.for_language(language),
        "statutory_text": reason.statutory_text.for_language(language),
    }


def letter_context(
    rt: Runtime,
    request: Request,
    *,
    status_token: str | None = None,
    fields: dict[str, Any] | None = None,
    language: str | None = None,
) -> dict[str, Any]:
    """What a letter may show: only what its purpose needs (no details, phone or address).

    ``language`` defaults to the requester's; letters to the handlers pass theirs.
    """
    wf = rt.definitions.workflow(request.type)
    language = language or request.language
    tz = rt.settings.tz
    fields = dict(fields or {})
    if "reason_code" in fields:
        fields["reason"] = reason_context(rt, fields["reason_code"], language)
    fields["withheld"] = [
        {"reason": reason_context(rt, part["reason_code"], language), **part}
        for part in fields.get("withheld") or []
    ]
    base = rt.settings.base_url

    def method_label(method: str | None) -> str | None:
        option = wf.disclosure_method_options.get(method or "")
        return option.label.for_language(language) if option else method

    notice = (
        {k: getattr(wf.notice, k).for_language(language) for k in type(wf.notice).model_fields}
        if wf.notice
        else None
    )
    return {
        **fields,
        # Every letter names the principal, and the agent where one acts (Art. 37(3)).
        "principal_name": request.requester_name,
        "agent_name": request.agent_name,
        "agent_relation": request.agent_relation,
        "notice": notice,
        "requested_method": request.disclosure_method,
        "requested_method_label": method_label(request.disclosure_method),
        "method_used_label": method_label(fields.get("method_used")),
        # Where the requester designated none, the method the company presents (Guideline 3-8-2).
        "presented_method_label": method_label(wf.disclosure_methods[0])
        if wf.disclosure_methods
        else None,
        "procedure_url": f"{base}/procedure",
        "method_differs": bool(fields.get("method_difficulty")),
        "received_at": request.received_at.astimezone(tz),
        "due_date": request.due_at.astimezone(tz).date(),
        "art39_date": request.art39_date,
        "company_name": rt.definitions.company.name.for_language(language),
        "handler_email": rt.settings.handler_email,
        "reference": request.reference,
        "type_title": wf.title.for_language(language),
        "state_label": wf.states[request.state].label.for_language(language),
        "requester_name": request.agent_name or request.requester_name,
        "channel": request.channel,
        "received_at_local": request.received_at.astimezone(tz).strftime("%Y-%m-%d %H:%M"),
        "due_on": request.due_at.astimezone(tz).date().isoformat(),
        "art39_on": request.art39_date.isoformat() if request.art39_date else None,
        "has_agent": request.agent_relation is not None,
        "fee": wf.fee.model_dump() if wf.fee else None,
        "identity_methods": wf.identity_methods,
        "email_link_sufficient": wf.email_link_sufficient,
        **({"status_url": f"{base}/status/{status_token}"} if status_token else {}),
        "handler_url": f"{base}/console/requests/{request.id}",
    }
