"""Backup and restore (issue 12, section 6): a copy taken while the service writes is a
complete database; restored, it passes `audit verify` and the service starts on it."""

from __future__ import annotations

import shutil
import subprocess
import threading
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, func, select

from dsrflow.app import create_app
from dsrflow.audit.chain import verify_chains
from dsrflow.backup import BackupError, backup_sqlite
from dsrflow.cli import main
from dsrflow.config import Settings
from dsrflow.db import make_engine
from dsrflow.requests.models import Request
from dsrflow.runtime import Runtime
from tests.conftest import make_request
from tests.services.postgres import PostgresCluster


def requests_in(db: Engine) -> int:
    with Session(db) as s:
        return int(s.exec(select(func.count()).select_from(Request)).one())


def assert_restored_works(settings: Settings, url: str, expected: int) -> None:
    restored = make_engine(url)
    try:
        with Session(restored) as s:
            checked, breaks = verify_chains(s)
        assert breaks == []
        assert checked > 0
        assert requests_in(restored) >= expected
        rt = Runtime.load(settings, db=restored)
        with TestClient(create_app(rt)) as client:
            assert client.get("/healthz").status_code == 200
            created = client.post(
                "/api/v1/requests",
                json={"type": "disclosure", "name": "x", "email": "a@example.jp", "details": "d"},
            )
            assert created.status_code == 201
    finally:
        restored.dispose()


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_sqlite_backup_while_writing(
    rt: Runtime,
    settings: Settings,
    tmp_path: Path,
    cli_env: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for _ in range(3):
        make_request(rt, "disclosure", "identity_verified")
    stop = threading.Event()

    def keep_writing() -> None:
        while not stop.is_set():
            make_request(rt, "purpose_notice")

    writer = threading.Thread(target=keep_writing)
    writer.start()
    try:
        target = tmp_path / "copy" / "backup.sqlite3"
        assert main(["backup", str(target)]) == 0
    finally:
        stop.set()
        writer.join()
    assert "backed up" in capsys.readouterr().out
    assert not Path(f"{target}-wal").exists()
    assert main(["backup", str(target)]) == 2  # never overwrites
    assert_restored_works(settings, f"sqlite:///{target}", 3)


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_postgres_backup_is_pg_dump(
    rt: Runtime, settings: Settings, database_url: str, tmp_path: Path, pg_cluster: PostgresCluster
) -> None:
    with pytest.raises(BackupError, match="pg_dump"):
        backup_sqlite(rt.db, tmp_path / "x")
    for _ in range(3):
        make_request(rt, "disclosure", "fulfilled")
    bin_dir = pg_cluster.bin_dir
    if not (bin_dir / "pg_dump").exists() or (
        shutil.which("pg_restore") is None and not (bin_dir / "pg_restore").exists()
    ):
        pytest.skip("pg_dump/pg_restore not installed")
    dump = tmp_path / "dsrflow.dump"
    source = database_url.replace("postgresql+psycopg://", "postgresql://")
    subprocess.run(
        [str(bin_dir / "pg_dump"), "--format=custom", f"--file={dump}", source], check=True
    )
    target_url = pg_cluster.create_database(f"restored_{tmp_path.name[-12:].lower()}")
    target = target_url.replace("postgresql+psycopg://", "postgresql://")
    subprocess.run(
        [str(bin_dir / "pg_restore"), "--no-owner", f"--dbname={target}", str(dump)], check=True
    )
    assert_restored_works(settings, target_url, 3)
