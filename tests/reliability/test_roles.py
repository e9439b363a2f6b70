"""The route and role matrix (issue 12, section 7): every operation in /openapi.json, called
with no token, a bad token and each role, answers as its role allows, and never 5xx."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from dsrflow.auth.tokens import ROLES
from dsrflow.runtime import Runtime
from tests.conftest import auth_header, make_request

PUBLIC = {("post", "/api/v1/requests")}
# Operations that only read: any role may; the rest change things: not the auditor.
READS = {"get"}


@pytest.fixture
def backend() -> str:
    return "sqlite"


def operations(client: TestClient) -> list[tuple[str, str]]:
    paths = client.get("/openapi.json").json()["paths"]
    return sorted(
        (method, path)
        for path, item in paths.items()
        for method in item
        if path.startswith("/api/v1/") and method in {"get", "post", "put", "patch", "delete"}
    )


def test_route_and_role_matrix(rt: Runtime, client: TestClient) -> None:
    request = make_request(rt, "disclosure")
    ids = {"request_id": request.id, "inbound_id": "1", "attachment_id": "1", "type": "disclosure"}
    headers = {role: auth_header(rt, role) for role in ROLES}
    matrix: dict[tuple[str, str], dict[str, int]] = {}
    for method, template in operations(client):
        path = re.sub(r"\{(\w+)\}", lambda m: ids.get(m.group(1), "x"), template)
        row: dict[str, int] = {}
        callers = {"none": {}, "bad": {"Authorization": "Bearer nope"}, **headers}
        for who, auth in callers.items():
            body = {} if method != "get" else None
            status = client.request(method.upper(), path, headers=auth, json=body).status_code
            row[who] = status
        matrix[(method, template)] = row
        assert all(s < 500 for s in row.values()), (method, template, row)
        public = (
            (method, template) in PUBLIC
            or template.startswith("/api/v1/workflows")
            or (template == "/api/v1/legal-reasons")
        )
        if public:
            continue
        assert row["none"] == 401, (method, template, row)
        assert row["bad"] == 401, (method, template, row)
        for role in ROLES:
            allowed = method in READS or role != "auditor"
            if allowed:
                assert row[role] not in (401, 403), (method, template, role, row)
            else:
                assert row[role] == 403, (method, template, role, row)
    assert len(matrix) >= 10
