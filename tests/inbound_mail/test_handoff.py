"""The intake socket: ``dsrflow ingest-email`` hands one message to the running service, falls
back to recording it itself when nobody listens, and never records a message twice."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlmodel import Session, select

from dsrflow import cli
from dsrflow.cli import main
from dsrflow.inbound_mail.handoff import MAGIC, REQUEST_HEADER, hand_off, read_exactly
from dsrflow.inbound_mail.listener import IntakeListener
from dsrflow.inbound_mail.models import InboundMessage
from dsrflow.inbound_mail.reading import ingest_piped
from dsrflow.requests.models import Request
from dsrflow.runtime import Runtime
from tests.inbound_mail.conftest import CORPUS, corpus, count, counts

REQUEST = "13_en_subject_access_request.eml"


def wait_for(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def socket_of(rt: Runtime) -> Path:
    return rt.settings.intake_socket_path


@pytest.fixture
def listener(rt: Runtime) -> Iterator[IntakeListener]:
    intake = IntakeListener(rt, retry_seconds=0.1)
    intake.start()
    wait_for(intake.listening.is_set)
    yield intake
    intake.stop()


@pytest.fixture
def no_in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """The command may not record the message itself: only the service can."""

    def refuse(**_: object) -> None:
        raise AssertionError("recorded in-process")

    monkeypatch.setattr(cli, "_runtime", refuse)


def test_the_service_records_the_message_and_the_command_prints_its_answer(
    rt: Runtime,
    cli_env: None,
    listener: IntakeListener,
    no_in_process: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["ingest-email", str(CORPUS / REQUEST)]) == 0
    assert capsys.readouterr().out == "created DSR-2026-000001\n"
    assert main(["ingest-email", str(CORPUS / REQUEST)]) == 0
    assert capsys.readouterr().out == "duplicate of #1 (created)\n"
    assert counts(rt)[:2] == (1, 1)
    assert socket_of(rt).stat().st_mode & 0o777 == 0o600
    assert socket_of(rt).parent.stat().st_mode & 0o777 == 0o700


def test_without_a_service_the_command_records_the_message_itself(
    rt: Runtime, cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert not socket_of(rt).exists()
    assert main(["ingest-email", str(CORPUS / REQUEST)]) == 0
    assert capsys.readouterr().out == "created DSR-2026-000001\n"


def test_a_stale_socket_is_passed_by_and_then_replaced_by_the_next_service(
    rt: Runtime, cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    # What a killed process leaves: the file, with nobody listening (connections are refused).
    socket_of(rt).parent.mkdir(parents=True)
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(socket_of(rt)))
    dead.close()
    assert main(["ingest-email", str(CORPUS / REQUEST)]) == 0
    assert capsys.readouterr().out == "created DSR-2026-000001\n"

    intake = IntakeListener(rt)
    intake.start()
    try:
        wait_for(intake.listening.is_set)
        answer = hand_off(socket_of(rt), corpus("14_en_erasure.eml"))
        assert answer is not None
        assert answer.out == "created DSR-2026-000002"
    finally:
        intake.stop()
    assert not socket_of(rt).exists()


def test_a_second_listener_does_not_take_the_socket_and_takes_over_when_the_first_stops(
    rt: Runtime, listener: IntakeListener
) -> None:
    first_inode = socket_of(rt).stat().st_ino
    second = IntakeListener(rt, retry_seconds=0.1)
    second.start()
    try:
        time.sleep(0.5)
        assert not second.listening.is_set()
        assert socket_of(rt).stat().st_ino == first_inode
        answer = hand_off(socket_of(rt), corpus(REQUEST))
        assert answer is not None
        assert answer.out == "created DSR-2026-000001"

        listener.stop()
        wait_for(second.listening.is_set)
        answer = hand_off(socket_of(rt), corpus("14_en_erasure.eml"))
        assert answer is not None
        assert answer.out == "created DSR-2026-000002"
    finally:
        second.stop()


def test_a_message_over_the_size_limit_is_answered_as_in_process(
    rt: Runtime,
    cli_env: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    workflows = tmp_path / "workflows"
    shutil.copytree(rt.settings.workflows_dir, workflows)
    rules = workflows / "intake" / "mail.yaml"
    text = rules.read_text(encoding="utf-8")
    rules.write_text(
        re.sub(r"max_message_bytes: \d+", "max_message_bytes: 1000", text), encoding="utf-8"
    )
    monkeypatch.setenv("DSRFLOW_WORKFLOWS_DIR", str(workflows))
    small = Runtime.load(
        rt.settings.model_copy(update={"workflows_dir": workflows}),
        db=rt.db,
        definitions=rt.definitions,
    )
    raw = corpus("08_ja_disclosure_with_attachments.eml")
    big = tmp_path / "big.eml"
    big.write_bytes(raw)
    other = tmp_path / "other.eml"
    # Another message of the same size (one character of its Message-ID differs).
    other.write_bytes(re.sub(rb"(?i)(message-id: *<).", rb"\g<1>~", raw, count=1))
    assert len(other.read_bytes()) == len(raw)
    assert other.read_bytes() != raw

    # In-process first, then through the socket: the same line, status and record.
    assert main(["ingest-email", str(big)]) == 65
    in_process = capsys.readouterr()
    intake = IntakeListener(small)
    intake.start()
    try:
        wait_for(intake.listening.is_set)
        monkeypatch.setattr(cli, "_runtime", None)  # only the service may record it now
        assert main(["ingest-email", str(other)]) == 65
    finally:
        intake.stop()
    via_socket = capsys.readouterr()
    assert in_process.out.replace("#1", "#2") == via_socket.out
    assert via_socket.out.startswith("quarantined #2 (message is")
    assert in_process.err.replace("#1", "#2") == via_socket.err
    assert "over the limit of 1000" in via_socket.err
    with Session(rt.db) as session:
        rows = list(session.exec(select(InboundMessage).order_by(InboundMessage.id)))
    assert [(r.status, r.raw_size) for r in rows] == [("quarantined", len(raw))] * 2
    assert len(rows[1].raw) == len(rows[0].raw) < len(raw)


def fake_service(path: Path, rt: Runtime, *, answer: bool) -> threading.Thread:
    """A service that takes one message whole and records it, then dies before it answers
    (``answer=False``), or never answers at all (waits until the client gives up)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)

    def serve() -> None:
        with server:
            connection, _ = server.accept()
            with connection:
                _, size = REQUEST_HEADER.unpack(read_exactly(connection, REQUEST_HEADER.size))
                ingest_piped(rt, read_exactly(connection, size))
                if answer:
                    connection.recv(1)  # until the client closes

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("message_id", [True, False], ids=["message-id", "no-message-id"])
def test_no_answer_is_a_temporary_failure_and_the_retry_records_nothing_twice(
    message_id: bool,
    rt: Runtime,
    cli_env: None,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The service may have committed the message before it died: the command cannot know, so
    # the mail server must keep the message (75) and deliver it again. The retry finds it by
    # its Message-ID (without one: by the hash of its bytes) and creates nothing.
    raw = corpus(REQUEST)
    if not message_id:
        raw = re.sub(rb"(?im)^message-id:.*\r?\n", b"", raw)
        assert b"message-id" not in raw.lower()
    path = tmp_path / "message.eml"
    path.write_bytes(raw)
    fake = fake_service(socket_of(rt), rt, answer=False)
    assert main(["ingest-email", str(path)]) == 75
    err = capsys.readouterr().err
    assert "gave no answer" in err
    assert "tries again" in err
    fake.join(10)
    assert counts(rt)[:2] == (1, 1)

    # The retry: the dead service's socket refuses, the command records in-process.
    assert main(["ingest-email", str(path)]) == 0
    assert capsys.readouterr().out == "duplicate of #1 (created)\n"
    assert counts(rt)[:2] == (1, 1)
    with Session(rt.db) as session:
        assert session.exec(select(Request.reference)).all() == ["DSR-2026-000001"]


def test_a_service_that_does_not_answer_in_time_is_a_temporary_failure(
    rt: Runtime, tmp_path: Path
) -> None:
    fake = fake_service(socket_of(rt), rt, answer=True)
    answer = hand_off(socket_of(rt), corpus(REQUEST), answer_seconds=0.5)
    assert answer is not None
    assert answer.exit_code == 75
    assert "timed out" in answer.err
    fake.join(10)


def test_a_message_that_does_not_arrive_whole_is_not_recorded(
    rt: Runtime, listener: IntakeListener
) -> None:
    raw = corpus(REQUEST)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.connect(str(socket_of(rt)))
        client.sendall(REQUEST_HEADER.pack(MAGIC, len(raw)) + raw[: len(raw) // 2])
    time.sleep(0.3)
    assert count(rt, InboundMessage) == 0
    answer = hand_off(socket_of(rt), raw)  # the listener still serves
    assert answer is not None
    assert answer.out == "created DSR-2026-000001"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("process", ["scheduler", "serve"])
@pytest.mark.parametrize("backend", ["sqlite"])
def test_dsrflow_scheduler_listens_and_removes_its_socket_at_exit(
    backend: str, process: str, rt: Runtime, database_url: str, tmp_path: Path
) -> None:
    """Both long-running processes listen (``serve`` through the scheduler it runs). The
    command's own database URL leads nowhere: only the service can have recorded the message."""
    env = {
        **os.environ,
        "DSRFLOW_DATABASE_URL": database_url,
        "DSRFLOW_WORKFLOWS_DIR": str(rt.settings.workflows_dir),
        "DSRFLOW_DATA_DIR": str(rt.settings.data_dir),
    }
    command = [sys.executable, "-m", "dsrflow.cli"]
    argv = ["serve", "--port", str(free_port())] if process == "serve" else ["scheduler"]
    scheduler = subprocess.Popen(
        [*command, *argv],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for(socket_of(rt).exists, 60)
        out = subprocess.run(
            [*command, "ingest-email", str(CORPUS / REQUEST)],
            env={**env, "DSRFLOW_DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/none"},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert (out.returncode, out.stdout) == (0, "created DSR-2026-000001\n"), out.stderr
    finally:
        scheduler.send_signal(signal.SIGTERM)
        _, err = scheduler.communicate(timeout=60)
    # uvicorn, once shut down cleanly, dies of the signal it caught (systemd counts it clean).
    clean = (0, -signal.SIGTERM) if process == "serve" else (0,)
    assert scheduler.returncode in clean, err[-2000:]
    assert not socket_of(rt).exists()
    assert b"emily" not in err.lower()  # the sender's address is not in the log


def test_a_data_dir_where_nothing_can_listen_leaves_the_command_recording_itself(
    rt: Runtime,
    cli_env: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A path longer than a Unix socket's (about 107 bytes): the listener says so and stops;
    # the scheduler beside it and the command go on.
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    far = Runtime.load(
        rt.settings.model_copy(update={"data_dir": deep}), db=rt.db, definitions=rt.definitions
    )
    intake = IntakeListener(far)
    intake.start()
    wait_for(lambda: intake._thread is not None and not intake._thread.is_alive())
    intake.stop()
    assert not intake.listening.is_set()
    assert "cannot listen" in caplog.text
    monkeypatch.setenv("DSRFLOW_DATA_DIR", str(deep))
    assert main(["ingest-email", str(CORPUS / REQUEST)]) == 0
    assert capsys.readouterr().out == "created DSR-2026-000001\n"
