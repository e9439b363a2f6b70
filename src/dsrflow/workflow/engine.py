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
    Definitions,
    TransitionDef,
    WorkflowDef,
)


@dataclass(eq=False)
class Subject:
    """The small object a machine fires on: the state of a request, never the row itself.

    Compared by identity: ``transitions`` skips adding a model equal to one it holds, and two
    requests in the same state must never be mistaken for one.
    """

    state: str
    resume_state: str | None = None


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
        self._check_fields(wf, subject.state, candidates[0], fields)

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
        self, wf: WorkflowDef, state: str, transition: TransitionDef, fields: Mapping[str, Any]
    ) -> None:
        errors: dict[str, str] = {}
        permitted = {*transition.requires, *transition.accepts}
        for name, value in fields.items():
            if value is not None and name not in permitted:
                errors[name] = f"not accepted by '{transition.trigger}'"
        for name in transition.requires:
            if fields.get(name) in (None, "", []):
                errors[name] = "is required"
        for name in ("message", "summary", "explanation"):
            if name in transition.requires and name not in errors and not _non_empty(fields[name]):
                errors[name] = "must not be empty"
        method = fields.get("method")
        if method is not None and "method" not in errors and method not in wf.identity_methods:
            errors["method"] = f"'{method}' is not accepted; accepted: {wf.identity_methods}"
        code = fields.get("reason_code")
        if code is not None and "reason_code" not in errors:
            problem = self._reason_problem(wf.id, state, code)
            if problem:
                errors["reason_code"] = problem
        for i, part in enumerate(fields.get("withheld") or []):
            part_code = part.get("reason_code") if isinstance(part, Mapping) else None
            problem = self._reason_problem(wf.id, state, part_code)
            if problem:
                errors[f"withheld[{i}].reason_code"] = problem
            if not isinstance(part, Mapping) or not _non_empty(part.get("explanation")):
                errors[f"withheld[{i}].explanation"] = "must not be empty"
        if errors:
            raise Invalid(errors)

    def _reason_problem(self, request_type: str, state: str, code: Any) -> str | None:
        reason = self.definitions.reasons.get(code) if isinstance(code, str) else None
        if reason is None:
            return f"unknown reason code '{code}'"
        if not reason.fits(request_type, state):
            return f"'{code}' does not apply to a {request_type} request in state '{state}'"
        return None


def _condition(guard: Guard) -> Callable[[EventData], bool]:
    def check(event: EventData) -> bool:
        assert isinstance(event.model, Subject) and event.transition is not None
        return guard(event.model, str(event.transition.dest))

    return check
