"""Console fixtures: a signed-in TestClient, and the CSRF token of a page."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from dsrflow.app import create_app
from dsrflow.auth.service import add_handler
from dsrflow.runtime import Runtime

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def new_token(rt: Runtime, role: str = "handler", name: str = "佐藤 花子") -> str:
    with Session(rt.db) as s:
        _, token = add_handler(s, name, f"{role}-{len(name)}@example.jp", role)
    return token


def sign_in(client: TestClient, token: str) -> None:
    answer = client.post("/console/login", data={"token": token}, follow_redirects=False)
    assert answer.status_code == 303, answer.text


def csrf_of(page: str) -> str:
    match = CSRF.search(page)
    assert match, "no csrf_token on the page"
    return match.group(1)


@pytest.fixture
def desk(rt: Runtime) -> Iterator[TestClient]:
    """A client signed in as a handler."""
    with TestClient(create_app(rt)) as c:
        sign_in(c, new_token(rt))
        yield c
