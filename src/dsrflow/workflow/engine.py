"""The workflow engine: one shared ``transitions`` machine per workflow, built from definitions.

The engine names no request type. It answers two questions for the service: which triggers are
allowed for a request in a given state, and what state a trigger leads to (after checking the
fields the transition requires). It does no I/O: the service persists what the engine decides.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from transitions import EventData, Machine, MachineError

from dsrflow.errors import Invalid, TriggerNotAllowed
from dsrflow.workflow.definitions import (
    ANY_OPEN_STATE,
    EMAIL_LINK,
    Definitions,
    TransitionDef,
    WorkflowDef,
)

# Outcomes that are no reason codes: what to fire instead (the 422 says so).
NOT_REASONS = {
    "DISC_NOT_EXIST": "non-existence is an answer: fire report_not_held",
    "TPR_EXCLUDED": "answer with report_not_held, which neither confirms nor denies",
    "CEASE_ALTERNATIVE_MEASURE": "a measure taken instead is the substitute trigger",
}


@dataclass(eq=False)
class Subject:
    """The small object a machine fires on: the state of a request, never the row itself.

    Compared by identity: ``transitions`` skips adding a model equal to one it holds, and two
    requests in the same state must never be mistaken for one.
    """

    state: str
    resume_state: str | None = None
    # What the field rules need to know about the request (never its personal data).
    email_confirmed: bool = False  # the requester opened the e-mailed link
    agent: bool = False  # an agent acts for the principal
    requested_method: str | None = None  # the disclosure method the requester designated
    fee_outstanding: bool = False  # the workflow has a fee that no payment covers yet


Guard = Callable[[Subject, str], bool]

# Guards named in YAML resolve through this registry only; unknown names fail at load time.
GUARDS: dict[str, Guard] = {
    # info_received returns the request to the state it left for awaiting_requester.
    "resumes_previous_state": lambda subject, dest: subject.resume_state == dest,
}


@dataclass(frozen=True)
class Outcome:
    trigger: str
    source: str
    dest: str
    transition: TransitionDef


def _non_empty(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


class Engine:
    """Machines for every loaded workflow, plus the field rules of the contract's triggers."""

    def __init__(self, definitions: Definitions):
        self.definitions = definitions
        self._machines = {wf_id: self._build(wf) for wf_id, wf in definitions.workflows.items()}
        # A shared machine's model list is not thread-safe; firing is microseconds, so one lock
        # per machine costs nothing measurable and keeps concurrent requests apart.
        self._locks = {wf_id: threading.Lock() for wf_id in self._machines}

    @staticmethod
    def _build(wf: WorkflowDef) -> Machine:
        open_states = [name for name, s in wf.states.items() if not s.terminal]
        transitions = []
        for t in wf.transitions:
            sources = open_states if ANY_OPEN_STATE in t.source else t.source
            conditions = [_condition(GUARDS[name]) for name in t.guards]
            transitions.append(
                {"trigger": t.trigger, "source": sources, "dest": t.dest, "conditions": conditions}
            )
        return Machine(
            model=None,
            states=list(wf.states),
            transitions=transitions,
            initial=wf.initial,
            auto_transitions=False,
            send_event=True,
            ignore_invalid_triggers=False,
        )

    def allowed_triggers(self, request_type: str, state: str) -> list[str]:
        """Triggers that have a transition out of ``state`` (guards are checked on firing)."""
        return list(self._machines[request_type].get_triggers(state))

    def fire(
        self,
        request_type: str,
        subject: Subject,
        trigger: str,
        fields: Mapping[str, Any],
    ) -> Outcome:
        """Check ``fields`` against the transition and return where ``trigger`` leads.

        Raises TriggerNotAllowed (nothing to fire from here) or Invalid (bad body).
        ``subject`` is not changed; the caller persists the outcome.
        """
        wf = self.definitions.workflow(request_type)
        allowed = self.allowed_triggers(request_type, subject.state)
        if trigger not in allowed:
            raise TriggerNotAllowed(trigger, subject.state, allowed)
        candidates = [
            t
            for t in wf.transitions_for(trigger)
            if subject.state in t.source or ANY_OPEN_STATE in t.source
        ]
        self._check_fields(wf, subject, candidates[0], fields)

        machine = self._machines[request_type]
        model = Subject(state=subject.state, resume_state=subject.resume_state)
        with self._locks[request_type]:
            machine.add_model(model, initial=subject.state)
            try:
                fired = model.trigger(trigger)  # type: ignore[attr-defined]
            except MachineError as exc:
                raise TriggerNotAllowed(trigger, subject.state, allowed) from exc
            finally:
                machine.remove_model(model)
        if not fired:
            # A guard said no (e.g. nothing to resume to).
            raise TriggerNotAllowed(trigger, subject.state, allowed)
        chosen = next(t for t in candidates if t.dest == model.state)
        return Outcome(trigger=trigger, source=subject.state, dest=model.state, transition=chosen)

    def _check_fields(
        self,
        wf: WorkflowDef,
        subject: Subject,
        transition: TransitionDef,
        fields: Mapping[str, Any],
    ) -> None:
        errors: dict[str, str] = {}
        permitted = {*transition.requires, *transition.accepts}
        for name, value in fields.items():
            if value is not None and name not in permitted:
                errors[name] = f"not accepted by '{transition.trigger}'"
        for name in transition.requires:
            if fields.get(name) in (None, "", []):
                errors[name] = "is required"
        for name in transition.requires:
            if name in fields and name not in errors and not _non_empty(fields[name]):
                errors[name] = "must not be empty"
        if "method" in fields and "method" not in errors:
            errors.update(_identity_problems(wf, subject, fields))
        if "method_used" in permitted:
            errors.update(_method_problems(wf, subject, fields, errors))
        code = fields.get("reason_code")
        if code is not None and "reason_code" not in errors:
            problem = self._reason_problem(wf.id, subject, code, "refuse")
            if problem:
                errors["reason_code"] = problem
        for i, part in enumerate(fields.get("withheld") or []):
            part_code = part.get("reason_code") if isinstance(part, Mapping) else None
            problem = self._reason_problem(wf.id, subject, part_code, "withheld")
            if problem:
                errors[f"withheld[{i}].reason_code"] = problem
            if not isinstance(part, Mapping) or not _non_empty(part.get("explanation")):
                errors[f"withheld[{i}].explanation"] = "must not be empty"
        if (
            transition.trigger == "fulfill"
            and wf.fee is not None
            and wf.fee.payment_before_disclosure
            and subject.fee_outstanding
        ):
            errors["payments"] = (
                f"the fee of {wf.fee.amount_jpy} JPY is not yet paid; this workflow fulfils "
                "only once a payment covers it"
            )
        if errors:
            raise Invalid(errors)

    def _reason_problem(
        self, request_type: str, subject: Subject, code: Any, use: str
    ) -> str | None:
        state = subject.state
        if isinstance(code, str) and code in NOT_REASONS:
            return f"'{code}' is no reason code: {NOT_REASONS[code]}"
        reason = self.definitions.reasons.get(code) if isinstance(code, str) else None
        if reason is None:
            return f"unknown reason code '{code}'"
        if not reason.fits(request_type, state):
            return f"'{code}' does not apply to a {request_type} request in state '{state}'"
        if use not in reason.uses:
            return (
                f"'{code}' is never a withheld part of a fulfilment"
                if use == "withheld"
                else f"'{code}' is only a withheld part of a fulfilment, not a refusal"
            )
        if reason.requires_fee:
            wf = self.definitions.workflow(request_type)
            if wf.fee is None:
                return f"'{code}' needs a fee, and a {request_type} request has none"
            if not subject.fee_outstanding:
                return f"'{code}' does not apply: the recorded payments cover the fee"
        return None


def _identity_problems(
    wf: WorkflowDef, subject: Subject, fields: Mapping[str, Any]
) -> dict[str, str]:
    """The rules of verify_identity: an accepted method, evidence of what was checked, and for
    an agent the authority and the agent's own identity."""
    errors: dict[str, str] = {}
    method = fields["method"]
    if method not in wf.identity_methods:
        errors["method"] = f"'{method}' is not accepted; accepted: {wf.identity_methods}"
    elif method == EMAIL_LINK:
        if not wf.email_link_sufficient:
            errors["method"] = f"'{EMAIL_LINK}' alone does not verify identity for {wf.id}"
        elif subject.agent:
            errors["method"] = f"'{EMAIL_LINK}' cannot verify a request made by an agent"
        elif not subject.email_confirmed:
            errors["method"] = (
                f"'{EMAIL_LINK}' needs the requester to have confirmed the address through "
                "the e-mailed link, which has not happened"
            )
    elif not _non_empty(fields.get("evidence")):
        errors["evidence"] = f"is required for '{method}': say what was checked"
    if subject.agent:
        document = fields.get("authority_document")
        if not _non_empty(document):
            errors["authority_document"] = (
                f"is required for an agent; one of {sorted(wf.authority_documents)}"
            )
        elif document not in wf.authority_documents:
            errors["authority_document"] = (
                f"'{document}' is not accepted; accepted: {sorted(wf.authority_documents)}"
            )
        agent_method = fields.get("agent_method")
        agent_methods = [m for m in wf.identity_methods if m != EMAIL_LINK]
        if not _non_empty(agent_method):
            errors["agent_method"] = (
                f"is required for an agent (how the agent's own identity was checked); "
                f"one of {agent_methods}"
            )
        elif agent_method not in agent_methods:
            errors["agent_method"] = f"'{agent_method}' is not accepted; accepted: {agent_methods}"
    else:
        for name in ("authority_document", "agent_method"):
            if fields.get(name) is not None:
                errors[name] = "only for a request made by an agent"
    return errors


def _method_problems(
    wf: WorkflowDef, subject: Subject, fields: Mapping[str, Any], errors: Mapping[str, str]
) -> dict[str, str]:
    """Art. 33(2)-(3): disclose by the designated method, or say why that was difficult."""
    problems: dict[str, str] = {}
    used = fields.get("method_used")
    if "method_used" in errors or used is None:
        return problems
    if used not in wf.disclosure_methods:
        problems["method_used"] = f"'{used}' is not offered; offered: {wf.disclosure_methods}"
        return problems
    differs = subject.requested_method is not None and used != subject.requested_method
    difficulty = fields.get("method_difficulty")
    if differs and not _non_empty(difficulty):
        problems["method_difficulty"] = (
            f"is required: the requester asked for '{subject.requested_method}'; explain why "
            "that method is difficult (sent with the Art. 33(3) notice)"
        )
    elif not differs and difficulty is not None:
        problems["method_difficulty"] = "only when the method used differs from the one asked for"
    return problems


def _condition(guard: Guard) -> Callable[[EventData], bool]:
    def check(event: EventData) -> bool:
        assert isinstance(event.model, Subject)
        assert event.transition is not None
        return guard(event.model, str(event.transition.dest))

    return check
