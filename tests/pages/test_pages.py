"""Requester pages: the form, the verification link, the status page with withdrawal."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlmodel import Session, select

from dsrflow.outbound_mail.models import OutboxMessage
from dsrflow.requests.models import Request, VerificationToken
from dsrflow.runtime import Runtime
from tests.conftest import ROOT, request_body

CJK = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uff00-\uffef]")


def csrf_token(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, page
    return match.group(1)


def post_form(client: TestClient, url: str, data: dict[str, str], page_url: str | None = None):  # type: ignore[no-untyped-def]
    """POST as the browser would: with the CSRF token of the page the form is on."""
    token = csrf_token(client.get(page_url or url).text)
    return client.post(url, data={**data, "csrf_token": token})


def submit_form(client: TestClient, lang: str = "ja", **overrides: str) -> str:
    form = {**request_body(), "language": lang, **overrides}
    response = post_form(client, f"/?lang={lang}", form)
    assert response.status_code == 200, response.text
    assert response.history
    assert response.history[0].status_code == 303
    return response.text


def confirm(client: TestClient, link: str):  # type: ignore[no-untyped-def]
    """Open the e-mailed link, then press its button."""
    page = client.get(link)
    if 'id="confirm"' not in page.text:
        return page
    return client.post(link, data={"csrf_token": csrf_token(page.text)})


def status_link(page: str) -> str:
    match = re.search(r'action="(/status/[^"?/]+)/withdraw', page)
    assert match, page
    return match.group(1)


def verify_link(rt: Runtime, reference: str) -> str:
    with Session(rt.db) as session:
        body = session.exec(
            select(OutboxMessage.body).where(
                OutboxMessage.reference == reference, OutboxMessage.letter == "verification"
            )
        ).one()
    match = re.search(r"http://testserver(/verify/\S+)", body)
    assert match, body
    return match.group(1)


def test_form_is_japanese_by_default_and_english_on_request(client: TestClient) -> None:
    ja = client.get("/")
    assert ja.status_code == 200
    assert '<html lang="ja">' in ja.text
    assert "ご請求フォーム" in ja.text
    assert "保有個人データの開示請求" in ja.text  # type titles come from workflows/
    en = client.get("/?lang=en")
    assert '<html lang="en">' in en.text
    assert "Request form" in en.text
    assert "Disclosure of retained personal data" in en.text
    assert ja.headers["cache-control"] == "no-store"


def test_form_submission_shows_the_reference(client: TestClient) -> None:
    page = submit_form(client)
    assert re.search(r'id="reference">DSR-\d{4}-\d{6}<', page)
    assert "ご請求を受け付けました" in page


def test_form_errors_are_shown_in_the_requesters_language(client: TestClient) -> None:
    response = post_form(client, "/?lang=en", {**request_body(email="nope"), "language": "en"})
    assert response.status_code == 422
    assert "Please enter a valid e-mail address (e.g. taro@example.jp)." in response.text
    assert 'value="山田 太郎"' in response.text  # nothing typed is lost
    response = post_form(client, "/", {**request_body(details="")})
    assert "ご請求の内容を入力してください。" in response.text


def test_agent_and_disclosure_method_from_the_form(
    rt: Runtime, client: TestClient, auth: dict[str, str]
) -> None:
    submit_form(
        client,
        disclosure_method="paper",
        postal_address="東京都千代田区千代田1-1",
        as_agent="1",
        agent_name="代理 人",
        agent_email="agent@example.jp",
        agent_relation="appointed_agent",
    )
    listing = client.get("/api/v1/requests", headers=auth).json()
    shown = client.get(f"/api/v1/requests/{listing['items'][0]['id']}", headers=auth).json()
    assert shown["disclosure_method"] == "paper"
    assert shown["agent"] == {
        "name": "代理 人",
        "email": "agent@example.jp",
        "relation": "appointed_agent",
    }
    assert shown["channel"] == "web"


def test_status_page_shows_state_and_letters_then_withdraws(client: TestClient) -> None:
    link = status_link(submit_form(client))
    page = client.get(link)
    assert page.status_code == 200
    assert 'id="state">受付済み<' in page.text
    assert "を受け付けました" in page.text  # the acknowledgment letter
    assert 'id="withdraw"' in page.text
    done = post_form(client, f"{link}/withdraw", {}, page_url=link)
    assert 'id="state">取下げ済み<' in done.text
    assert "ご請求の取下げを承りました" in done.text  # the withdrawal letter is listed
    assert 'id="withdraw"' not in done.text
    # A second withdrawal changes nothing.
    again = post_form(client, f"{link}/withdraw", {}, page_url="/")
    assert 'id="state">取下げ済み<' in again.text


def test_status_page_needs_the_exact_secret(client: TestClient) -> None:
    link = status_link(submit_form(client))
    token = link.rsplit("/", 1)[1]
    assert len(token) >= 40
    assert client.get(link[:-1] + ("A" if link[-1] != "A" else "B")).status_code == 404
    assert post_form(client, "/status/st_nothing/withdraw", {}, "/").status_code == 404


def test_verification_link_is_single_use_and_email_only_verifies_where_allowed(
    rt: Runtime, client: TestClient, auth: dict[str, str]
) -> None:
    page = submit_form(client, type="purpose_notice")
    reference = re.search(r'id="reference">(DSR-[\d-]+)<', page).group(1)  # type: ignore[union-attr]
    link = verify_link(rt, reference)
    first = confirm(client, link)
    assert first.status_code == 200
    assert "ご本人確認が完了しました" in first.text
    second = confirm(client, link)
    assert "使用済み" in second.text
    with Session(rt.db) as session:
        request = session.exec(select(Request).where(Request.reference == reference)).one()
    assert request.state == "identity_verified"
    assert request.identity_method == "email_link"
    assert request.email_verified_at is not None

    page = submit_form(client, type="disclosure")
    reference = re.search(r'id="reference">(DSR-[\d-]+)<', page).group(1)  # type: ignore[union-attr]
    response = confirm(client, verify_link(rt, reference))
    assert "ほかの方法によるご本人確認も必要です" in response.text
    with Session(rt.db) as session:
        request = session.exec(select(Request).where(Request.reference == reference)).one()
    assert request.state == "received"
    assert request.email_verified_at is not None


def test_expired_and_unknown_verification_links(rt: Runtime, client: TestClient) -> None:
    page = submit_form(client, lang="en")
    reference = re.search(r'id="reference">(DSR-[\d-]+)<', page).group(1)  # type: ignore[union-attr]
    link = verify_link(rt, reference)
    with Session(rt.db) as session:
        session.execute(
            update(VerificationToken).values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
        session.commit()
    expired = client.get(link)
    assert expired.status_code == 410
    assert "This link has expired" in expired.text
    assert client.get("/verify/vt_made_up").status_code == 404
    with Session(rt.db) as session:
        token_hashes = session.exec(select(VerificationToken.token_hash)).all()
    assert link.rsplit("/", 1)[1] not in token_hashes  # stored hashed


def test_no_japanese_text_in_python_source() -> None:
    offenders = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "src").rglob("*.py")
        if CJK.search(Path(path).read_text(encoding="utf-8"))
    ]
    assert offenders == []


def test_status_page_never_shows_internal_mail(rt: Runtime, client: TestClient) -> None:
    # Regression: escalations to ESCALATION_EMAIL were listed as letters to the requester.
    from dsrflow.deadlines.service import sweep

    rt.settings.escalation_email = "dpo@example.jp"
    link = status_link(submit_form(client))
    report = sweep(rt, datetime.now(UTC) + timedelta(days=20))
    assert any(mail.recipient == "dpo@example.jp" for mail in report.planned)
    page = client.get(link).text
    assert "を受け付けました" in page
    assert "期限超過" not in page
    assert "/api/v1/requests/" not in page


def test_the_link_alone_never_verifies_an_agent(rt: Runtime, client: TestClient) -> None:
    # purpose_notice accepts the e-mail link as identity, but not for an agent's authority.
    page = submit_form(
        client,
        type="purpose_notice",
        as_agent="1",
        agent_name="代理 人",
        agent_email="agent@example.jp",
        agent_relation="appointed_agent",
    )
    reference = re.search(r'id="reference">(DSR-[\d-]+)<', page).group(1)  # type: ignore[union-attr]
    response = confirm(client, verify_link(rt, reference))
    assert "ほかの方法によるご本人確認も必要です" in response.text
    with Session(rt.db) as session:
        request = session.exec(select(Request).where(Request.reference == reference)).one()
    assert request.state == "received"
    assert request.email_verified_at is not None
