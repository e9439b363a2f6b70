"""Migrations: they build exactly the models' schema, and bring older databases up to date."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel, col, delete, select

import dsrflow.models  # noqa: F401
from dsrflow.cli import main
from dsrflow.db import alembic_config, make_engine, migrate, schema_revisions
from dsrflow.outbound_mail.models import OutboxMessage
from dsrflow.requests.models import Request
from dsrflow.runtime import Runtime
from tests.conftest import make_request
from tests.services.postgres import PostgresCluster

ROOT = Path(__file__).resolve().parent.parent


def test_migrations_match_the_models(db: Engine) -> None:
    with db.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), SQLModel.metadata)
    assert diff == []


def test_an_old_database_is_brought_up_to_date(backend: str, database_url: str, db: Engine) -> None:
    # Start from an empty database migrated only to the first revision.
    script = ScriptDirectory.from_config(alembic_config(db))
    head = script.get_current_head()
    fresh = make_engine(database_url)
    with fresh.begin() as connection:
        for table in reversed(SQLModel.metadata.sorted_tables):
            connection.exec_driver_sql(f"DROP TABLE IF EXISTS {table.name}")
        connection.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")
    command.upgrade(alembic_config(fresh), "0001")
    with fresh.connect() as connection:
        assert MigrationContext.configure(connection).get_current_revision() == "0001"
    migrate(fresh)  # what `dsrflow serve` does at start
    with fresh.connect() as connection:
        assert MigrationContext.configure(connection).get_current_revision() == head
    migrate(fresh)  # and again: a no-op
    fresh.dispose()


@pytest.fixture
def empty_database_url(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[str]:
    """A database with no tables at all, as on the first start of a new deployment."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.sqlite3'}"
        return
    cluster: PostgresCluster = request.getfixturevalue("pg_cluster")
    name = f"empty_{tmp_path.name[-20:].lower()}".replace("-", "_")
    yield cluster.create_database(name)
    cluster.drop_database(name)


def _tables(url: str) -> list[str]:
    engine = make_engine(url)
    try:
        return inspect(engine).get_table_names()
    finally:
        engine.dispose()


def _cli_env(url: str, tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "DSRFLOW_DATABASE_URL": url,
        "DSRFLOW_WORKFLOWS_DIR": str(ROOT / "workflows"),
        "DSRFLOW_DATA_DIR": str(tmp_path / "var"),
    }


def test_many_processes_upgrading_at_once_migrate_once(empty_database_url: str) -> None:
    # Each "process" has its own engine (its own connections), and all start at the same moment.
    engines = [make_engine(empty_database_url) for _ in range(4)]
    barrier = threading.Barrier(len(engines))

    def upgrade(engine: Engine) -> tuple[str | None, str | None]:
        barrier.wait()
        return migrate(engine)

    pool = ThreadPoolExecutor(len(engines))
    futures = [pool.submit(upgrade, engine) for engine in engines]
    _, pending = wait(futures, timeout=120)
    pool.shutdown(wait=not pending, cancel_futures=True)
    assert not pending, "migrations that wait on each other for ever"
    results = [future.result() for future in futures]
    current, head = schema_revisions(engines[0])
    for engine in engines:
        engine.dispose()
    assert current == head
    assert sorted(results, key=str) == sorted([(None, head)] + [(head, head)] * 3, key=str)


def test_db_upgrade_is_a_command(empty_database_url: str, tmp_path: Path) -> None:
    command = [sys.executable, "-m", "dsrflow.cli", "db", "upgrade"]
    env = _cli_env(empty_database_url, tmp_path)
    first = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    assert "upgraded from schema none (empty)" in first.stdout
    again = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert "already at schema" in again.stdout


@pytest.mark.parametrize(
    ("argv", "exit_code"),
    [
        (["audit", "verify"], 2),
        (["sweep", "--dry-run"], 2),
        (["handlers", "list"], 2),
        (
            [
                "ingest-email",
                str(ROOT / "tests/inbound_mail/corpus/01_ja_disclosure_iso2022jp.eml"),
            ],
            75,
        ),
    ],
)
def test_only_serve_scheduler_and_db_upgrade_migrate(
    argv: list[str],
    exit_code: int,
    empty_database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for key, value in _cli_env(empty_database_url, tmp_path).items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    assert main(argv) == exit_code
    err = capsys.readouterr().err
    assert "run `dsrflow db upgrade` first" in err
    assert "Traceback" not in err
    assert _tables(empty_database_url) == []  # nothing was created behind the operator's back


def test_db_current_says_whether_the_schema_is_current(
    empty_database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for key, value in _cli_env(empty_database_url, tmp_path).items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    assert main(["db", "current"]) == 1
    assert "none (empty)" in capsys.readouterr().out
    assert main(["db", "upgrade"]) == 0
    assert "upgraded from schema none (empty)" in capsys.readouterr().out
    assert main(["db", "current"]) == 0
    assert "current" in capsys.readouterr().out
    assert main(["db", "upgrade"]) == 0
    assert "already at schema" in capsys.readouterr().out


def test_the_head_read_from_the_files_is_alembics() -> None:
    from alembic.script import ScriptDirectory

    from dsrflow.db import head_revision

    engine = make_engine("sqlite://")
    assert head_revision() == ScriptDirectory.from_config(alembic_config(engine)).get_current_head()


def test_the_acknowledgments_message_id_comes_over_from_the_outbox(rt: Runtime, db: Engine) -> None:
    """0014 copies each request's acknowledgment Message-ID from the outbox onto the request,
    which later letters thread under."""
    request = make_request(rt, "disclosure")
    gone = make_request(rt, "correction")
    with db.begin() as connection:
        connection.execute(
            delete(OutboxMessage).where(col(OutboxMessage.dedup_key) == f"{gone.id}:acknowledgment")
        )
    command.downgrade(alembic_config(db), "0013")
    command.upgrade(alembic_config(db), "head")
    with Session(db) as session:
        ack = session.exec(
            select(OutboxMessage.message_id).where(
                col(OutboxMessage.dedup_key) == f"{request.id}:acknowledgment"
            )
        ).one()
        assert session.get_one(Request, request.id).acknowledgment_message_id == ack
        assert session.get_one(Request, gone.id).acknowledgment_message_id is None
