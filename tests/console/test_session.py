"""Console sign-in: the session cookie, the redirect to the login page, CSRF, roles, revocation."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlmodel import Session, select

from dsrflow.app import create_app
from dsrflow.auth.models import ConsoleSession
from dsrflow.auth.repository import handler_by_token
from dsrflow.auth.service import revoke_handler
from dsrflow.runtime import Runtime
from tests.conftest import make_request
from tests.console.conftest import csrf_of, new_token, sign_in


def test_login_sets_a_strict_http_only_cookie_and_redirects(rt: Runtime) -> None:
    token = new_token(rt)
    with TestClient(create_app(rt)) as client:
        page = client.get("/console/login")
        assert page.status_code == 200
        assert 'name="token"' in page.text
        answer = client.post("/console/login", data={"token": token}, follow_redirects=False)
        assert answer.status_code == 303
        assert answer.headers["location"] == "/console/"
        cookie = answer.headers["set-cookie"]
        assert "HttpOnly" in cookie
        assert "SameSite=strict" in cookie
        assert "Path=/console" in cookie
        assert "Secure" not in cookie  # BASE_URL is http:// in tests
        session_id = client.cookies["dsrflow_console"]
        assert client.get("/console/").status_code == 200
    with Session(rt.db) as s:
        stored = s.exec(select(ConsoleSession.session_hash)).all()
    assert session_id not in stored
    assert len(stored) == 1


def test_secure_cookie_under_https(rt: Runtime) -> None:
    rt.settings.base_url = "https://dsr.example.jp"
    token = new_token(rt)
    with TestClient(create_app(rt), base_url="https://dsr.example.jp") as client:
        answer = client.post("/console/login", data={"token": token}, follow_redirects=False)
        assert answer.status_code == 303
        assert "Secure" in answer.headers["set-cookie"]


def test_bad_token_is_401_and_sets_no_cookie(rt: Runtime) -> None:
    with TestClient(create_app(rt)) as client:
        answer = client.post("/console/login", data={"token": "dsr_wrong"}, follow_redirects=False)
        assert answer.status_code == 401
        assert "set-cookie" not in answer.headers
        assert "トークンが正しくないか" in answer.text


def test_login_refuses_another_origin_and_is_rate_limited(rt: Runtime) -> None:
    token = new_token(rt)
    app = create_app(rt)
    with TestClient(app) as client:
        cross = client.post(
            "/console/login",
            data={"token": token},
            headers={"Origin": "https://evil.example"},
            follow_redirects=False,
        )
        assert cross.status_code == 403
        assert "set-cookie" not in cross.headers
        app.state.rate_limiter.buckets["console_login"] = 3
        codes = [
            client.post("/console/login", data={"token": "x"}, follow_redirects=False).status_code
            for _ in range(4)
        ]
        assert codes == [401, 401, 401, 429]


def test_every_console_page_without_a_session_redirects_to_login(rt: Runtime) -> None:
    request = make_request(rt)
    with TestClient(create_app(rt)) as client:
        for path in (
            "/console/",
            f"/console/requests/{request.id}",
            "/console/inbox",
            "/console/inbox/1",
            "/console/reports",
        ):
            answer = client.get(path, follow_redirects=False)
            assert answer.status_code == 303, path
            assert answer.headers["location"].startswith("/console/login"), path
        answer = client.post(
            f"/console/requests/{request.id}/transitions",
            data={"trigger": "withdraw"},
            follow_redirects=False,
        )
        assert answer.status_code == 303
        assert answer.headers["location"] == "/console/login"


def test_post_without_a_valid_csrf_token_is_403_and_changes_nothing(
    rt: Runtime, desk: TestClient
) -> None:
    request = make_request(rt)
    for data in ({}, {"csrf_token": "1.forged"}):
        answer = desk.post(
            f"/console/requests/{request.id}/transitions",
            data={"trigger": "withdraw", "note": "x", **data},
            follow_redirects=False,
        )
        assert answer.status_code == 403
        assert "フォームの有効期限が切れたか" in answer.text
    # A token from another session does not fit this one.
    with TestClient(create_app(rt)) as other:
        sign_in(other, new_token(rt, name="別の担当者"))
        foreign = csrf_of(other.get("/console/").text)
    answer = desk.post(
        f"/console/requests/{request.id}/transitions",
        data={"trigger": "withdraw", "note": "x", "csrf_token": foreign},
        follow_redirects=False,
    )
    assert answer.status_code == 403
    page = desk.get(f"/console/requests/{request.id}")
    received = rt.definitions.workflow("disclosure").states["received"].label.ja
    assert f'id="state">{received}<' in page.text


def test_logout_ends_the_session(rt: Runtime, desk: TestClient) -> None:
    token = csrf_of(desk.get("/console/").text)
    session_id = desk.cookies["dsrflow_console"]
    answer = desk.post("/console/logout", data={"csrf_token": token}, follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/console/login"
    # Even a kept copy of the cookie opens nothing now.
    desk.cookies.set("dsrflow_console", session_id, path="/console")
    assert desk.get("/console/", follow_redirects=False).status_code == 303


def test_revoking_the_token_ends_its_sessions(rt: Runtime) -> None:
    token = new_token(rt)
    with TestClient(create_app(rt)) as client:
        sign_in(client, token)
        assert client.get("/console/").status_code == 200
        with Session(rt.db) as s:
            handler = handler_by_token(s, token)
            assert handler is not None
            assert handler.id is not None
            revoke_handler(s, handler.id)
        assert client.get("/console/", follow_redirects=False).status_code == 303


def test_an_auditor_reads_but_may_not_decide(rt: Runtime) -> None:
    request = make_request(rt)
    with TestClient(create_app(rt)) as client:
        sign_in(client, new_token(rt, role="auditor", name="監査 担当"))
        page = client.get(f"/console/requests/{request.id}")
        assert page.status_code == 200
        assert "閲覧のみの権限" in page.text
        assert "/preview" not in page.text
        answer = client.post(
            f"/console/requests/{request.id}/transitions",
            data={"trigger": "withdraw", "note": "x", "csrf_token": csrf_of(page.text)},
            follow_redirects=False,
        )
        assert answer.status_code == 403
        assert client.get("/console/reports").status_code == 200


def test_pages_are_japanese_by_default_english_with_lang_en(desk: TestClient) -> None:
    ja = desk.get("/console/")
    assert '<html lang="ja">' in ja.text
    assert "対応中の請求" in ja.text
    en = desk.get("/console/?lang=en")
    assert '<html lang="en">' in en.text
    assert "Open requests" in en.text
    assert 'href="/console/inbox?lang=en"' in en.text  # the language follows the links
    assert "script" not in ja.headers["content-security-policy"]
    assert ja.headers["cache-control"] == "no-store"
