"""GET /procedure (Art. 32(1), Cabinet Order 10; Art. 37(1), Cabinet Order 12) and the notice
above the request form, drawn from workflows/company.yaml and the workflows; the company schema."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from dsrflow.app import create_app
from dsrflow.config import Settings
from dsrflow.runtime import Runtime
from dsrflow.workflow.definitions import WorkflowError, load_definitions
from dsrflow.workflow.engine import GUARDS
from tests.conftest import WORKFLOWS

CJK = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uff00-\uffef]")
Client = Callable[[Path], TestClient]


@pytest.fixture
def workflows(tmp_path: Path) -> Path:
    target = tmp_path / "workflows"
    shutil.copytree(WORKFLOWS, target)
    return target


@pytest.fixture
def client_for(tmp_path: Path) -> Iterator[Client]:
    """A client of the app on a given workflows directory (the pages read no database)."""
    opened: list[TestClient] = []

    def make(directory: Path) -> TestClient:
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            data_dir=tmp_path / "var",
            workflows_dir=directory,
            base_url="http://testserver",
        )
        client = TestClient(create_app(Runtime.load(settings)))
        opened.append(client)
        return client

    yield make
    for client in opened:
        client.close()


@pytest.fixture
def client(client_for: Client) -> TestClient:
    return client_for(WORKFLOWS)


def edit(path: Path, change: Callable[[Any], object]) -> None:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")


def company() -> dict[str, Any]:
    return dict(yaml.safe_load((WORKFLOWS / "company.yaml").read_text(encoding="utf-8")))


def section(page: str, element_id: str) -> str:
    match = re.search(rf'<(\w+) id="{element_id}"[^>]*>(.*?)</\1>', page, re.S)
    assert match, f"no element #{element_id}"
    return match.group(2)


def test_procedure_is_japanese_by_default_with_every_public_matter(client: TestClient) -> None:
    response = client.get("/procedure")
    assert response.status_code == 200
    page = response.text
    assert '<html lang="ja">' in page
    c = company()
    # Art. 32(1)(i): name, address, representative.
    assert section(page, "business-name") == c["name"]["ja"]
    assert section(page, "business-address") == c["address"]["ja"]
    assert c["representative"]["name"]["ja"] in section(page, "business-representative")
    # Art. 32(1)(ii): every purpose of use.
    for purpose in c["purposes_of_use"]:
        assert f"<li>{purpose['ja']}</li>" in page
    # Cabinet Order 10(i)-(iii): security measures, complaints desk, accredited organisation.
    for measure in c["security_measures"]:
        assert measure["title"]["ja"] in page
        assert measure["body"]["ja"] in page
    assert section(page, "complaints-desk") == c["complaints"]["desk"]["ja"]
    assert "認定個人情報保護団体はございません" in section(page, "accredited-none")
    assert response.headers["cache-control"] == "no-store"


def test_procedure_states_the_request_procedure(client: TestClient) -> None:
    page = client.get("/procedure").text
    c = company()
    # Cabinet Order 12(i): where to send it: the form, e-mail, and post.
    assert 'id="form-link" href="/?lang=ja"' in page
    assert "mailto:info@innovativeai.co.jp" in page
    post = section(page, "request-post")
    assert c["requests_by_post"]["postal_address"]["ja"] in post
    assert c["requests_by_post"]["addressee"]["ja"] in post
    # Fees by type from the workflows, as 1,000円; free types say so (Art. 38, CO 12(iv)).
    assert "1,000円（税込）" in section(page, "type-disclosure")
    assert "1,000円（税込）" in section(page, "type-purpose_notice")
    assert "無料" in section(page, "type-correction")
    assert "法第35条第1項、法第35条第5項" in section(page, "type-suspension")
    assert "到達日から14日以内" in section(page, "type-correction")
    for method in c["fees"]["payment_methods"]:
        assert method["ja"] in section(page, "payment-methods")
    # Cabinet Order 12(iii) and 13: identity methods, identity and agent documents.
    for document in c["accepted_documents"]["identity"]:
        assert document["ja"] in section(page, "identity-documents")
    agents = section(page, "agent-documents")
    for kind in ("legal_representative", "appointed_agent"):
        for document in c["accepted_documents"][kind]:
            assert document["ja"] in agents
    assert c["identity_methods"]["jpki_signature"]["ja"] in section(page, "identity-methods")
    # Only purpose_notice lets the e-mail link alone verify identity (email_link_sufficient).
    assert "ご本人確認とさせていただくご請求：利用目的の通知の求め" in page
    # What happens and when.
    assert "法第37条第2項" in section(page, "flow-steps")
    disclosure = yaml.safe_load((WORKFLOWS / "disclosure.yaml").read_text(encoding="utf-8"))
    for option in disclosure["disclosure_method_options"].values():
        assert option["label"]["ja"] in section(page, "disclosure-methods")


def test_procedure_in_english(client: TestClient) -> None:
    response = client.get("/procedure?lang=en")
    page = response.text
    assert response.status_code == 200
    assert '<html lang="en">' in page
    c = company()
    assert section(page, "business-address") == c["address"]["en"]
    assert "JPY 1,000 (tax included)" in section(page, "type-disclosure")
    assert "Free" in section(page, "type-suspension")
    assert "Art. 33(5)" in section(page, "type-third_party_record_disclosure")
    for purpose in c["purposes_of_use"]:
        assert f"<li>{purpose['en']}</li>" in page
    article = section(page, "procedure")
    assert not CJK.search(article), CJK.findall(article)[:20]


def test_procedure_follows_company_yaml_and_the_workflows(
    workflows: Path, client_for: Client
) -> None:
    edit(workflows / "disclosure.yaml", lambda d: d["fee"].update(amount_jpy=2500))
    edit(
        workflows / "company.yaml",
        lambda d: d.update(
            accredited_organization={
                "name": {"ja": "一般財団法人サンプル協会", "en": "Sample Association"},
                "complaints_contact": {"ja": "苦情相談室", "en": "Complaints office"},
            },
            fees={**d["fees"], "tax_included": False},
        ),
    )
    page = client_for(workflows).get("/procedure").text
    assert "2,500円（税別）" in section(page, "type-disclosure")
    assert section(page, "accredited-name") == "一般財団法人サンプル協会"
    assert 'id="accredited-none"' not in page


def test_the_form_shows_fee_documents_and_purpose_before_submitting(client: TestClient) -> None:
    page = client.get("/").text
    c = company()
    notice = section(page, "form-procedure")
    assert "保有個人データの開示請求：1,000円（税込）" in notice
    assert c["accepted_documents"]["identity"][0]["ja"] in notice
    assert section(page, "form-data-purpose") == c["form_data_purpose"]["ja"]
    assert 'href="/procedure?lang=ja"' in notice
    # Before anyone submits: the notice comes before the form.
    assert page.index('id="form-procedure"') < page.index("<form")


def test_the_english_form_links_the_english_procedure(client: TestClient) -> None:
    page = client.get("/?lang=en").text
    notice = section(page, "form-procedure")
    assert "Disclosure of retained personal data: JPY 1,000 (tax included)" in notice
    assert 'href="/procedure?lang=en"' in notice
    assert section(page, "form-data-purpose") == company()["form_data_purpose"]["en"]
    assert not CJK.search(notice)


def errors_of(directory: Path) -> list[str]:
    with pytest.raises(WorkflowError) as caught:
        load_definitions(directory, guards=GUARDS)
    return caught.value.errors


@pytest.mark.parametrize(
    ("change", "key"),
    [
        (lambda d: d.pop("address"), "address"),
        (lambda d: d["representative"].pop("name"), "representative.name"),
        (lambda d: d["purposes_of_use"][1].pop("en"), "purposes_of_use.1.en"),
        (lambda d: d.update(purposes_of_use=[]), "purposes_of_use"),
        (lambda d: d["security_measures"][0]["body"].update(ja=""), "security_measures.0.body.ja"),
        (lambda d: d["complaints"].pop("desk"), "complaints.desk"),
        (lambda d: d.pop("requests_by_post"), "requests_by_post"),
        (
            lambda d: d["accepted_documents"].update(appointed_agent=[]),
            "accepted_documents.appointed_agent",
        ),
        (lambda d: d.pop("form_data_purpose"), "form_data_purpose"),
    ],
)
def test_company_schema_names_the_key(
    workflows: Path, change: Callable[[Any], object], key: str
) -> None:
    edit(workflows / "company.yaml", change)
    errors = errors_of(workflows)
    assert any(e.startswith(f"{workflows / 'company.yaml'}: {key}") for e in errors), errors


def test_every_identity_method_is_described(workflows: Path) -> None:
    edit(workflows / "company.yaml", lambda d: d["identity_methods"].pop("phone_callback"))
    errors = errors_of(workflows)
    assert any(
        e.startswith(f"{workflows / 'company.yaml'}: identity_methods.phone_callback: missing")
        for e in errors
    ), errors


def test_a_fee_needs_a_payment_method(workflows: Path) -> None:
    edit(workflows / "company.yaml", lambda d: d["fees"].update(payment_methods=[]))
    errors = errors_of(workflows)
    assert any(
        e.startswith(f"{workflows / 'company.yaml'}: fees.payment_methods: at least one")
        for e in errors
    ), errors


def test_sample_values_are_flagged_until_replaced(workflows: Path) -> None:
    shipped = load_definitions(workflows, guards=GUARDS)
    assert any("company.yaml: sample_values" in w for w in shipped.warnings)
    edit(workflows / "company.yaml", lambda d: d.update(sample_values=False))
    replaced = load_definitions(workflows, guards=GUARDS)
    assert not any("company.yaml: sample_values" in w for w in replaced.warnings)
