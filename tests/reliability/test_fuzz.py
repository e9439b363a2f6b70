"""schemathesis over /openapi.json, without a token and with an admin token (issue 12, section 7):
no 5xx, and every answer (status, content type, body) is what the document says.
``DSRFLOW_FUZZ_EXAMPLES`` sets the examples per operation (small in `make test`, larger under
`make reliability`)."""

from __future__ import annotations

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from dsrflow.app import create_app
from dsrflow.runtime import Runtime
from tests.conftest import auth_header

pytestmark = pytest.mark.slow

EXAMPLES = int(os.environ.get("DSRFLOW_FUZZ_EXAMPLES", "4"))


@pytest.fixture
def backend() -> str:
    """SQLite only: the answers do not depend on the database (the races and the crash loop
    cover PostgreSQL)."""
    return "sqlite"


@pytest.fixture
def api_schema(rt: Runtime) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_asgi("/openapi.json", create_app(rt))


@pytest.fixture
def admin(rt: Runtime) -> dict[str, str]:
    return auth_header(rt, "admin")


schema = schemathesis.pytest.from_fixture("api_schema")


# What the issue asks: no 5xx, and every answer documented (status, content type, body).
CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_schema_conformance,
]
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))


@schema.parametrize()
@FUZZ
def test_anonymous_calls_answer_as_documented(case: schemathesis.Case) -> None:
    case.call_and_validate(checks=CHECKS)


@schema.parametrize()
@FUZZ
def test_admin_calls_answer_as_documented(case: schemathesis.Case, admin: dict[str, str]) -> None:
    case.call_and_validate(headers=admin, checks=CHECKS)
