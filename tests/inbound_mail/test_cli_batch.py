"""``dsrflow ingest-email FILE...`` and ``--maildir DIR``: many messages in one process; and a
start-up that imports only what intake needs."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from dsrflow.audit.chain import verify_chains
from dsrflow.cli import main
from dsrflow.db import make_engine
from dsrflow.inbound_mail import reading, service
from dsrflow.inbound_mail.models import InboundMessage
from dsrflow.inbound_mail.schemas import InboundMail
from dsrflow.outbound_mail.models import OutboxMessage
from dsrflow.requests.models import Request
from dsrflow.runtime import Runtime
from tests.inbound_mail.conftest import CORPUS, MANIFEST, corpus, count, counts

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


# --------------------------------------------------------------------------- batches


def new_request(i: int, message_id: str | None = None) -> bytes:
    """A new sender asking for disclosure: a request, with its letters."""
    return (
        f"From: person{i}@example.jp\r\nTo: info@innovativeai.co.jp\r\n"
        "Subject: =?utf-8?b?5YCL5Lq65oOF5aCx44Gu6ZaL56S6?=\r\n"
        f"Message-ID: <{message_id or f'batch{i}'}@example.jp>\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\n"
        "私の個人情報の開示を請求します。\r\n".encode()
    )


def maildir_of(tmp_path: Path, messages: list[bytes]) -> Path:
    maildir = tmp_path / "Maildir"
    for sub in ("new", "cur", "tmp"):
        (maildir / sub).mkdir(parents=True)
    for i, raw in enumerate(messages):
        (maildir / "new" / f"{i}.host").write_bytes(raw)
    return maildir


def names_in(maildir: Path, sub: str) -> list[str]:
    return sorted(p.name for p in (maildir / sub).iterdir())


def requests_made(rt: Runtime) -> list[str]:
    with Session(rt.db) as session:
        return sorted(session.exec(select(Request.requester_email)))


def fail_for(
    monkeypatch: pytest.MonkeyPatch,
    target: str,
    address: str,
    error: BaseException,
) -> None:
    """``service.<target>`` raises ``error`` for the mail from ``address``."""
    real = getattr(service, target)

    def failing(*args: Any, **kwargs: Any) -> Any:
        mail = next(a for a in args if isinstance(a, InboundMail))
        if mail.from_address == address:
            raise error
        return real(*args, **kwargs)

    monkeypatch.setattr(service, target, failing)


def test_a_batch_is_committed_once(
    rt: Runtime, cli_env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    maildir = maildir_of(tmp_path, [new_request(i) for i in range(5)])
    commits: list[object] = []

    def counted(connection: object) -> None:
        commits.append(connection)

    event.listen(Engine, "commit", counted)
    try:
        assert main(["ingest-email", "--maildir", str(maildir)]) == 0
    finally:
        event.remove(Engine, "commit", counted)
    assert len(commits) == 1, "one transaction, one sync, for the five messages"
    assert all("created DSR-" in line for line in capsys.readouterr().out.splitlines())
    assert len(requests_made(rt)) == 5
    assert names_in(maildir, "new") == []


def test_a_message_failing_mid_batch_is_quarantined_alone(
    rt: Runtime,
    cli_env: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # It fails after its request, audit events and letters were written: its savepoint undoes
    # them, and only them.
    fail_for(monkeypatch, "_message_event", "person1@example.jp", RuntimeError("boom"))
    maildir = maildir_of(tmp_path, [new_request(i) for i in range(3)])
    assert main(["ingest-email", "--maildir", str(maildir)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "created DSR-" in lines[0]
    assert re.search(
        r"1.host: quarantined #\d+ \(could not be processed \(RuntimeError\)\)$", lines[1]
    )
    assert "created DSR-" in lines[2]
    assert requests_made(rt) == ["person0@example.jp", "person2@example.jp"]
    assert sorted(inbox(rt)) == ["created", "created", "quarantined"]
    assert count(rt, OutboxMessage) == 2 * 3, "the letters of the two requests only"
    assert names_in(maildir, "new") == []
    with Session(rt.db) as session:
        assert verify_chains(session)[1] == []


def test_a_crash_before_the_commit_leaves_the_batch_in_new_and_a_rerun_records_it_once(
    rt: Runtime,
    cli_env: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    maildir = maildir_of(tmp_path, [new_request(i) for i in range(5)])
    monkeypatch.setattr(reading, "BATCH_SIZE", 2)
    # Killed while recording the fourth message: the first batch (0, 1) is committed, the
    # second (2, 3) is not, the fifth is not read.
    with pytest.MonkeyPatch.context() as crash:
        fail_for(crash, "_record", "person3@example.jp", KeyboardInterrupt())
        assert main(["ingest-email", "--maildir", str(maildir)]) == 130
    assert len(capsys.readouterr().out.splitlines()) == 2, "only what was committed is told"
    assert names_in(maildir, "cur") == ["0.host:2,S", "1.host:2,S"]
    assert names_in(maildir, "new") == ["2.host", "3.host", "4.host"]
    assert requests_made(rt) == ["person0@example.jp", "person1@example.jp"]
    assert len(inbox(rt)) == 2

    assert main(["ingest-email", "--maildir", str(maildir)]) == 0
    assert names_in(maildir, "new") == []
    assert len(names_in(maildir, "cur")) == 5
    assert requests_made(rt) == [f"person{i}@example.jp" for i in range(5)]
    assert main(["ingest-email", "--maildir", str(maildir)]) == 0  # nothing new
    assert len(inbox(rt)) == 5


def test_a_crash_after_the_commit_leaves_recorded_files_that_the_next_run_moves(
    rt: Runtime,
    cli_env: None,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    maildir = maildir_of(tmp_path, [new_request(i) for i in range(3)])

    def killed(self: Path, target: Path) -> None:
        raise KeyboardInterrupt

    with pytest.MonkeyPatch.context() as crash:
        crash.setattr(Path, "rename", killed)
        assert main(["ingest-email", "--maildir", str(maildir)]) == 130
    assert names_in(maildir, "new") == ["0.host", "1.host", "2.host"]
    capsys.readouterr()
    assert main(["ingest-email", "--maildir", str(maildir)]) == 0
    assert all("duplicate of #" in line for line in capsys.readouterr().out.splitlines())
    assert len(names_in(maildir, "cur")) == 3
    assert len(requests_made(rt)) == 3


def test_the_same_message_twice_in_one_batch_is_one_message(
    rt: Runtime, cli_env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    maildir = maildir_of(tmp_path, [new_request(0), new_request(1, message_id="batch0")])
    assert main(["ingest-email", "--maildir", str(maildir)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "created DSR-" in lines[0]
    assert lines[1].endswith("duplicate of #1 (created)")
    assert len(names_in(maildir, "cur")) == 2
    assert requests_made(rt) == ["person0@example.jp"]


def test_a_message_that_cannot_be_recorded_at_all_leaves_only_itself_in_new(
    rt: Runtime,
    cli_env: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Neither acted on nor quarantined: the batch fails, and is recorded again one message at
    # a time; the others are recorded, it stays for the next run (75).
    fail_for(monkeypatch, "_add_row", "person1@example.jp", RuntimeError("disk"))
    maildir = maildir_of(tmp_path, [new_request(i) for i in range(3)])
    assert main(["ingest-email", "--maildir", str(maildir)]) == 75
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 2
    assert "1.host: cannot record the message now" in err
    assert names_in(maildir, "new") == ["1.host"]
    assert requests_made(rt) == ["person0@example.jp", "person2@example.jp"]
    assert sorted(inbox(rt)) == ["created", "created"]


@pytest.mark.parametrize("backend", ["sqlite"])
def test_the_corpus_ends_the_same_in_a_batch_as_one_message_at_a_time(
    backend: str,
    rt: Runtime,
    sqlite_template: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Read as on the day after the corpus's mail arrived (as tests/inbound_mail/test_corpus.py).
    monkeypatch.setattr(reading, "utcnow", lambda: datetime(2026, 12, 1, 3, tzinfo=UTC))
    messages = [(name, corpus(name)) for name in sorted(MANIFEST)]
    alone = [reading.ingest_piped(rt, raw, name=name) for name, raw in messages]
    shutil.copyfile(sqlite_template, tmp_path / "batch.sqlite3")
    batch_rt = Runtime.load(
        rt.settings,
        db=make_engine(f"sqlite:///{tmp_path / 'batch.sqlite3'}"),
        definitions=rt.definitions,
    )
    together = [answer for _, answer in reading.ingest_batch(batch_rt, messages, size=7)]
    assert together == alone
    assert counts(batch_rt) == counts(rt)
    with Session(batch_rt.db) as session:
        assert verify_chains(session)[1] == []
