"""What becomes of a message not seen before: an ordered list of rules, the first that
applies decides.

Each rule reads a ``Facts`` (the message as read, and what the database says it answers) and
returns a ``Decision`` or None. The rules know no request type by name and touch no database,
so each can be tested alone; ``facts_for`` gathers what they read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from pydantic import ValidationError
from sqlmodel import Session

from dsrflow.inbound_mail import repository
from dsrflow.inbound_mail.schemas import InboundMail, IntakePolicy
from dsrflow.requests.models import Request
from dsrflow.requests.schemas import RequestCreate

MAX_DETAILS = 20_000


@dataclass(frozen=True)
class Decision:
    """A message's status (``quarantined``, ``ignored``, ``triage``, ``joined``, ``created``),
    why (for all but joined and created), the request it is about, the request to create."""

    status: str
    reason: str | None = None
    about: Request | None = None
    create: RequestCreate | None = None
    # Mail about ``about`` from neither its requester nor its agent (the handlers are told).
    sender_differs: bool = False


@dataclass(frozen=True)
class Facts:
    """What the rules read about one message."""

    mail: InboundMail
    # Requests the subject's references or the threading say it answers.
    answered: tuple[Request, ...] = ()
    # Requests named in the text only (read when it answers none).
    quoted: tuple[Request, ...] = ()
    # Its Message-ID is one of our letters'.
    ours: bool = False
    # Requests this sender's mail created within the policy's window (counted only when the
    # message names a request type).
    recent_requests: int = 0
    # The sender is the requester or agent of a request (has a relation to us); looked up only
    # when the subject reads like phishing, the one rule that asks.
    known_sender: bool = False
    policy: IntakePolicy = field(default_factory=IntakePolicy)
    closed_states: frozenset[str] = frozenset()
    configured_types: frozenset[str] = frozenset()

    @property
    def about(self) -> Request | None:
        """The one request the message is about, if there is exactly one."""
        if self.answered:
            return self.answered[0] if len(self.answered) == 1 else None
        return self.quoted[0] if len(self.quoted) == 1 else None


def facts_for(
    session: Session,
    mail: InboundMail,
    *,
    now: datetime,
    policy: IntakePolicy,
    closed_states: frozenset[str],
    configured_types: frozenset[str],
) -> Facts:
    """Look up what the rules need to know about ``mail``."""
    answered = {r.id: r for r in repository.requests_by_reference(session, mail.named_references)}
    threaded = repository.request_for_thread(session, mail.thread_ids)
    if threaded is not None:
        answered.setdefault(threaded.id, threaded)
    quoted: list[Request] = []
    if not answered and mail.body_references:
        quoted = repository.requests_by_reference(session, mail.body_references)
    # Each of these reads a table that grows with the years: looked up only for the mail whose
    # rule reads it (the per-sender limit for a message naming a type, the relation to us for a
    # phishing-like subject), not for every message.
    sender = mail.from_address
    recent = (
        repository.requests_created_from(session, sender, now - policy.sender_window)
        if sender and mail.detected_type
        else 0
    )
    return Facts(
        mail=mail,
        answered=tuple(answered.values()),
        quoted=tuple(quoted),
        ours=repository.is_our_message_id(session, mail.message_id),
        recent_requests=recent,
        known_sender=bool(sender and mail.phishing_like)
        and repository.is_known_sender(session, sender or ""),
        policy=policy,
        closed_states=closed_states,
        configured_types=configured_types,
    )


# --------------------------------------------------------------------------- the rules


def not_understood(facts: Facts) -> Decision | None:
    """A message intake could not read waits in quarantine."""
    if facts.mail.quarantine_reason:
        return Decision("quarantined", facts.mail.quarantine_reason, facts.about)
    return None


def automatic_mail(facts: Facts) -> Decision | None:
    """Auto-replies, bounces and list mail are recorded, never answered."""
    if facts.mail.ignore_reason:
        return Decision("ignored", facts.mail.ignore_reason, facts.about)
    return None


def our_own_letter(facts: Facts) -> Decision | None:
    """One of our letters come back (a copy, a loop)."""
    if facts.ours:
        return Decision(
            "ignored", "our own message (its Message-ID is one of our letters)", facts.about
        )
    return None


def answers_several_requests(facts: Facts) -> Decision | None:
    """Which request it answers is a guess."""
    if len(facts.answered) > 1:
        named = ", ".join(sorted(r.reference for r in facts.answered))
        return Decision("triage", f"names several requests ({named}): which one is unclear")
    return None


def answers_a_closed_request(facts: Facts) -> Decision | None:
    """Nobody reads a closed request's mail: a handler decides (a new request, or nothing)."""
    about = facts.about
    if about is not None and about.state in facts.closed_states:
        return Decision(
            "triage", f"about {about.reference}, which is closed ({about.state})", about
        )
    return None


def answers_a_request(facts: Facts) -> Decision | None:
    """A reply by reference or threading joins its request when it comes from the requester or
    the agent; from anyone else it waits in triage, flagged "sender differs"."""
    if not facts.answered:
        return None
    about = facts.about
    if about is not None and not from_requester(about, facts.mail.from_address):
        reason = (
            f"sender differs: names {about.reference}, but comes from neither its requester "
            "nor its agent"
        )
        return Decision("triage", reason, about, sender_differs=True)
    return Decision("joined", about=about)


def names_an_unknown_reference(facts: Facts) -> Decision | None:
    if facts.mail.named_references:
        unknown = ", ".join(facts.mail.named_references)
        return Decision("triage", f"names an unknown reference ({unknown})")
    return None


def text_names_a_request(facts: Facts) -> Decision | None:
    """Text naming a request is a reply, or an auto-responder quoting our letter, never a new
    request: it joins only when the request is one and the sender is its requester."""
    mail, about = facts.mail, facts.about
    if not mail.body_references:
        return None
    if len(facts.quoted) > 1:
        named = ", ".join(r.reference for r in facts.quoted)
        return Decision("triage", f"the text names several requests ({named})")
    if about is None:
        unknown = ", ".join(mail.body_references)
        return Decision("triage", f"the text names an unknown reference ({unknown})")
    if not from_requester(about, mail.from_address):
        reason = f"the text names {about.reference}, but the sender is not its requester"
        return Decision("triage", reason, about)
    return Decision("joined", about=about)


def phishing_from_a_stranger(facts: Facts) -> Decision | None:
    """A phishing-like subject ("verify your account", a notice that an account is suspended)
    from a sender with no request of theirs is never a request: a handler looks at it."""
    words = facts.mail.phishing_like
    if words and not facts.known_sender:
        return Decision(
            "triage", f"phishing-like subject ({words}) from a sender with no relation to us"
        )
    return None


def no_single_type(facts: Facts) -> Decision | None:
    """A new request needs exactly one request type named."""
    mail = facts.mail
    if mail.detected_type is None or mail.type_problem:
        return Decision("triage", mail.type_problem or "no request type recognised")
    return None


def no_sender(facts: Facts) -> Decision | None:
    if not facts.mail.from_address:
        return Decision("triage", "no usable sender address to answer")
    return None


def sent_by_an_agent(facts: Facts) -> Decision | None:
    """An agent's mail (Art. 37(3)) is not the principal's request: a handler converts it with
    the agent recorded, so that letters name the principal and the principal is told."""
    words = facts.mail.agent_words
    if words:
        reason = f"reads as sent by an agent ('{words}'): convert it with the agent recorded"
        return Decision("triage", reason)
    return None


def sender_over_limit(facts: Facts) -> Decision | None:
    """A mail loop never makes requests without end."""
    policy = facts.policy
    if facts.recent_requests >= policy.requests_per_sender:
        hours = policy.sender_window.total_seconds() / 3600
        return Decision(
            "triage",
            f"this sender's mail already made {policy.requests_per_sender} request(s) "
            f"in the last {hours:g} hours (a possible mail loop)",
        )
    return None


def new_request(facts: Facts) -> Decision | None:
    """What is left names one type, from a sender we can answer: a request."""
    mail = facts.mail
    assert mail.detected_type is not None
    assert mail.from_address is not None
    try:
        data = RequestCreate(
            type=mail.detected_type,
            name=requester_name(mail.from_name, mail.from_address),
            email=mail.from_address,
            details=request_details(mail.subject, mail.text),
            language="en" if mail.language == "en" else "ja",
        )
    except ValidationError as exc:
        fields = ", ".join(str(e["loc"][0]) for e in exc.errors() if e.get("loc"))
        return Decision("triage", f"cannot make a request of it: invalid {fields or 'fields'}")
    if data.type not in facts.configured_types:
        return Decision("triage", f"the type '{data.type}' is not configured")
    return Decision("created", create=data)


Rule = Callable[[Facts], Decision | None]

RULES: tuple[Rule, ...] = (
    not_understood,
    automatic_mail,
    our_own_letter,
    answers_several_requests,
    answers_a_closed_request,
    answers_a_request,
    names_an_unknown_reference,
    text_names_a_request,
    phishing_from_a_stranger,
    no_single_type,
    no_sender,
    sent_by_an_agent,
    sender_over_limit,
    new_request,
)


def decide(facts: Facts) -> Decision:
    """The decision of the first rule that applies (the last one always does)."""
    for rule in RULES:
        decision = rule(facts)
        if decision is not None:
            return decision
    raise AssertionError("new_request always decides")  # pragma: no cover


# --------------------------------------------------------------------------- helpers


def from_requester(request: Request, address: str | None) -> bool:
    """Whether ``address`` is the request's requester's (or agent's)."""
    if not address:
        return False
    known = {request.requester_email.lower(), (request.agent_email or "").lower()}
    return address.lower() in known


def requester_name(name: str | None, address: str) -> str:
    """The display name, else the address's local part."""
    name = " ".join((name or "").split())[:200]
    return name or address.partition("@")[0][:200] or address[:200]


def request_details(subject: str | None, text: str) -> str:
    """A request's details from a message: its subject and text."""
    details = "\n\n".join(part for part in ((subject or "").strip(), text.strip()) if part)
    return (details or "(empty message)")[:MAX_DETAILS]
