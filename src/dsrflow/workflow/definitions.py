"""Workflow definitions: the YAML schema, loading, and cross-file validation.

Everything a privacy officer may change (states, transitions, reasons, identity methods, fees,
deadlines, reminders, letters) lives in ``workflows/``. This module turns those files into typed
objects and refuses to start on any error, naming the file and the key.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import time
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from dsrflow.yamlio import read_yaml

# The contract (DESIGN.md): every workflow has these states and triggers.
REQUIRED_STATES = (
    "received",
    "identity_verified",
    "awaiting_requester",
    "fulfilled",
    "refused",
    "not_held",
    "withdrawn",
)
# The state in which a request waits for its requester (info_received resumes from it).
AWAITING_STATE = "awaiting_requester"
TERMINAL_STATES = ("fulfilled", "refused", "not_held", "substituted", "withdrawn")
REQUIRED_TRIGGERS = (
    "verify_identity",
    "request_info",
    "info_received",
    "fulfill",
    "report_not_held",
    "refuse",
    "withdraw",
)
# Body fields a transition may require or accept; their rules live in the engine.
TRANSITION_FIELDS = (
    "method",
    "note",
    "message",
    "summary",
    "withheld",
    "reason_code",
    "explanation",
    "evidence",
    "authority_document",
    "agent_method",
    "method_used",
    "method_difficulty",
    "measure",
)
# The identity method that only proves control of the e-mail address.
EMAIL_LINK = "email_link"
# How reasons may be used: a whole refusal, or a withheld part of a fulfilment.
ReasonUse = Literal["refuse", "withheld"]
REASON_USES: tuple[ReasonUse, ...] = ("refuse", "withheld")
LANGUAGES = ("ja", "en")
# Letters the service and the scheduler send for every workflow (keys of a workflow's `letters`).
REQUIRED_LETTERS = (
    "acknowledgment",
    "handler_notice",
    "verification",
    "due_reminder",
    "overdue",
    "acknowledgment_unsent",
    "identity_reminder",
    "identity_escalation",
    "deadline_extended",
    "agent_notice",
    "art39_alert",
)
ANY_OPEN_STATE = "*"


class WorkflowError(Exception):
    """One or more definition errors; each names the file and the key."""

    def __init__(self, errors: list[str]):
        super().__init__("\n".join(errors))
        self.errors = errors


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Text(_Strict):
    ja: str = Field(min_length=1)
    en: str = Field(min_length=1)

    def for_language(self, language: str) -> str:
        return self.en if language == "en" else self.ja


class StateDef(_Strict):
    terminal: bool = False
    stamp: Literal["received_at", "identity_verified_at", "awaiting_requester_at", "closed_at"]
    label: Text


class TransitionDef(_Strict):
    trigger: str
    source: list[str]
    dest: str
    requires: list[str] = []
    accepts: list[str] = []
    guards: list[str] = []
    letter: str | None = None
    label: Text | None = None

    @field_validator("source", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class DeadlineDef(_Strict):
    days: int = Field(default=14, ge=1, le=365)
    counting: Literal["calendar", "business"] = "calendar"
    # Art. 39: the requester may sue two weeks after arrival; false where it does not apply.
    art39: bool = True
    pause_while_awaiting_requester: bool = False
    extension_max_days: int = Field(default=0, ge=0, le=365)
    # A target (more than 14 days, or business days over holidays) may land on or after the
    # Art. 39 date; unless this is true, it is cut back to the day before that date.
    confirm_past_art39: bool = False


class RemindersDef(_Strict):
    # Days before the due date on which the handlers are reminded, at ``send_at`` local time.
    before_due_days: list[Annotated[int, Field(ge=0, le=365)]] = [7, 3, 1, 0]
    # While overdue, the handlers (and ESCALATION_EMAIL) are told every N days.
    overdue_every_days: int = Field(default=1, ge=1)
    send_at: time = time(9, 0)
    # The handlers are told when a request's acknowledgment has not gone out after this long.
    acknowledgment_grace_minutes: int = Field(default=60, ge=1)
    # The handlers are alerted daily from this many days before the Art. 39 date, and after it.
    art39_alert_days: int = Field(default=3, ge=0, le=14)


class IdentityWaitDef(_Strict):
    # Days after arrival, still unverified, on which the requester is reminded.
    remind_requester_after_days: list[Annotated[int, Field(ge=1, le=365)]] = [3, 7]
    # Days after arrival, still unverified, after which the handlers are asked to decide.
    escalate_after_days: int = Field(default=14, ge=1)


class FeeDef(_Strict):
    amount_jpy: int = Field(ge=0)
    article: str = "38"
    # Whether fulfilment waits until recorded payments cover the fee.
    payment_before_disclosure: bool = False


class DisclosureMethodDef(_Strict):
    label: Text
    # Whether the requester must give a postal address to designate this method.
    postal_address_required: bool = False


class NoticeDef(_Strict):
    """How this type's outcome letters state the decision (Arts. 32(3), 33(3), 34(3), 35(7))."""

    article: Text  # the notice provision, as letters cite it
    request: Text  # what the requester made (a request; for Art. 32(2) the statute's own word)
    refused: Text  # the decision not to act, in the statute's words
    withheld: Text  # the lead-in to the parts not acted on
    not_held: Text  # the neutral answer that nothing concerned is held


class WorkflowDef(_Strict):
    id: str
    order: int = 100
    title: Text
    article: str
    initial: str = "received"
    states: dict[str, StateDef]
    transitions: list[TransitionDef]
    identity_methods: list[str] = Field(min_length=1)
    # Whether confirming control of the e-mail address alone verifies identity for this type.
    email_link_sufficient: bool = False
    disclosure_methods: list[str] = []
    disclosure_method_options: dict[str, DisclosureMethodDef] = {}
    # Documents that prove an agent's authority (id -> label).
    authority_documents: dict[str, Text] = {}
    fee: FeeDef | None = None
    deadline: DeadlineDef = DeadlineDef()
    reminders: RemindersDef = RemindersDef()
    identity_wait: IdentityWaitDef = IdentityWaitDef()
    letters: dict[str, str] = {}
    notice: NoticeDef | None = None

    @property
    def terminal_states(self) -> list[str]:
        return [name for name, state in self.states.items() if state.terminal]

    @property
    def triggers(self) -> list[str]:
        return list(dict.fromkeys(t.trigger for t in self.transitions))

    def transitions_for(self, trigger: str) -> list[TransitionDef]:
        return [t for t in self.transitions if t.trigger == trigger]


class LegalReason(_Strict):
    code: str = Field(pattern=r"^[A-Z][A-Z0-9_]+$")
    article: str
    # How a letter cites the provision: the formal Japanese form, and "Art. N(N)(i)" in English.
    citation: Text
    label: Text
    statutory_text: Text
    types: list[str] = Field(min_length=1)
    states: list[str] = Field(min_length=1)
    uses: list[ReasonUse] = list(REASON_USES)
    # Fits only where the workflow has a fee that no recorded payment covers.
    requires_fee: bool = False

    def fits(self, request_type: str, state: str) -> bool:
        return request_type in self.types and state in self.states


class ReasonCatalog(_Strict):
    reasons: list[LegalReason]


class Branding(_Strict):
    """How the requester pages look and whom they name (every field optional)."""

    # An SVG, PNG or JPEG file, relative to the workflows directory.
    logo: str | None = None
    # The accent colour of the pages' header and buttons, as #rrggbb.
    colour: str = Field(default="#1f4e79", pattern=r"^#[0-9a-fA-F]{6}$")
    address: Text | None = None
    phone: str | None = None
    hours: Text | None = None


class Company(_Strict):
    name: Text
    branding: Branding = Branding()


@dataclass(frozen=True)
class Definitions:
    """Every loaded workflow and the reason catalog, validated together."""

    workflows: dict[str, WorkflowDef]
    reasons: dict[str, LegalReason]
    company: Company
    directory: Path

    def workflow(self, request_type: str) -> WorkflowDef:
        return self.workflows[request_type]

    def reasons_for(
        self, request_type: str, state: str, *, fee_outstanding: bool | None = None
    ) -> list[LegalReason]:
        """The reasons that fit ``request_type`` in ``state``; a fee reason only where the
        workflow has a fee (and, when ``fee_outstanding`` is given, only while it is unpaid)."""
        wf = self.workflows.get(request_type)
        has_fee = wf is not None and wf.fee is not None
        return [
            r
            for r in self.reasons.values()
            if r.fits(request_type, state)
            and (not r.requires_fee or (has_fee and fee_outstanding is not False))
        ]


def _is_image_file(directory: Path, name: str) -> bool:
    path = (directory / name).resolve()
    return (
        path.is_file()
        and path.is_relative_to(directory.resolve())
        and path.suffix.lower() in (".svg", ".png", ".jpg", ".jpeg")
    )


def _read_yaml(path: Path, errors: list[str]) -> Any:
    try:
        return read_yaml(path)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        errors.append(f"{path}: cannot be read as YAML: {exc}")
        return None


def _schema_errors(path: Path, exc: ValidationError) -> Iterable[str]:
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"]) or "(top level)"
        yield f"{path}: {key}: {error['msg']}"


def _check_workflow(
    path: Path, wf: WorkflowDef, guards: Iterable[str], templates: Path
) -> Iterable[str]:
    yield from _check_states(path, wf)
    yield from _check_transitions(path, wf, set(guards), templates)
    yield from _check_letters(path, wf, templates)
    yield from _check_methods(path, wf)


def _check_states(path: Path, wf: WorkflowDef) -> Iterable[str]:
    if wf.id != path.stem:
        yield f"{path}: id: '{wf.id}' must match the file name '{path.stem}'"
    for state in REQUIRED_STATES:
        if state not in wf.states:
            yield f"{path}: states: the required state '{state}' is missing"
    for state in TERMINAL_STATES:
        if state in wf.states and not wf.states[state].terminal:
            yield f"{path}: states.{state}.terminal: must be true"
    if wf.initial not in wf.states:
        yield f"{path}: initial: unknown state '{wf.initial}'"


def _check_transitions(
    path: Path, wf: WorkflowDef, known_guards: set[str], templates: Path
) -> Iterable[str]:
    for trigger in REQUIRED_TRIGGERS:
        if trigger not in wf.triggers:
            yield f"{path}: transitions: the required trigger '{trigger}' is missing"
    for i, t in enumerate(wf.transitions):
        where = f"{path}: transitions[{i}] ({t.trigger})"
        for source in t.source:
            if source != ANY_OPEN_STATE and source not in wf.states:
                yield f"{where}.source: unknown state '{source}'"
            elif source in wf.states and wf.states[source].terminal:
                yield f"{where}.source: '{source}' is terminal; nothing may leave it"
        if t.dest not in wf.states:
            yield f"{where}.dest: unknown state '{t.dest}'"
        for field in [*t.requires, *t.accepts]:
            if field not in TRANSITION_FIELDS:
                yield f"{where}.requires/accepts: unknown field '{field}'"
        for guard in t.guards:
            if guard not in known_guards:
                yield f"{where}.guards: unknown guard '{guard}' (known: {sorted(known_guards)})"
        if t.letter is not None:
            yield from _check_letter(f"{where}.letter", t.letter, templates)


def _check_letters(path: Path, wf: WorkflowDef, templates: Path) -> Iterable[str]:
    for key in REQUIRED_LETTERS:
        if key not in wf.letters:
            yield f"{path}: letters.{key}: missing (the template this workflow sends for it)"
    for key, letter in wf.letters.items():
        yield from _check_letter(f"{path}: letters.{key}", letter, templates)


def _check_methods(path: Path, wf: WorkflowDef) -> Iterable[str]:
    if "method" in {f for t in wf.transitions for f in t.requires} and not wf.identity_methods:
        yield f"{path}: identity_methods: at least one method is needed"
    for method in wf.disclosure_methods:
        if method not in wf.disclosure_method_options:
            yield f"{path}: disclosure_method_options.{method}: missing (its label)"
    if wf.disclosure_methods:
        for i, t in enumerate(wf.transitions):
            if t.trigger == "fulfill" and "method_used" not in t.requires:
                yield (
                    f"{path}: transitions[{i}] (fulfill).requires: must include 'method_used' "
                    "where the workflow offers disclosure methods"
                )
    if "agent_method" in {f for t in wf.transitions for f in t.accepts} and not (
        wf.authority_documents
    ):
        yield f"{path}: authority_documents: at least one document is needed for agents"


def _check_letter(where: str, letter: str, templates: Path) -> Iterable[str]:
    for language in LANGUAGES:
        if not (templates / language / f"{letter}.txt.j2").is_file():
            yield f"{where}: no template {templates / language / (letter + '.txt.j2')}"


def load_definitions(directory: Path, guards: Iterable[str] = ()) -> Definitions:
    """Load and validate every file in ``directory``; raise WorkflowError listing all errors."""
    errors: list[str] = []
    directory = Path(directory)
    guards = list(guards)
    templates = directory / "templates"
    if not directory.is_dir():
        raise WorkflowError([f"{directory}: the workflows directory does not exist"])

    reasons: dict[str, LegalReason] = {}
    catalog_path = directory / "legal_reasons.yaml"
    raw_catalog = _read_yaml(catalog_path, errors) if catalog_path.exists() else None
    if not catalog_path.exists():
        errors.append(f"{catalog_path}: the reason catalog is missing")
    elif raw_catalog is not None:
        try:
            for reason in ReasonCatalog.model_validate(raw_catalog).reasons:
                if reason.code in reasons:
                    errors.append(f"{catalog_path}: reasons.{reason.code}: duplicate code")
                reasons[reason.code] = reason
        except ValidationError as exc:
            errors.extend(_schema_errors(catalog_path, exc))

    company_path = directory / "company.yaml"
    company = None
    raw_company = _read_yaml(company_path, errors) if company_path.exists() else None
    if not company_path.exists():
        errors.append(f"{company_path}: the company file is missing")
    elif raw_company is not None:
        try:
            company = Company.model_validate(raw_company)
            logo = company.branding.logo
            if logo is not None and not _is_image_file(directory, logo):
                errors.append(
                    f"{company_path}: branding.logo: '{logo}' is no .svg, .png or .jpg file "
                    f"inside {directory}"
                )
        except ValidationError as exc:
            errors.extend(_schema_errors(company_path, exc))

    workflows: dict[str, WorkflowDef] = {}
    for path in sorted(directory.glob("*.yaml")):
        if path in (catalog_path, company_path) or path.name.startswith("_"):
            continue
        raw = _read_yaml(path, errors)
        if raw is None:
            continue
        try:
            wf = WorkflowDef.model_validate(raw)
        except ValidationError as exc:
            errors.extend(_schema_errors(path, exc))
            continue
        errors.extend(_check_workflow(path, wf, guards, templates))
        workflows[wf.id] = wf
    if not workflows and not errors:
        errors.append(f"{directory}: no workflow files (*.yaml) found")

    for code, reason in reasons.items():
        for request_type in reason.types:
            if workflows and request_type not in workflows:
                errors.append(
                    f"{catalog_path}: reasons.{code}.types: unknown type '{request_type}'"
                )
        for state in reason.states:
            if workflows and not any(state in wf.states for wf in workflows.values()):
                errors.append(f"{catalog_path}: reasons.{code}.states: unknown state '{state}'")
    for wf in workflows.values():
        if "refuse" in wf.triggers and not any(
            r.types and wf.id in r.types for r in reasons.values()
        ):
            errors.append(
                f"{directory / (wf.id + '.yaml')}: no reason in the catalog fits this type"
            )

    if errors or company is None:
        raise WorkflowError(errors)
    ordered = dict(sorted(workflows.items(), key=lambda item: (item[1].order, item[0])))
    return Definitions(workflows=ordered, reasons=reasons, company=company, directory=directory)
