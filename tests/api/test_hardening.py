"""HTTP hardening: security headers per route, local API docs, bounded headers and limiter,
proxies believed only when configured, odd input as 4xx, and a clean connection after a 500."""

from __future__ import annotations

import contextlib
import http.client
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from dsrflow.app import create_app
from dsrflow.config import Settings
from dsrflow.runtime import Runtime
from dsrflow.web.headers import DOCS_CSP, PAGE_CSP
from dsrflow.web.limits import RateLimiter
from dsrflow.web.server import uvicorn_config
from tests.conftest import make_request, request_body
from tests.services import free_port

NO_STORE = {"cache-control": "no-store", "x-content-type-options": "nosniff"}
PAGE = {
    **NO_STORE,
    "content-security-policy": PAGE_CSP,
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
}
DOCS = {
    "content-security-policy": DOCS_CSP,
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
}
# route -> (status, the headers it must carry); {id} is a request's id, {token} a status token.
HEADERS_TABLE: list[tuple[str, str, int, dict[str, str]]] = [
    ("GET", "/", 200, PAGE),
    ("GET", "/?lang=en", 200, PAGE),
    ("GET", "/verify/vt_unknown", 404, PAGE),
    ("GET", "/status/st_unknown", 404, PAGE),
    ("GET", "/no/such/page", 404, PAGE),
    ("GET", "/assets/pages.js", 200, PAGE),
    ("GET", "/docs", 200, DOCS),
    ("GET", "/redoc", 200, DOCS),
    ("GET", "/docs/assets/swagger-ui-bundle.js", 200, DOCS),
    ("GET", "/api/v1/requests", 200, NO_STORE),
    ("GET", "/api/v1/requests/{id}", 200, NO_STORE),
    ("GET", "/api/v1/requests/{id}/documents", 200, NO_STORE),
    ("GET", "/api/v1/requests/{id}/messages", 200, NO_STORE),
    ("GET", "/api/v1/inbox", 200, NO_STORE),
    ("GET", "/api/v1/requests/nothing", 404, NO_STORE),
    ("GET", "/api/v1/workflows", 200, NO_STORE),
    ("GET", "/api/v1/legal-reasons", 200, NO_STORE),
    ("GET", "/openapi.json", 200, NO_STORE),
    ("GET", "/healthz", 200, NO_STORE),
]


@pytest.mark.parametrize(("method", "route", "status", "expected"), HEADERS_TABLE)
def test_security_headers_per_route(
    rt: Runtime,
    client: TestClient,
    auth: dict[str, str],
    method: str,
    route: str,
    status: int,
    expected: dict[str, str],
) -> None:
    request = make_request(rt)
    response = client.request(method, route.format(id=request.id), headers=auth)
    assert response.status_code == status
    for name, value in expected.items():
        assert response.headers.get(name) == value, name
    assert "server" not in response.headers or response.headers["server"] != "uvicorn"


def test_the_receipt_redirect_and_cross_site_refusals_carry_page_headers(
    client: TestClient,
) -> None:
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/").text).group(1)  # type: ignore[union-attr]
    redirect = client.post(
        "/", data={**request_body(), "csrf_token": token}, follow_redirects=False
    )
    assert redirect.status_code == 303
    refused = client.post("/", data=request_body(), headers={"origin": "https://evil.example"})
    assert refused.status_code == 403
    for response in (redirect, refused):
        for name, value in PAGE.items():
            assert response.headers.get(name) == value, name


def test_api_docs_load_nothing_from_elsewhere(client: TestClient) -> None:
    for page in ("/docs", "/redoc"):
        html = client.get(page).text
        sources = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert sources
        assert all(s.startswith("/") for s in sources), sources
        assert "<script>" not in html  # no inline script: the CSP allows 'self' only
        for source in sources:
            asset = client.get(source)
            assert asset.status_code == 200, source
            assert len(asset.content) > 100, source
    assert "SwaggerUIBundle" in client.get("/docs/assets/swagger-ui-bundle.js").text
    assert client.get("/docs/assets/../../app.py").status_code == 404


def test_the_limiter_forgets_the_least_recent_clients() -> None:
    now = [0.0]
    limiter = RateLimiter(2, buckets={"status": 3}, max_clients=1000, clock=lambda: now[0])
    for n in range(100_000):
        limiter.retry_after("intake", f"10.{n // 65536}.{n // 256 % 256}.{n % 256}")
    assert len(limiter) == 1000  # bounded, whatever the flood
    # Budgets per bucket, a window that slides.
    assert limiter.retry_after("intake", "a") is None
    assert limiter.retry_after("intake", "a") is None
    assert limiter.retry_after("intake", "a") == 61
    assert [limiter.retry_after("status", "a") for _ in range(4)] == [None, None, None, 61]
    now[0] = 61.0
    assert limiter.retry_after("intake", "a") is None


ODD_GETS = [
    "/api/v1/requests?offset=9223372036854775808",
    "/api/v1/requests?limit=9223372036854775808",
    "/api/v1/inbox?offset=9223372036854775808",
    "/api/v1/inbox/9223372036854775808",
    "/api/v1/inbox/2147483648",
    "/api/v1/inbox/1/attachments/9223372036854775808",
    "/api/v1/requests/{id}/documents/9223372036854775808",
    "/api/v1/requests/9223372036854775808",
    "/api/v1/requests?due_before=0001-01-01T00:00:00%2B09:00",
    "/api/v1/requests?due_before=9999-12-31T23:59:59-09:00",
    "/api/v1/requests?state=%00",
    "/api/v1/requests/%00",
    "/api/v1/requests/{id}%00",
    "/api/v1/legal-reasons?type=a%00b",
    "/status/st_%00",
    "/verify/vt_a%00b",
    "/?lang=%00",
]


def test_odd_input_gets_a_4xx_never_a_500(rt: Runtime, auth: dict[str, str]) -> None:
    request = make_request(rt)
    with TestClient(create_app(rt), raise_server_exceptions=False) as client:
        for url in ODD_GETS:
            response = client.get(url.format(id=request.id), headers=auth)
            assert 400 <= response.status_code < 500, (url, response.status_code)
        posts: list[tuple[str, dict[str, Any]]] = [
            (
                f"/api/v1/requests/{request.id}/transitions",
                {"trigger": "refuse", "reason_code": "PROC_ID_UNVERIFIED", "explanation": "a\0b"},
            ),
            (f"/api/v1/requests/{request.id}/transitions", {"trigger": "withdraw", "note": "\0"}),
            (
                f"/api/v1/requests/{request.id}/transitions",
                {"trigger": "withdraw", "expected_version": 2**63},
            ),
            (f"/api/v1/requests/{request.id}/extensions", {"days": 2**63, "reason": "x"}),
            ("/api/v1/requests", request_body(name="山田\0太郎")),
            ("/api/v1/requests", request_body(details="開示\0請求")),
        ]
        for url, body in posts:
            response = client.post(url, json=body, headers=auth)
            assert 400 <= response.status_code < 500, (url, response.status_code)
    # NUL never reached a letter (nor anything else stored).
    from sqlmodel import Session, select

    from dsrflow.outbound_mail.models import OutboxMessage

    with Session(rt.db) as session:
        assert all("\0" not in m.body for m in session.exec(select(OutboxMessage)))


def test_nul_in_a_form_field_is_a_form_error(client: TestClient) -> None:
    page = client.get("/").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    response = client.post("/", data={**request_body(details="a\0b"), "csrf_token": token})
    assert response.status_code == 422
    assert 'id="error-details"' in response.text


def test_the_json_api_takes_json_bodies_only(client: TestClient) -> None:
    body = '{"type": "disclosure", "name": "a", "email": "a@example.jp", "details": "x"}'
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
        response = client.post(
            "/api/v1/requests", content=body, headers={"content-type": content_type}
        )
        assert response.status_code == 415, content_type
        assert response.headers["content-type"] == "application/problem+json"
    ok = client.post("/api/v1/requests", content=body, headers={"content-type": "application/json"})
    assert ok.status_code == 201


# --- a real server ---------------------------------------------------------------------------


@contextmanager
def live_server(app: FastAPI, settings: Settings) -> Iterator[int]:
    port = free_port()
    server = uvicorn.Server(
        uvicorn_config(
            app, settings, host="127.0.0.1", port=port, log_level="critical", log_config=None
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def raw_request(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(data)  # the server may stop reading once it has seen enough
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except (ConnectionResetError, TimeoutError):
            pass
    return b"".join(chunks)


def test_an_oversized_header_is_refused(rt: Runtime) -> None:
    with live_server(create_app(rt), rt.settings) as port:
        small = raw_request(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert small.startswith(b"HTTP/1.1 200")
        line = b"X-Big: " + b"a" * (8 * 1024 * 1024) + b"\r\n"
        big = raw_request(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + line + b"\r\n")
        assert big.startswith(b"HTTP/1.1 400"), big[:100]
        # Many headers each under the limit count together (431 when they arrive at once).
        many = b"".join(b"X-%d: %s\r\n" % (n, b"b" * 1000) for n in range(40))
        answer = raw_request(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n")
        assert answer.startswith(b"HTTP/1.1 431"), answer[:100]


def test_the_header_bound_is_per_request_and_counts_a_head_sent_in_pieces(rt: Runtime) -> None:
    limit = rt.settings.max_header_bytes
    filler = b"X-Fill: " + b"f" * (limit // 2) + b"\r\n"
    one = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + filler + b"\r\n"
    with live_server(create_app(rt), rt.settings) as port:
        # Three requests on one connection, each under the bound, together over it.
        answers = raw_request(
            port, one * 2 + one.replace(b"Host: x", b"Host: x\r\nConnection: close")
        )
        assert answers.count(b"HTTP/1.1 200") == 3, answers[:300]
        # A head that never ends, sent a piece at a time, is cut off past the bound.
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            answer = b""
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                for n in range(4 * limit // 1024):
                    sock.sendall(b"X-%d: %s\r\n" % (n, b"p" * 1000))
                    time.sleep(0.002)
            with contextlib.suppress(ConnectionResetError):
                while chunk := sock.recv(65536):
                    answer += chunk
        assert answer.startswith(b"HTTP/1.1 400"), answer[:100]


def _statuses(port: int, forwarded_for: list[str]) -> list[int]:
    statuses = []
    for address in forwarded_for:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request("GET", "/status/st_unknown", headers={"X-Forwarded-For": address})
        statuses.append(connection.getresponse().status)
        connection.close()
    return statuses


def test_forwarded_for_is_believed_only_from_configured_proxies(rt: Runtime) -> None:
    rt.settings.rate_limits = {"status": 2}
    fresh = ["198.51.100.1", "198.51.100.2", "198.51.100.3", "198.51.100.4"]
    with live_server(create_app(rt), rt.settings) as port:
        # A local client cannot reset its budget with a fresh header.
        assert _statuses(port, fresh) == [404, 404, 429, 429]
    rt.settings.forwarded_allow_ips = "127.0.0.1"
    with live_server(create_app(rt), rt.settings) as port:
        assert _statuses(port, fresh) == [404, 404, 404, 404]  # each its own client
        assert _statuses(port, ["198.51.100.1", "198.51.100.1"]) == [404, 429]


def test_after_a_500_the_next_call_on_the_connection_works(rt: Runtime) -> None:
    app = create_app(rt)

    @app.get("/api/v1/boom")
    def boom() -> None:
        raise RuntimeError("a bug")

    with live_server(app, rt.settings) as port:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request("GET", "/api/v1/boom")
        failed = connection.getresponse()
        assert failed.status == 500
        assert failed.getheader("connection") == "close"
        assert b"Internal error" in failed.read()
        for _ in range(3):  # the client knows to reconnect; no call fails
            connection.request("GET", "/healthz")
            answer = connection.getresponse()
            assert answer.status == 200
            assert answer.read() == b'{"status":"ok"}'
        connection.close()
