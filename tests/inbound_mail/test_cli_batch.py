"""``dsrflow ingest-email FILE...`` and ``--maildir DIR``: many messages in one process; and a
start-up that imports only what intake needs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sqlmodel import Session, select

from dsrflow.cli import main
from dsrflow.inbound_mail.models import InboundMessage
from dsrflow.runtime import Runtime
from tests.inbound_mail.conftest import CORPUS

REQUESTS = ("01_ja_disclosure_iso2022jp.eml", "13_en_subject_access_request.eml")
TRIAGE = "34_ja_general_question_triage.eml"


def inbox(rt: Runtime) -> list[str]:
    with Session(rt.db) as session:
        return list(session.exec(select(InboundMessage.status)))


def test_several_files_in_one_process(
    rt: Runtime, cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    files = [str(CORPUS / name) for name in (*REQUESTS, TRIAGE)]
    assert main(["ingest-email", *files]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(": ", 1)[0] for line in lines] == files
    assert "created DSR-" in lines[0]
    assert "created DSR-" in lines[1]
    assert "triage #" in lines[2]
    assert len(inbox(rt)) == 3


def test_a_maildir_is_read_and_each_message_moved_to_cur(
    rt: Runtime, cli_env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    maildir = tmp_path / "Maildir"
    for sub in ("new", "cur", "tmp"):
        (maildir / sub).mkdir(parents=True)
    for i, name in enumerate((*REQUESTS, TRIAGE)):
        shutil.copyfile(CORPUS / name, maildir / "new" / f"{i}.host")
    assert main(["ingest-email", "--maildir", str(maildir)]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3
    assert list((maildir / "new").iterdir()) == []
    assert sorted(p.name for p in (maildir / "cur").iterdir()) == [
        "0.host:2,S",
        "1.host:2,S",
        "2.host:2,S",
    ]
    # A second run finds nothing new and records nothing twice.
    assert main(["ingest-email", "--maildir", str(maildir)]) == 0
    assert len(inbox(rt)) == 3


def test_a_message_recorded_but_not_moved_is_moved_by_the_next_run_and_not_recorded_again(
    rt: Runtime, cli_env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # As after a crash between the commit and the move to cur/.
    maildir = tmp_path / "Maildir"
    for sub in ("new", "cur", "tmp"):
        (maildir / sub).mkdir(parents=True)
    shutil.copyfile(CORPUS / REQUESTS[0], maildir / "new" / "0.host")
    assert main(["ingest-email", str(maildir / "new" / "0.host")]) == 0
    assert main(["ingest-email", "--maildir", str(maildir)]) == 0
    assert "duplicate of #" in capsys.readouterr().out.splitlines()[-1]
    assert [p.name for p in (maildir / "cur").iterdir()] == ["0.host:2,S"]
    assert inbox(rt) == ["created"]


def test_a_message_that_cannot_be_recorded_stays_in_new(
    cli_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    maildir = tmp_path / "Maildir"
    for sub in ("new", "cur", "tmp"):
        (maildir / sub).mkdir(parents=True)
    shutil.copyfile(CORPUS / REQUESTS[0], maildir / "new" / "0.host")
    monkeypatch.setenv("DSRFLOW_DATABASE_URL", "postgresql+psycopg://nobody@127.0.0.1:1/none")
    assert main(["ingest-email", "--maildir", str(maildir)]) == 75
    assert [p.name for p in (maildir / "new").iterdir()] == ["0.host"]


def test_not_a_maildir_is_a_clear_error(
    cli_env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["ingest-email", "--maildir", str(tmp_path / "nowhere")]) == 2
    assert "is not a Maildir" in capsys.readouterr().err


# Never on the path of one piped message. jinja2 is: the acknowledgment of a request made by
# mail is rendered in the transaction that records the message.
HEAVY = (
    "alembic",
    "fastapi",
    "starlette",
    "uvicorn",
    "apscheduler",
    "aiosmtplib",
    "aioimaplib",
    "httpx",
    "html2text",  # only for a message with no plain text part
    "mailbox",
    "dsrflow.app",
    "dsrflow.api",
    "dsrflow.pages",
    "dsrflow.scheduler",
    "dsrflow.inbound_mail.imap",
)


def test_the_command_line_module_imports_no_library_before_a_command_runs() -> None:
    # `dsrflow --help`, and every command before it starts, load argparse and little else: each
    # command imports what it needs, so none pays for another's libraries.
    probe = (
        "import sys\n"
        "import dsrflow.cli\n"
        "libraries = ('sqlalchemy', 'sqlmodel', 'pydantic', 'yaml')\n"
        "print(sorted(m for m in libraries if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert out.stdout.strip() == "[]", out.stderr[-2000:]


@pytest.mark.parametrize("backend", ["sqlite"])
def test_intake_imports_no_migration_web_or_delivery_code(
    backend: str, rt: Runtime, database_url: str, tmp_path: Path
) -> None:
    # What an MTA's pipe pays on every message: the intake path, not Alembic, FastAPI, the
    # scheduler or the SMTP/Maildir senders.
    probe = (
        "import sys\n"
        "from dsrflow.cli import main\n"
        f"code = main(['ingest-email', {str(CORPUS / REQUESTS[0])!r}])\n"
        f"heavy = {HEAVY!r}\n"
        "print(sorted(m for m in heavy if m in sys.modules), code)\n"
    )
    env = {
        **os.environ,
        "DSRFLOW_DATABASE_URL": database_url,
        "DSRFLOW_WORKFLOWS_DIR": str(rt.settings.workflows_dir),
        "DSRFLOW_DATA_DIR": str(tmp_path),
    }
    out = subprocess.run(
        [sys.executable, "-c", probe], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert out.stdout.strip().splitlines()[-1] == "[] 0", out.stderr[-2000:]
