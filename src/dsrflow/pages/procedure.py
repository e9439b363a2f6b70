"""What a requester may know before asking: ``GET /procedure`` and the notice above the form.

``/procedure`` shows the public matters of APPI Art. 32(1) and Cabinet Order Art. 10 and the
request procedure of Art. 37(1) and Cabinet Order Art. 12, drawn from ``workflows/company.yaml``
and the workflows. The request form shows the fee, the documents and the purpose of the form's
data through ``form_procedure.html``, which calls ``form_procedure`` (a template global).
All text comes from ``messages/procedure-{ja,en}.yaml``, company.yaml and the workflows.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import yaml
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from dsrflow.api.deps import RuntimeDep
from dsrflow.pages import routes
from dsrflow.runtime import Runtime
from dsrflow.workflow.definitions import Text, WorkflowDef
from dsrflow.workflow.law import provisions

router = APIRouter(include_in_schema=False)


@lru_cache
def procedure_messages(language: str) -> dict[str, Any]:
    path = routes.HERE / "messages" / f"procedure-{language}.yaml"
    return dict(yaml.safe_load(path.read_text(encoding="utf-8")))


def _cite(article: str, m: dict[str, Any]) -> str:
    """``"35(1), 35(5)"`` as the Act is cited in the page language (Art. 35(1), Art. 35(5))."""
    parts = [
        (m["cite_paragraph"] if para is not None else m["cite_article"]).format(
            article=number, paragraph=para
        )
        for number, para in provisions(article)
    ]
    return m["cite_join"].join(parts)


def _fee(wf: WorkflowDef, m: dict[str, Any], tax_included: bool) -> str:
    if wf.fee is None or wf.fee.amount_jpy == 0:
        return str(m["fee_none"])
    amount = m["yen"].format(amount=f"{wf.fee.amount_jpy:,}")
    return str(m["fee_tax_included" if tax_included else "fee_tax_excluded"].format(amount=amount))


def _deadline(wf: WorkflowDef, m: dict[str, Any]) -> str:
    return str(m[f"deadline_{wf.deadline.counting}"].format(days=wf.deadline.days))


def procedure_view(rt: Runtime, lang: str) -> dict[str, Any]:
    """Everything /procedure and the form's notice show, in ``lang``."""
    company = rt.definitions.company
    workflows = list(rt.definitions.workflows.values())
    m = procedure_messages(lang)

    def text(value: Text) -> str:
        return value.for_language(lang)

    methods = list(dict.fromkeys(method for wf in workflows for method in wf.identity_methods))
    disclosure_methods = list(
        dict.fromkeys(
            text(wf.disclosure_method_options[method].label)
            for wf in workflows
            for method in wf.disclosure_methods
        )
    )
    fee_types = [wf for wf in workflows if wf.fee is not None and wf.fee.amount_jpy]
    documents = company.accepted_documents
    complaints = company.complaints
    return {
        "m": m,
        "company_name": text(company.name),
        "business_address": text(company.address),
        "representative": f"{text(company.representative.title)} "
        f"{text(company.representative.name)}",
        "purposes": [text(p) for p in company.purposes_of_use],
        "types": [
            {
                "id": wf.id,
                "title": text(wf.title),
                "article": _cite(wf.article, m),
                "fee": _fee(wf, m, company.fees.tax_included),
                "deadline": _deadline(wf, m),
                "art39": wf.deadline.art39,
            }
            for wf in workflows
        ],
        "request_email": complaints.email or str(rt.settings.handler_email),
        "post_addressee": text(company.requests_by_post.addressee),
        "post_address": text(company.requests_by_post.postal_address),
        "identity_methods": [text(company.identity_methods[method]) for method in methods],
        "email_link_enough": [text(wf.title) for wf in workflows if wf.email_link_sufficient],
        "identity_documents": [text(d) for d in documents.identity],
        "legal_representative_documents": [text(d) for d in documents.legal_representative],
        "appointed_agent_documents": [text(d) for d in documents.appointed_agent],
        "document_notes": [text(d) for d in documents.notes],
        "fee_types": [
            {"title": text(wf.title), "fee": _fee(wf, m, company.fees.tax_included)}
            for wf in fee_types
        ],
        "payment_methods": [text(p) for p in company.fees.payment_methods],
        "disclosure_methods": disclosure_methods,
        "security_measures": [
            {"title": text(s.title), "body": text(s.body)} for s in company.security_measures
        ],
        "complaints": {
            "desk": text(complaints.desk),
            "email": complaints.email or str(rt.settings.handler_email),
            "phone": complaints.phone,
            "postal_address": text(complaints.postal_address)
            if complaints.postal_address
            else None,
            "hours": text(complaints.hours) if complaints.hours else None,
        },
        "accredited": {
            "name": text(company.accredited_organization.name),
            "contact": text(company.accredited_organization.complaints_contact),
        }
        if company.accredited_organization
        else None,
        "form_data_purpose": text(company.form_data_purpose),
    }


def form_procedure(request: Request, lang: str) -> dict[str, Any]:
    """The notice above the request form (a template global: the form route stays as it is)."""
    return procedure_view(request.app.state.runtime, lang)


routes.templates.env.globals["form_procedure"] = form_procedure


@router.get("/procedure", response_class=HTMLResponse)
def procedure_page(request: Request, rt: RuntimeDep) -> HTMLResponse:
    lang = routes._language(request)
    return routes._render(request, rt, "procedure.html", lang, **procedure_view(rt, lang))
