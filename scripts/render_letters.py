"""Print docs/letters.md: one letter of each kind in each language, rendered from
workflows/templates/ with realistic values. Run by `make letters`.

The letters are made the way the service makes them: requests are created and decided through
`dsrflow.requests.service` in a throwaway SQLite database, and the outbox rows it writes are
printed; the delivery-failure notice comes from a real flush whose sender refuses one address.
Sample people and texts are in scripts/letter_samples.yaml. Tokens and ids, random in real
use, are replaced by fixed placeholders so the output changes only when a template does.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import update
from sqlmodel import Session, col, select

from dsrflow.config import Settings
from dsrflow.db import migrate
from dsrflow.outbound_mail.dispatch import failure_notice, flush_outbox
from dsrflow.outbound_mail.models import OutboxMessage
from dsrflow.outbound_mail.senders import PermanentFailure
from dsrflow.requests import letters, service
from dsrflow.requests.schemas import PaymentIn, RequestCreate, TransitionIn
from dsrflow.runtime import Runtime

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = yaml.safe_load((ROOT / "scripts" / "letter_samples.yaml").read_text(encoding="utf-8"))
LANGUAGES = ("ja", "en")
TOKEN = re.compile(r"/(verify|status)/[A-Za-z0-9_\-]+")


@dataclass
class Sample:
    heading: str
    note: str
    rows: dict[str, OutboxMessage]  # language -> the letter as queued


class Bouncer:
    """A sender that refuses one message for good and accepts (and drops) the rest."""

    def __init__(self, refused_message_id: str, answer: str):
        self.refused, self.answer = refused_message_id, answer

    async def send(self, message: EmailMessage, recipient: str) -> str:
        if message["Message-ID"] == self.refused:
            raise PermanentFailure(f"550 {self.answer}")
        return "250 OK"

    async def close(self) -> None:
        return None


def decide(rt: Runtime, request_id: str, trigger: str, **fields: Any) -> None:
    with Session(rt.db, expire_on_commit=False) as session:
        service.transition(
            rt, session, request_id, TransitionIn(trigger=trigger, **fields), actor="sample"
        )


def pay(rt: Runtime, request_id: str) -> None:
    with Session(rt.db, expire_on_commit=False) as session:
        service.record_payment(
            rt,
            session,
            request_id,
            PaymentIn(amount_jpy=1000, method="bank_transfer"),
            actor="sample",
        )


def verify(rt: Runtime, request_id: str, method: str, language: str, **fields: Any) -> None:
    decide(
        rt,
        request_id,
        "verify_identity",
        method=method,
        evidence=SAMPLES["evidence"][language],
        **fields,
    )


def submit(
    rt: Runtime,
    request_type: str,
    language: str,
    *,
    agent: bool = False,
    disclosure_method: str | None = None,
) -> str:
    person = SAMPLES["requester"][language]
    data = RequestCreate(
        type=request_type,
        name=person["name"],
        email=person["email"],
        details=SAMPLES["details"][language],
        language=language,  # type: ignore[arg-type]
        agent=SAMPLES["agent"][language] if agent else None,
        disclosure_method=disclosure_method,
        postal_address=SAMPLES["postal_address"][language] if disclosure_method else None,
    )
    received_at = datetime.fromisoformat(SAMPLES["received_at"])
    with Session(rt.db, expire_on_commit=False) as session:
        submitted = service.submit(rt, session, data, channel="web", received_at=received_at)
    return submitted.request.id


def letter(rt: Runtime, request_id: str, kind: str) -> OutboxMessage:
    with Session(rt.db) as session:
        return session.exec(
            select(OutboxMessage)
            .where(OutboxMessage.request_id == request_id, OutboxMessage.letter == kind)
            .order_by(col(OutboxMessage.id).desc())
        ).first()  # type: ignore[return-value]


def handler_notice_in(rt: Runtime, request_id: str, language: str) -> OutboxMessage:
    """The handlers' notice as queued, or rendered in ``language`` from the context the
    service gives it."""
    queued = letter(rt, request_id, "handler_notice")
    if language == "ja":
        return queued
    with Session(rt.db) as session:
        request = service.repository.get(session, request_id)
        assert request is not None
        context = letters.letter_context(rt, request, language=language)
    rendered = rt.letters.render("handler_notice", language, context)
    return queued.model_copy(update={"subject": rendered.subject, "body": rendered.body})


def samples(rt: Runtime) -> list[Sample]:
    text = {key: SAMPLES[key] for key in SAMPLES if isinstance(SAMPLES[key], dict)}
    out: dict[str, Sample] = {}

    def add(kind: str, heading: str, note: str, language: str, row: OutboxMessage) -> None:
        out.setdefault(kind, Sample(heading, note, {})).rows[language] = row

    for lang in LANGUAGES:
        disclosure = submit(rt, "disclosure", lang)
        add(
            "acknowledgment",
            "Acknowledgment of receipt",
            "To the requester on arrival: reference, due date, fee, status link.",
            lang,
            letter(rt, disclosure, "acknowledgment"),
        )
        add(
            "handler_notice",
            "New request, to the handlers' mailbox",
            "To `HANDLER_EMAIL`: type, reference, due date, link; no details, no address. "
            "Sent in Japanese; the English template is shown for reference.",
            lang,
            # The service writes to handlers in Japanese only.
            handler_notice_in(rt, disclosure, lang),
        )
        by_agent = submit(rt, "disclosure", lang, agent=True)
        add(
            "verification",
            "E-mail verification (a disclosure request made by an agent)",
            "The single-use `/verify` link, what else proves identity for the type, and what "
            "an agent must send.",
            lang,
            letter(rt, by_agent, "verification"),
        )
        simple = submit(rt, "purpose_notice", lang)
        add(
            "verification_link_enough",
            "E-mail verification (a type where the link alone proves identity)",
            "For `purpose_notice`, opening the link completes the identity check.",
            lang,
            letter(rt, simple, "verification"),
        )
        decide(rt, disclosure, "request_info", message=text["info_message"][lang])
        add(
            "info_request",
            "Request for information",
            "The handler's question, threaded under the acknowledgment.",
            lang,
            letter(rt, disclosure, "info_request"),
        )
        decide(rt, disclosure, "info_received", note=text["info_note"][lang])
        verify(rt, disclosure, "id_document_copy", lang)
        pay(rt, disclosure)
        decide(rt, disclosure, "fulfill", summary=text["summary"][lang], method_used="electronic")
        add(
            "fulfilled",
            "Outcome: fulfilled",
            "What was done and by which method (a disclosure is made under Art. 33(2)).",
            lang,
            letter(rt, disclosure, "fulfilled"),
        )
        on_paper = submit(rt, "disclosure", lang, disclosure_method="electronic")
        verify(rt, on_paper, "id_document_copy", lang)
        pay(rt, on_paper)
        decide(
            rt,
            on_paper,
            "fulfill",
            summary=text["paper_summary"][lang],
            method_used="paper",
            method_difficulty=text["method_difficulty"][lang],
        )
        add(
            "method_difficult",
            "Outcome: fulfilled by another method than the one designated",
            "The Art. 33(3) notice that the designated method was difficult, with the reason.",
            lang,
            letter(rt, on_paper, "fulfilled"),
        )
        partial = submit(rt, "disclosure", lang)
        verify(rt, partial, "jpki_signature", lang)
        pay(rt, partial)
        decide(
            rt,
            partial,
            "fulfill",
            summary=text["partial_summary"][lang],
            method_used="electronic",
            withheld=[
                {
                    "reason_code": "DISC_BUSINESS_IMPEDIMENT",
                    "explanation": text["withheld_explanation"][lang],
                }
            ],
        )
        add(
            "partial",
            "Outcome: fulfilled in part",
            "Each withheld part with its article, the statutory wording and the handler's "
            "explanation (Art. 36).",
            lang,
            letter(rt, partial, "fulfilled"),
        )
        correction = submit(rt, "correction", lang)
        verify(rt, correction, "pre_registered_login", lang)
        decide(rt, correction, "fulfill", summary=text["correction_summary"][lang])
        add(
            "correction_fulfilled",
            "Outcome: corrected",
            "What changed (notice under Art. 34(3)).",
            lang,
            letter(rt, correction, "correction_fulfilled"),
        )
        refused = submit(rt, "suspension", lang)
        decide(
            rt,
            refused,
            "refuse",
            reason_code="PROC_ID_UNVERIFIED",
            explanation=text["refusal_explanation"][lang],
        )
        add(
            "refused",
            "Outcome: refused",
            "The reason's article and statutory wording, and the handler's explanation (Art. 36).",
            lang,
            letter(rt, refused, "refused"),
        )
        add(
            "agent_notice",
            "To the principal, when an agent files",
            "Sent to the principal's own address: who asked in their name, and how to object.",
            lang,
            letter(rt, by_agent, "agent_notice"),
        )
        verify(
            rt,
            by_agent,
            "id_document_copy",
            lang,
            authority_document="family_register",
            agent_method="id_document_copy",
        )
        decide(rt, by_agent, "report_not_held", explanation=text["not_held_explanation"][lang])
        add(
            "not_held",
            "Outcome: no data held (a request made by an agent)",
            "An answer, not a refusal (Art. 33(3)); neutral words that also serve where the "
            "company may neither confirm nor deny. Names the principal and the agent.",
            lang,
            letter(rt, by_agent, "not_held"),
        )
        substituted = submit(rt, "suspension", lang)
        verify(rt, substituted, "in_person", lang)
        decide(
            rt,
            substituted,
            "substitute",
            measure=text["substitute_measure"][lang],
            explanation=text["substitute_explanation"][lang],
        )
        add(
            "substituted",
            "Outcome: a substitute measure",
            "The measure taken instead of the one asked, and why (Art. 35(2) proviso, "
            "notice under Art. 35(7), Art. 36).",
            lang,
            letter(rt, substituted, "substituted"),
        )
        unspecified = submit(rt, "correction", lang)
        decide(rt, unspecified, "request_info", message=text["info_message"][lang])
        decide(
            rt,
            unspecified,
            "refuse",
            reason_code="PROC_NOT_SPECIFIED",
            explanation=text["not_specified_explanation"][lang],
        )
        add(
            "refused_not_specified",
            "Outcome: refused, the data never specified (Art. 37(2))",
            "From waiting for the requester: the notice article of the type (Art. 34(3)).",
            lang,
            letter(rt, unspecified, "refused"),
        )
        withdrawn = submit(rt, "third_party_cessation", lang)
        decide(rt, withdrawn, "withdraw", note=text["withdraw_note"][lang])
        add(
            "withdrawn",
            "Withdrawn",
            "Confirmation that the request is closed.",
            lang,
            letter(rt, withdrawn, "withdrawn"),
        )

    failed_at = datetime.fromisoformat(SAMPLES["received_at"]) + timedelta(minutes=1)
    bouncer = Bouncer(out["acknowledgment"].rows["ja"].message_id, SAMPLES["bounce_answer"])
    with Session(rt.db) as session:  # the sample's clock: everything queued is due by then
        session.execute(update(OutboxMessage).values(next_attempt_at=failed_at))
        session.commit()
    asyncio.run(flush_outbox(rt.db, rt.settings, rt.letters, sender=bouncer, now=failed_at))
    with Session(rt.db) as session:
        notice = session.exec(
            select(OutboxMessage)
            .where(OutboxMessage.letter == "delivery_failed")
            .order_by(col(OutboxMessage.id))
        ).first()
        assert notice is not None, "the bounce should have queued a delivery_failed notice"
        cause = session.get(OutboxMessage, int(notice.dedup_key.rpartition(":")[2]))
        assert cause is not None
        assert cause.last_error is not None
    english = failure_notice(
        rt.letters, rt.settings, cause, cause.last_error, failed_at, language="en"
    )
    assert english is not None
    as_row = notice.model_copy(update={"subject": english.subject, "body": english.body})
    add(
        "delivery_failed",
        "Delivery failure, to the handlers' mailbox",
        "When the server refuses a letter for good: the reference, which letter, the server's "
        "answer with addresses removed. Sent in Japanese; the English template is shown for "
        "reference.",
        "ja",
        notice,
    )
    add("delivery_failed", "", "", "en", as_row)
    return list(out.values())


def placeholders(rt: Runtime, text: str) -> str:
    """Random tokens and ids, fixed: the output changes only when a template changes."""
    text = TOKEN.sub(lambda m: f"/{m.group(1)}/<{m.group(1)}-token>", text)
    with Session(rt.db) as session:
        ids = session.exec(select(OutboxMessage.request_id).distinct()).all()
    for request_id in ids:
        if request_id:
            text = text.replace(request_id, "<request-id>")
    return text


def markdown(rt: Runtime, items: list[Sample]) -> str:
    names = {"ja": "日本語", "en": "English"}
    parts = [
        "# Letters\n\n",
        "Generated from `workflows/templates/{ja,en}/` by `make letters` "
        "(`scripts/render_letters.py`, sample values in `scripts/letter_samples.yaml`); "
        "do not edit by hand. Each letter was made by the request service (or, for the "
        "delivery-failure notice, by the dispatcher) in a throwaway database, exactly as it "
        "would be queued; links carry placeholders where real letters carry secret tokens.\n\n",
        "Every subject carries the reference in brackets. Letters to the requester go in the "
        "request's language (Japanese by default), to the agent when there is one, and thread "
        "under the acknowledgment (`In-Reply-To`).\n",
    ]
    for item in items:
        parts.append(f"\n## {item.heading}\n\n{item.note}\n")
        for lang in LANGUAGES:
            row = item.rows[lang]
            parts.append(
                f"\n### {names[lang]}\n\n"
                f"To: `{row.recipient}`  \n"
                f"Subject: **{row.subject}**\n\n"
                f"```text\n{row.body.rstrip()}\n```\n"
            )
    covered = {row.letter for item in items for row in item.rows.values()}
    others = sorted(
        p.name.removesuffix(".txt.j2")
        for p in (rt.settings.workflows_dir / "templates" / "ja").glob("*.txt.j2")
        if not p.name.startswith("_") and p.name.removesuffix(".txt.j2") not in covered
    )
    if others:
        parts.append(
            "\n## Other templates\n\n"
            "Sent by the scheduler and mail intake, with their own context; not rendered "
            f"here: {', '.join(f'`{name}`' for name in others)}.\n"
        )
    return placeholders(rt, "".join(parts))


def render() -> str:
    """docs/letters.md as it should read for the current templates."""
    # The sample bounce is intended; its log line would only be noise here.
    logging.getLogger("dsrflow.outbound_mail.dispatch").setLevel(logging.CRITICAL)
    with tempfile.TemporaryDirectory(prefix="dsrflow-letters-") as tmp:
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            data_dir=Path(tmp),
            workflows_dir=ROOT / "workflows",
            base_url=SAMPLES["base_url"],
        )
        rt = Runtime.load(settings)
        migrate(rt.db)
        try:
            return markdown(rt, samples(rt))
        finally:
            rt.db.dispose()


def main() -> int:
    sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
