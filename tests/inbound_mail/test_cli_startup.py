"""What `dsrflow ingest-email` imports when the service takes the message: the standard library
and dsrflow's command line, the socket client and the DATA_DIR rule; not pydantic, SQLAlchemy
or anything else that takes longer to import than the message takes to record."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from dsrflow.inbound_mail.listener import IntakeListener
from dsrflow.runtime import Runtime
from tests.inbound_mail.conftest import CORPUS
from tests.inbound_mail.test_handoff import wait_for

LIBRARIES = ("pydantic", "pydantic_settings", "sqlalchemy", "sqlmodel", "yaml", "jinja2")


@pytest.fixture
def listening(rt: Runtime) -> Iterator[IntakeListener]:
    intake = IntakeListener(rt)
    intake.start()
    wait_for(intake.listening.is_set)
    yield intake
    intake.stop()


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize("dotenv", [False, True], ids=["environment", "dotenv"])
def test_a_message_handed_to_the_service_imports_no_library(
    backend: str, dotenv: bool, rt: Runtime, listening: IntakeListener, tmp_path: Path
) -> None:
    probe = (
        "import sys\n"
        "from dsrflow.cli import main\n"
        f"code = main(['ingest-email', {str(CORPUS / '14_en_erasure.eml')!r}])\n"
        f"libraries = {LIBRARIES!r}\n"
        "print(sorted(m for m in libraries if m in sys.modules), code)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("DSRFLOW_")}
    # The database is the service's: the command knows only where DATA_DIR is.
    data_dir = str(rt.settings.data_dir)
    if dotenv:
        (tmp_path / ".env").write_text(f"DSRFLOW_DATA_DIR={data_dir}\n", encoding="utf-8")
    else:
        env["DSRFLOW_DATA_DIR"] = data_dir
    out = subprocess.run(
        [sys.executable, "-c", probe], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert out.stdout.splitlines() == ["created DSR-2026-000001", "[] 0"], out.stderr[-2000:]
