"""The decision forms of a request's page, built from the workflow definitions.

Which actions appear is what the engine allows in the request's state; which fields each one
asks for is the transition's ``requires`` and ``accepts`` in workflows/. Only the choices that
fit are offered: the identity methods the workflow accepts (``email_link`` only where it
suffices and the address is confirmed, with no agent), the reasons of the catalog that fit
this type and state, the workflow's authority documents and disclosure methods.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dsrflow.requests.models import Request
from dsrflow.requests.schemas import TransitionIn
from dsrflow.runtime import Runtime
from dsrflow.workflow.definitions import ANY_OPEN_STATE, TransitionDef, WorkflowDef

# Fields whose words go to the requester in the letter.
TO_REQUESTER = frozenset({"message", "summary", "explanation", "method_difficulty", "measure"})
# Fields only asked when an agent acts.
AGENT_ONLY = frozenset({"authority_document", "agent_method"})
# Fields the console does not offer as a form field.
NOT_OFFERED: frozenset[str] = frozenset()
# Fields the console may post (the API's transition fields).
POSTED = frozenset(TransitionIn.model_fields) - {"trigger", "expected_version", "withheld"}


@dataclass
class Reason:
    code: str
    label: str
    citation: str
    statutory_text: str


@dataclass
class FieldSpec:
    name: str
    label: str
    kind: str  # select | reasons | textarea
    required: bool
    to_requester: bool = False
    choices: list[tuple[str, str]] = field(default_factory=list)
    reasons: list[Reason] = field(default_factory=list)
    default: str = ""
    hint: str = ""


@dataclass
class ActionForm:
    trigger: str
    label: str
    fields: list[FieldSpec]


def transition_from(wf: WorkflowDef, trigger: str, state: str) -> TransitionDef | None:
    for t in wf.transitions_for(trigger):
        if state in t.source or ANY_OPEN_STATE in t.source:
            return t
    return None


def action_forms(rt: Runtime, request: Request, lang: str, t: dict[str, Any]) -> list[ActionForm]:
    """One form per trigger allowed now, each with the fields it needs."""
    wf = rt.definitions.workflow(request.type)
    forms = []
    for trigger in rt.engine.allowed_triggers(request.type, request.state):
        transition = transition_from(wf, trigger, request.state)
        if transition is None:
            continue
        specs = []
        for name in [*transition.requires, *transition.accepts]:
            spec = _field(rt, request, wf, name, name in transition.requires, lang, t)
            if spec is not None:
                specs.append(spec)
        label = (
            transition.label.for_language(lang)
            if transition.label
            else t["triggers"].get(trigger, trigger)
        )
        forms.append(ActionForm(trigger=trigger, label=label, fields=specs))
    return forms


def _field(
    rt: Runtime,
    request: Request,
    wf: WorkflowDef,
    name: str,
    required: bool,
    lang: str,
    t: dict[str, Any],
) -> FieldSpec | None:
    if name in NOT_OFFERED:
        return None
    agent = request.agent_relation is not None
    if name in AGENT_ONLY and not agent:
        return None
    spec = FieldSpec(
        name=name,
        label=t["fields"].get(name, name),
        kind="textarea",
        required=required or name in AGENT_ONLY,
        to_requester=name in TO_REQUESTER,
    )
    if name == "method":
        link_ok = wf.email_link_sufficient and request.email_verified_at is not None and not agent
        methods = [m for m in wf.identity_methods if m != "email_link" or link_ok]
        spec.kind = "select"
        spec.choices = [(m, t["identity_methods"].get(m, m)) for m in methods]
    elif name == "reason_code":
        spec.kind = "reasons"
        spec.reasons = [
            Reason(
                code=r.code,
                label=r.label.for_language(lang),
                citation=r.citation.for_language(lang),
                statutory_text=r.statutory_text.for_language(lang),
            )
            for r in rt.definitions.reasons_for(request.type, request.state)
        ]
    elif name == "withheld":
        # A partial outcome: one part withheld, for a substantive reason (never a PROC_* one).
        spec.kind = "withheld"
        spec.required = False
        spec.reasons = [
            Reason(
                code=r.code,
                label=r.label.for_language(lang),
                citation=r.citation.for_language(lang),
                statutory_text=r.statutory_text.for_language(lang),
            )
            for r in rt.definitions.reasons_for(request.type, request.state)
            if not r.code.startswith("PROC_")
        ]
    elif name == "agent_method":
        spec.kind = "select"
        spec.choices = [
            (m, t["identity_methods"].get(m, m)) for m in wf.identity_methods if m != "email_link"
        ]
    elif name == "evidence":
        spec.hint = t["hints"]["evidence"]
    elif name == "method_used":
        options = wf.disclosure_method_options
        spec.kind = "select"
        spec.choices = [
            (m, options[m].label.for_language(lang) if m in options else m)
            for m in wf.disclosure_methods
        ]
        spec.default = request.disclosure_method or ""
    elif name == "authority_document" and wf.authority_documents:
        spec.kind = "select"
        spec.choices = [
            (key, label.for_language(lang)) for key, label in wf.authority_documents.items()
        ]
    elif name == "method_difficulty":
        spec.required = False  # required only when the method used is not the one asked for
        spec.hint = t["hints"]["method_difficulty"]
    return spec


def transition_fields(form: dict[str, Any]) -> dict[str, Any]:
    """The API's transition fields from a posted form (empty ones left out); a withheld part
    comes as ``withheld_reason_code`` and ``withheld_explanation``."""
    fields: dict[str, Any] = {
        key: value.strip()
        for key, value in form.items()
        if key in POSTED and isinstance(value, str) and value.strip()
    }
    code = str(form.get("withheld_reason_code") or "").strip()
    explanation = str(form.get("withheld_explanation") or "").strip()
    if code or explanation:
        fields["withheld"] = [{"reason_code": code, "explanation": explanation}]
    return fields
