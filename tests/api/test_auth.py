"""Every handler route needs a valid token; roles limit what a token may do."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from dsrflow.app import create_app
from dsrflow.auth.service import revoke_handler
from dsrflow.runtime import Runtime
from tests.conftest import auth_header, make_request

PUBLIC = {("POST", "/api/v1/requests")}
OPEN_PREFIXES = ("/api/v1/workflows", "/api/v1/legal-reasons")


def handler_routes(rt: Runtime) -> list[tuple[str, str]]:
    """Every JSON route under /api/v1 that is not public, read from the app's own schema."""
    routes = []
    for path, operations in create_app(rt).openapi()["paths"].items():
        if not path.startswith("/api/v1") or path.startswith(OPEN_PREFIXES):
            continue
        for method in operations:
            if (method.upper(), path) not in PUBLIC:
                routes.append((method.upper(), path))
    return sorted(routes)


def concrete(path: str, request_id: str) -> str:
    return re.sub(r"\{[^}]+\}", lambda m: request_id if m.group(0) == "{request_id}" else "1", path)


def test_handler_routes_exist(rt: Runtime) -> None:
    routes = handler_routes(rt)
    assert ("GET", "/api/v1/requests") in routes
    assert ("POST", "/api/v1/requests/{request_id}/transitions") in routes


def test_every_handler_route_refuses_missing_and_bad_tokens(
    rt: Runtime, client: TestClient
) -> None:
    request = make_request(rt, "disclosure")
    for method, path in handler_routes(rt):
        url = concrete(path, request.id)
        for headers in ({}, {"Authorization": "Bearer dsr_wrong"}, {"Authorization": "Basic eDp5"}):
            response = client.request(method, url, headers=headers, json={})
            assert response.status_code == 401, (method, path, headers, response.text)
            assert response.headers["content-type"].startswith("application/problem+json")
            assert response.headers["www-authenticate"].startswith("Bearer")


def test_revoked_token_is_refused(rt: Runtime, client: TestClient) -> None:
    headers = auth_header(rt, "handler")
    assert client.get("/api/v1/requests", headers=headers).status_code == 200
    with Session(rt.db) as session:
        revoke_handler(session, 1)
    assert client.get("/api/v1/requests", headers=headers).status_code == 401


@pytest.mark.parametrize(
    ("role", "may_decide"), [("admin", True), ("handler", True), ("auditor", False)]
)
def test_roles(role: str, may_decide: bool, rt: Runtime, client: TestClient) -> None:
    headers = auth_header(rt, role)
    request = make_request(rt, "disclosure")
    assert client.get(f"/api/v1/requests/{request.id}", headers=headers).status_code == 200
    response = client.post(
        f"/api/v1/requests/{request.id}/transitions",
        json={"trigger": "withdraw", "note": "本人から電話"},
        headers=headers,
    )
    assert response.status_code == (200 if may_decide else 403), response.text


def test_tokens_are_stored_hashed(rt: Runtime) -> None:
    headers = auth_header(rt, "admin")
    token = headers["Authorization"].removeprefix("Bearer ")
    assert len(token) > 40
    with rt.db.connect() as connection:
        stored = connection.exec_driver_sql("SELECT token_hash FROM handlers").scalar_one()
    assert token not in stored
    assert len(stored) == 64
