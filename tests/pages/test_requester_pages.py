"""The requester pages as issue 11 wants them: receipts, duplicates, errors, limits, branding,
the status hub with its upload, links scanners cannot spend, and cross-site posts refused."""

from __future__ import annotations

import asyncio
import re
import shutil
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, update
from sqlmodel import Session, col, select

from dsrflow.app import create_app
from dsrflow.audit.chain import verify_chains
from dsrflow.audit.models import Event
from dsrflow.config import Settings
from dsrflow.documents import service as documents
from dsrflow.documents.models import RequesterDocument
from dsrflow.requests import service
from dsrflow.requests.models import Request
from dsrflow.runtime import Runtime
from dsrflow.scheduler.jobs import document_purge
from tests.conftest import WORKFLOWS, request_body
from tests.pages.test_pages import confirm, csrf_token, post_form, status_link, verify_link

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n"


def requests_in(rt: Runtime) -> list[Request]:
    with Session(rt.db) as session:
        return list(session.exec(select(Request).order_by(col(Request.received_at))))


def events_of(rt: Runtime, kind: str) -> list[Event]:
    with Session(rt.db) as session:
        return list(session.exec(select(Event).where(Event.kind == kind)))


def submit(client: TestClient, lang: str = "ja", **overrides: str):  # type: ignore[no-untyped-def]
    return post_form(client, f"/?lang={lang}", {**request_body(), "language": lang, **overrides})


def reference_in(page: str) -> str:
    match = re.search(r'id="reference">(DSR-[\d-]+)<', page)
    assert match, page
    return match.group(1)


# --- 1. the form and the receipt ------------------------------------------------------------


def test_the_form_answers_303_to_a_receipt_that_reloads_safely(
    rt: Runtime, client: TestClient
) -> None:
    token = csrf_token(client.get("/").text)
    response = client.post(
        "/?lang=ja", data={**request_body(), "csrf_token": token}, follow_redirects=False
    )
    assert response.status_code == 303
    receipt = response.headers["location"]
    assert re.fullmatch(r"/status/st_[\w-]+\?lang=ja&received=1", receipt)
    for _ in range(3):  # reloads
        page = client.get(receipt)
        assert page.status_code == 200
        assert "ご請求を受け付けました" in page.text
    assert len(requests_in(rt)) == 1
    # The language toggle keeps the receipt.
    assert 'href="?lang=en&amp;received=1"' in page.text
    assert "We have received your request" in client.get(receipt.replace("lang=ja", "lang=en")).text


def test_a_repeated_submission_is_the_same_request(rt: Runtime, client: TestClient) -> None:
    first = submit(client)
    again = submit(client)
    assert again.history[0].headers["location"].startswith("/received/")
    assert "同じ内容のご請求を既に受け付けております" in again.text
    assert reference_in(again.text) == reference_in(first.text)
    assert len(requests_in(rt)) == 1
    # The receipt link is signed: a changed one shows nothing.
    receipt = again.history[0].headers["location"].split("?")[0]
    assert client.get(receipt[:-1] + ("0" if receipt[-1] != "0" else "1")).status_code == 404
    # Other details, or the same more than a day later, is a new request.
    submit(client, details="別の内容です。")
    assert len(requests_in(rt)) == 2
    with Session(rt.db) as session:
        session.execute(update(Request).values(received_at=datetime.now(UTC) - timedelta(hours=25)))
        session.commit()
    submit(client)
    assert len(requests_in(rt)) == 3


def test_a_disclosure_method_is_ignored_for_other_types(rt: Runtime, client: TestClient) -> None:
    response = submit(client, type="correction", disclosure_method="paper")
    assert response.status_code == 200
    assert requests_in(rt)[0].disclosure_method is None


def test_errors_sit_next_to_their_fields(client: TestClient) -> None:
    response = submit(client, email="nope", details="")
    assert response.status_code == 422
    page = response.text
    assert "<title>入力内容にエラーがあります | " in page
    email = re.search(r'<input[^>]*id="email"[^>]*>', page).group(0)  # type: ignore[union-attr]
    details = re.search(r"<textarea[^>]*>", page).group(0)  # type: ignore[union-attr]
    assert 'aria-invalid="true"' in email
    assert "autofocus" in email
    assert 'aria-describedby="error-email email-hint"' in email
    assert 'aria-invalid="true"' in details
    assert "autofocus" not in details
    assert 'id="error-email"' in page
    assert 'id="error-details"' in page
    name = re.search(r'<input[^>]*id="name"[^>]*>', page).group(0)  # type: ignore[union-attr]
    assert "aria-invalid" not in name
    assert 'href="#email"' in page  # the summary links to the field


def test_a_request_of_20000_japanese_characters_is_accepted(
    rt: Runtime, client: TestClient
) -> None:
    details = "個人データの開示を求めます。" * 1428 + "以上です。"
    assert len(details) > 19_990
    details = details[:20_000]
    response = submit(client, details=details)
    assert response.status_code == 200, response.text[:500]
    assert requests_in(rt)[0].details == details


def test_413_and_429_are_pages_in_the_pages_language(rt: Runtime, client: TestClient) -> None:
    token = csrf_token(client.get("/?lang=en").text)
    too_long = {**request_body(details="あ" * 40_000), "csrf_token": token}
    response = client.post("/?lang=en", data=too_long)
    assert response.status_code == 413
    assert response.headers["content-type"].startswith("text/html")
    assert '<html lang="en">' in response.text
    assert "Too much to send" in response.text
    ja = client.post("/?lang=ja", data=too_long)
    assert ja.status_code == 413
    assert "送信内容が大きすぎます" in ja.text
    # The JSON API still answers problem details.
    api = client.post(
        "/api/v1/requests",
        content=b'{"details": "' + b"a" * 70_000 + b'"}',
        headers={"content-type": "application/json"},
    )
    assert api.status_code == 413
    assert api.headers["content-type"] == "application/problem+json"

    client.app.state.rate_limiter.buckets["intake"] = 1  # type: ignore[attr-defined]
    assert submit(client, lang="en").status_code == 200
    limited = submit(client, lang="en", details="another")
    assert limited.status_code == 429
    assert limited.headers["retry-after"].isdigit()
    assert "Please try again later" in limited.text


def test_full_width_addresses_and_phone_numbers_are_normalised(
    rt: Runtime, client: TestClient
) -> None:
    response = submit(
        client, email="ｔａｒｏ＠ｅｘａｍｐｌｅ．ｊｐ", phone="０３－１２３４－５６７８"
    )
    assert response.status_code == 200
    stored = requests_in(rt)[0]
    assert (stored.requester_email, stored.requester_phone) == ("taro@example.jp", "03-1234-5678")


def test_the_pages_carry_the_companys_branding(
    tmp_path: Path, settings: Settings, db: object
) -> None:
    workflows = tmp_path / "workflows"
    shutil.copytree(WORKFLOWS, workflows)
    company = workflows / "company.yaml"
    company.write_text(
        company.read_text(encoding="utf-8").replace(
            '  colour: "#1f4e79"',
            '  colour: "#7a1f5c"\n  address:\n    ja: 東京都千代田区1-1\n'
            "    en: 1-1 Chiyoda, Tokyo\n  phone: 03-1111-2222",
        ),
        encoding="utf-8",
    )
    settings.workflows_dir = workflows
    rt = Runtime.load(settings, db=db)  # type: ignore[arg-type]
    with TestClient(create_app(rt)) as client:
        page = client.get("/").text
        assert '<img src="/branding/logo" alt="株式会社InnovativeAI">' in page
        assert "--brand: #7a1f5c;" in page
        assert "東京都千代田区1-1" in page
        assert "03-1111-2222" in page
        assert "info@innovativeai.co.jp" in page
        assert "1-1 Chiyoda, Tokyo" in client.get("/?lang=en").text
        logo = client.get("/branding/logo")
        assert logo.status_code == 200
        assert logo.headers["content-type"] == "image/svg+xml"
        assert logo.headers["content-security-policy"] == "sandbox"


# --- 2. the status page is the requester's hub ----------------------------------------------


def test_status_lists_the_newest_letter_first_and_says_what_comes_next(
    rt: Runtime, client: TestClient
) -> None:
    link = status_link(submit(client, type="disclosure").text)
    page = client.get(link).text
    assert "お送りしたメールのリンクから、メールアドレスの確認をお願いいたします" in page
    reference = reference_in(page)
    confirm(client, verify_link(rt, reference))
    page = client.get(link).text
    assert 'id="email-state">確認済み<' in page
    assert "メールアドレスの確認が完了しました。ご本人確認のため" in page
    post_form(client, f"{link}/withdraw", {}, page_url=link)
    page = client.get(link).text
    assert "ご請求は取り下げられました" in page
    assert page.index("ご請求の取下げを承りました") < page.index("を受け付けました")
    assert "overflow-wrap: anywhere" in page  # long URLs wrap (checked at 390 px in Chromium)
    assert re.search(r'<a href="http://testserver/status/st_[\w-]+">', page)  # links are links


def test_the_status_link_ends_some_time_after_the_request_closes(
    rt: Runtime, client: TestClient
) -> None:
    link = status_link(submit(client).text)
    post_form(client, f"{link}/withdraw", {}, page_url=link)
    assert 'id="state">取下げ済み<' in client.get(link).text  # closed, still within the window
    days = rt.settings.status_link_days_after_close
    with Session(rt.db) as session:
        session.execute(
            update(Request).values(closed_at=datetime.now(UTC) - timedelta(days=days, hours=1))
        )
        session.commit()
    page = client.get(link)
    assert page.status_code == 200
    assert "このご請求のお手続きは終了しております" in page.text
    assert "DSR-" not in page.text
    assert "取下げ" not in page.text


def upload(
    client: TestClient, link: str, content: bytes, *, kind: str = "identity", name: str = "id.png"
):  # type: ignore[no-untyped-def]
    token = csrf_token(client.get(link).text)
    return client.post(
        f"{link}/documents",
        data={"kind": kind, "csrf_token": token},
        files={"file": (name, content, "application/octet-stream")},
    )


def test_documents_are_uploaded_listed_audited_and_discarded(
    rt: Runtime, client: TestClient, auth: dict[str, str]
) -> None:
    link = status_link(submit(client).text)
    page = client.get(link).text
    assert "マイナンバーカードの裏面（個人番号が記載された面）は送らないでください" in page
    response = upload(client, link, PNG, name="../../免許証.png")
    assert response.status_code == 200
    assert "書類を受け付けました" in response.text
    assert "免許証.png" in response.text
    request_id = requests_in(rt)[0].id
    listing = client.get(f"/api/v1/requests/{request_id}/documents", headers=auth)
    assert listing.status_code == 200
    [doc] = listing.json()
    assert (doc["kind"], doc["content_type"], doc["filename"]) == (
        "identity",
        "image/png",
        "免許証.png",
    )
    download = client.get(f"/api/v1/requests/{request_id}/documents/{doc['id']}", headers=auth)
    assert download.content == PNG
    assert download.headers["content-type"] == "image/png"
    assert download.headers["content-disposition"].startswith("attachment;")
    assert download.headers["cache-control"] == "no-store"
    assert [e.detail["document_id"] for e in events_of(rt, "document_uploaded")] == [doc["id"]]
    assert len(events_of(rt, "document_viewed")) == 1
    # A requester cannot see it; a handler marks the back of a My Number card: gone at once.
    assert client.get(f"/api/v1/requests/{request_id}/documents/{doc['id']}").status_code == 401
    gone = client.post(
        f"/api/v1/requests/{request_id}/documents/{doc['id']}/discard",
        json={"reason": "my_number_back"},
        headers=auth,
    )
    assert gone.status_code == 200
    assert gone.json()["removed_reason"] == "my_number_back"
    again = client.get(f"/api/v1/requests/{request_id}/documents/{doc['id']}", headers=auth)
    assert again.status_code == 404
    with Session(rt.db) as session:
        assert session.exec(select(RequesterDocument.content)).one() is None
        assert verify_chains(session)[1] == []


def test_uploads_have_size_type_and_count_limits(rt: Runtime, client: TestClient) -> None:
    link = status_link(submit(client).text)
    wrong = upload(client, link, b"<html><script>alert(1)</script>", name="id.png")
    assert wrong.status_code == 422
    assert "JPEG・PNG・PDF形式のファイルをお送りください" in wrong.text
    assert 'aria-invalid="true"' in wrong.text
    rt.settings.max_upload_bytes = 1024
    big = upload(client, link, PNG + b"\x00" * 2048)
    assert big.status_code == 422
    assert "ファイルが大きすぎます" in big.text
    rt.settings.max_documents_per_request = 2
    assert upload(client, link, PNG).status_code == 200
    assert upload(client, link, PDF, kind="authority", name="委任状.pdf").status_code == 200
    third = upload(client, link, PNG)
    assert third.status_code == 422
    assert "上限に達しました" in third.text
    with Session(rt.db) as session:
        assert session.exec(select(func.count()).select_from(RequesterDocument)).one() == 2
    # A closed request takes no more documents and offers no form.
    post_form(client, f"{link}/withdraw", {}, page_url=link)
    assert 'id="upload"' not in client.get(link).text


def test_documents_are_removed_when_retention_says_so(rt: Runtime, client: TestClient) -> None:
    link = status_link(submit(client).text)
    upload(client, link, PNG)
    post_form(client, f"{link}/withdraw", {}, page_url=link)
    days = rt.settings.document_retention_days_after_close
    with Session(rt.db, expire_on_commit=False) as session:
        assert documents.purge_expired(rt, session) == 0  # closed just now: kept
        session.execute(
            update(Request).values(closed_at=datetime.now(UTC) - timedelta(days=days, hours=1))
        )
        session.commit()
    asyncio.run(document_purge(rt))  # the scheduler's hourly job
    with Session(rt.db, expire_on_commit=False) as session:
        assert documents.purge_expired(rt, session) == 0
        row = session.exec(select(RequesterDocument)).one()
        assert row.content is None
        assert row.removed_reason == "retention"
        assert verify_chains(session)[1] == []
    assert [e.detail["reason"] for e in events_of(rt, "document_removed")] == ["retention"]


# --- 3. links that mail scanners cannot spend ------------------------------------------------


def test_a_scanner_opening_the_link_spends_nothing(rt: Runtime, client: TestClient) -> None:
    reference = reference_in(submit(client, type="purpose_notice").text)
    link = verify_link(rt, reference)
    for _ in range(3):  # a mail gateway, a preview, the person
        page = client.get(link)
        assert page.status_code == 200
        assert 'id="confirm"' in page.text
    [request] = requests_in(rt)
    assert request.email_verified_at is None
    assert request.state == "received"
    assert events_of(rt, "email_verified") == []
    done = client.post(link, data={"csrf_token": csrf_token(page.text)})
    assert "ご本人確認が完了しました" in done.text
    assert "使用済み" in client.get(link).text


def test_the_link_is_single_use_under_simultaneous_confirmations(
    rt: Runtime, client: TestClient
) -> None:
    reference = reference_in(submit(client, type="purpose_notice").text)
    token = verify_link(rt, reference).rsplit("/", 1)[1]
    outcomes: list[object] = []
    start = threading.Barrier(6)

    def use() -> None:
        with Session(rt.db, expire_on_commit=False) as session:
            start.wait()
            try:
                outcomes.append(service.verify_email(rt, session, token)[0])
            except Exception as exc:  # a Conflict is an allowed answer, an error is not
                outcomes.append(type(exc).__name__)

    threads = [threading.Thread(target=use) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count(service.EmailCheck.IDENTITY_VERIFIED) == 1, outcomes
    assert all(
        o in (service.EmailCheck.IDENTITY_VERIFIED, service.EmailCheck.USED) for o in outcomes
    )
    assert len(events_of(rt, "email_verified")) == 1
    with Session(rt.db) as session:
        assert verify_chains(session)[1] == []


# --- 4. cross-site posts ---------------------------------------------------------------------


def test_cross_site_posts_get_403_and_change_nothing(rt: Runtime, client: TestClient) -> None:
    link = status_link(submit(client).text)
    reference = requests_in(rt)[0].reference
    verify = verify_link(rt, reference)
    token = csrf_token(client.get("/").text)
    form = {**request_body(details="攻撃者のページから"), "csrf_token": token}
    posts = [
        ("/", form, {}),
        (verify, {"csrf_token": token}, {}),
        (f"{link}/withdraw", {"csrf_token": token}, {}),
        (f"{link}/documents", {"csrf_token": token, "kind": "identity"}, {"file": ("a.png", PNG)}),
    ]
    cross = [
        {"origin": "https://evil.example"},
        {"origin": "null"},
        {"referer": "https://evil.example/page"},
        {"sec-fetch-site": "cross-site", "origin": "http://testserver"},
        {"origin": "http://testserver.evil.example"},
    ]
    for url, data, files in posts:
        for headers in cross:
            response = client.post(url, data=data, files=files or None, headers=headers)
            assert response.status_code == 403, (url, headers)
            assert "このページからは送信できません" in response.text
        # The right origin without the page's token, or with another browser's, fails too.
        no_token = {k: v for k, v in data.items() if k != "csrf_token"}
        assert client.post(url, data=no_token, files=files or None).status_code == 403
        stranger = TestClient(client.app)
        assert stranger.post(url, data=data, files=files or None).status_code == 403
    [request] = requests_in(rt)
    assert request.state == "received"
    assert request.email_verified_at is None
    with Session(rt.db) as session:
        assert session.exec(select(func.count()).select_from(RequesterDocument)).one() == 0
    # The same posts from the page itself pass.
    ok = client.post(
        f"{link}/withdraw", data={"csrf_token": token}, headers={"origin": "http://testserver"}
    )
    assert ok.status_code == 200
    assert 'id="state">取下げ済み<' in ok.text


def test_hsts_when_the_base_url_is_https(settings: Settings, db: object) -> None:
    settings.base_url = "https://privacy.example.jp"
    rt = Runtime.load(settings, db=db)  # type: ignore[arg-type]
    with TestClient(create_app(rt), base_url="https://privacy.example.jp") as client:
        cookie = client.get("/").headers["set-cookie"]
        assert "Secure" in cookie
        assert "HttpOnly" in cookie
        for path in ("/", "/healthz", "/api/v1/workflows", "/docs"):
            assert client.get(path).headers["strict-transport-security"].startswith("max-age=")


def test_no_hsts_over_plain_http(client: TestClient) -> None:
    assert "strict-transport-security" not in client.get("/").headers


@pytest.mark.parametrize("lang", ["ja", "en"])
def test_verify_and_status_are_rate_limited(rt: Runtime, client: TestClient, lang: str) -> None:
    link = status_link(submit(client).text)
    verify = verify_link(rt, requests_in(rt)[0].reference)
    limiter = client.app.state.rate_limiter  # type: ignore[attr-defined]
    limiter.buckets.update(status=2, verify=2)
    limiter.clear()
    for url in (f"{link}?lang={lang}", f"{verify}?lang={lang}"):
        assert client.get(url).status_code != 429
        assert client.get(url).status_code != 429
        limited = client.get(url)
        assert limited.status_code == 429
        assert f'<html lang="{lang}">' in limited.text
