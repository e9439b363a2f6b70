"""Shared fixtures: a fresh database per test on SQLite and on PostgreSQL, the runtime, the app.

Every test that uses ``db`` (or anything built on it) runs twice, once per backend. PostgreSQL
runs in a throwaway cluster started once per session; each test gets its own database cloned
from a migrated template, and each SQLite test its own copy of a migrated file.
"""

from __future__ import annotations

import contextlib
import itertools
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy.engine import Engine
from sqlmodel import Session

from dsrflow.app import create_app
from dsrflow.auth.service import add_handler
from dsrflow.config import Settings
from dsrflow.db import make_engine, migrate
from dsrflow.requests import service
from dsrflow.requests.models import Request
from dsrflow.requests.schemas import PaymentIn, RequestCreate, TransitionIn
from dsrflow.runtime import Runtime
from dsrflow.workflow.definitions import Definitions, load_definitions
from dsrflow.workflow.engine import GUARDS
from tests.services import require
from tests.services.postgres import PostgresCluster

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / "workflows"
BACKENDS = ("sqlite", pytest.param("postgres", marks=pytest.mark.postgres))
_counter = itertools.count()


# A test that uses one of these fixtures needs that server: it gets the marker, so that
# `-m "not postgres and not browser"` (make test-fast) selects what it says.
SERVER_FIXTURES = {
    "pg_cluster": "postgres",
    "smtp": "smtp",
    "mail_rt": "smtp",
    "imap": "imap",
    "imap_rt": "imap",
    "browser": "browser",
    "live_url": "browser",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for name in {
            SERVER_FIXTURES[f] for f in getattr(item, "fixturenames", ()) if f in SERVER_FIXTURES
        }:
            item.add_marker(name)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PostgresCluster]:
    with require(PostgresCluster) as cluster:
        template_url = cluster.create_database("dsrflow_template")
        engine = make_engine(template_url)
        migrate(engine)
        engine.dispose()
        yield cluster


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "template.sqlite3"
    engine = make_engine(f"sqlite:///{path}")
    migrate(engine)
    engine.dispose()
    # Fold the WAL back into the file so that a plain copy is a complete database.
    with contextlib.closing(sqlite3.connect(path)) as connection:
        connection.execute("PRAGMA journal_mode=DELETE")
    return path


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, migrated, empty database for this test."""
    if backend == "sqlite":
        path = tmp_path / "dsrflow.sqlite3"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite:///{path}"
        return
    cluster: PostgresCluster = request.getfixturevalue("pg_cluster")
    name = f"t{next(_counter)}_{tmp_path.name[-20:].lower()}".replace("-", "_")
    url = cluster.create_database(name, template="dsrflow_template")
    yield url
    cluster.drop_database(name)


@pytest.fixture
def db(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=tmp_path / "var",
        workflows_dir=WORKFLOWS,
        base_url="http://testserver",
        rate_limit_per_minute=1000,
    )


@pytest.fixture(scope="session")
def definitions() -> Definitions:
    """workflows/ parsed once per test session (a test that edits it loads its own copy)."""
    return load_definitions(WORKFLOWS, guards=GUARDS)


@pytest.fixture
def rt(settings: Settings, db: Engine, definitions: Definitions) -> Runtime:
    return Runtime.load(settings, db=db, definitions=definitions)


@pytest.fixture
def session(rt: Runtime) -> Iterator[Session]:
    with Session(rt.db, expire_on_commit=False) as s:
        yield s


@pytest.fixture
def client(rt: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(rt)) as c:
        yield c


@pytest.fixture
def cli_env(
    rt: Runtime, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The environment for calling `dsrflow.cli.main` against this test's database."""
    monkeypatch.chdir(tmp_path)  # no stray .env
    monkeypatch.setenv("DSRFLOW_DATABASE_URL", database_url)
    monkeypatch.setenv("DSRFLOW_WORKFLOWS_DIR", str(rt.settings.workflows_dir))
    monkeypatch.setenv("DSRFLOW_DATA_DIR", str(rt.settings.data_dir))


@pytest.fixture
def auth(rt: Runtime) -> dict[str, str]:
    """Authorization header of a fresh handler (role ``handler``)."""
    return auth_header(rt, "handler")


def auth_header(rt: Runtime, role: str) -> dict[str, str]:
    with Session(rt.db) as s:
        _, token = add_handler(s, f"{role} test", f"{role}@example.jp", role)
    return {"Authorization": f"Bearer {token}"}


def request_body(request_type: str = "disclosure", **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": request_type,
        "name": "山田 太郎",
        "email": "taro@example.jp",
        "details": "会員情報の開示を求めます。",
    }
    body.update(overrides)
    return body


def make_request(
    rt: Runtime, request_type: str = "disclosure", state: str = "received", **overrides: Any
) -> Request:
    """A request of ``request_type`` brought to ``state`` through the service (never by hand)."""
    with Session(rt.db, expire_on_commit=False) as s:
        received_at = overrides.pop("received_at", None)
        request = service.submit(
            rt,
            s,
            RequestCreate(**request_body(request_type, **overrides)),
            channel="api",
            received_at=received_at,
        ).request
        for trigger, fields in PATHS[state]:
            if trigger == "fulfill" and rt.definitions.workflow(request_type).fee:
                payment = PaymentIn(amount_jpy=10_000, method="bank_transfer")
                service.record_payment(rt, s, request.id, payment, actor="test")
            agent = request.agent_name is not None
            fields = path_fields(rt, request_type, trigger, fields, agent=agent)
            body = TransitionIn(trigger=trigger, **fields)
            request = service.transition(rt, s, request.id, body, actor="test")
        return request


VERIFY = {"method": "id_document_copy", "evidence": "運転免許証の写し（氏名・住所一致）"}
PATHS: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "received": [],
    "identity_verified": [("verify_identity", VERIFY)],
    "awaiting_requester": [("request_info", {"message": "対象のサービス名を教えてください。"})],
    "fulfilled": [("verify_identity", VERIFY), ("fulfill", {"summary": "対応しました。"})],
    "refused": [
        ("refuse", {"reason_code": "PROC_ID_UNVERIFIED", "explanation": "確認できません。"})
    ],
    "not_held": [("verify_identity", VERIFY), ("report_not_held", {"explanation": "該当なし。"})],
    "substituted": [
        ("verify_identity", VERIFY),
        ("substitute", {"measure": "利用を制限しました。", "explanation": "消去は困難です。"}),
    ],
    "withdrawn": [("withdraw", {"note": "本人から電話で取下げの申出"})],
}


def path_fields(
    rt: Runtime, request_type: str, trigger: str, fields: dict[str, Any], *, agent: bool = False
) -> dict[str, Any]:
    """``fields`` plus what the workflow needs besides (a disclosure type's method_used, an
    agent's authority)."""
    wf = rt.definitions.workflow(request_type)
    if trigger == "fulfill" and wf.disclosure_methods and "method_used" not in fields:
        return {**fields, "method_used": wf.disclosure_methods[0]}
    if trigger == "verify_identity" and agent:
        return {**fields, "authority_document": "family_register", "agent_method": "in_person"}
    return fields


def with_secrets(update: dict[str, Any]) -> dict[str, Any]:
    """A settings update with passwords wrapped as Settings would read them (model_copy does
    not validate)."""
    return {
        key: SecretStr(value) if key.endswith("_password") and isinstance(value, str) else value
        for key, value in update.items()
    }
