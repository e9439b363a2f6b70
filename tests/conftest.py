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
from dsrflow.requests.schemas import RequestCreate, TransitionIn
from dsrflow.runtime import Runtime
from tests.services import require
from tests.services.postgres import PostgresCluster

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / "workflows"
BACKENDS = ("sqlite", "postgres")
_counter = itertools.count()


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


@pytest.fixture
def rt(settings: Settings, db: Engine) -> Runtime:
    return Runtime.load(settings, db=db)


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
            request = service.transition(
                rt, s, request.id, TransitionIn(trigger=trigger, **fields), actor="test"
            )
        return request


PATHS: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "received": [],
    "identity_verified": [("verify_identity", {"method": "id_document_copy"})],
    "awaiting_requester": [("request_info", {"message": "対象のサービス名を教えてください。"})],
    "fulfilled": [
        ("verify_identity", {"method": "id_document_copy"}),
        ("fulfill", {"summary": "対応しました。"}),
    ],
    "refused": [
        ("refuse", {"reason_code": "PROC_ID_UNVERIFIED", "explanation": "確認できません。"})
    ],
    "withdrawn": [("withdraw", {})],
}


def with_secrets(update: dict[str, Any]) -> dict[str, Any]:
    """A settings update with passwords wrapped as Settings would read them (model_copy does
    not validate)."""
    return {
        key: SecretStr(value) if key.endswith("_password") and isinstance(value, str) else value
        for key, value in update.items()
    }
