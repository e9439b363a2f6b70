"""``dsrflow ingest-email FILE|-``: for a pipe from an MTA."""

from __future__ import annotations

import io
import re
import shutil
import sys
from pathlib import Path

import pytest
from sqlmodel import Session

from dsrflow.cli import main
from dsrflow.inbound_mail.models import InboundMessage
from dsrflow.runtime import Runtime
from tests.inbound_mail.conftest import CORPUS, Seeded, corpus


def stdin(monkeypatch: pytest.MonkeyPatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))


@pytest.mark.parametrize(
    ("name", "printed"),
    [
        ("13_en_subject_access_request.eml", "created DSR-2026-000003"),
        ("20_ja_reply_by_subject_reference.eml", "joined DSR-2026-000001"),
        ("34_ja_general_question_triage.eml", "triage #1 (no request type recognised)"),
        ("40_not_an_email_quarantined.eml", "quarantined #1 (not an e-mail message"),
        ("28_en_bounce_dsn.eml", "ignored #1 (bounce (delivery status report))"),
    ],
)
def test_prints_what_became_of_the_message(
    name: str,
    printed: str,
    seeded: Seeded,
    cli_env: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["ingest-email", str(CORPUS / name)]) == 0
    assert capsys.readouterr().out.startswith(printed)
    assert main(["ingest-email", str(CORPUS / name)]) == 0
    assert capsys.readouterr().out.startswith("duplicate of #1")


def test_reads_standard_input(
    cli_env: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stdin(monkeypatch, corpus("06_ja_third_party_record_cp50220.eml"))
    assert main(["ingest-email", "-"]) == 0
    assert capsys.readouterr().out == "created DSR-2026-000001\n"
    stdin(monkeypatch, corpus("14_en_erasure.eml"))
    assert main(["ingest-email"]) == 0
    assert capsys.readouterr().out == "created DSR-2026-000002\n"


def test_unreadable_input_is_the_only_failure(
    cli_env: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["ingest-email", str(tmp_path / "missing.eml")]) == 2
    assert "cannot read" in capsys.readouterr().err
    stdin(monkeypatch, b"")
    assert main(["ingest-email", "-"]) == 2
    assert "empty" in capsys.readouterr().err
    stdin(monkeypatch, b"\x00\xff garbage")
    assert main(["ingest-email", "-"]) == 0  # not mail, but kept for a handler
    assert capsys.readouterr().out.startswith("quarantined")


def test_a_message_over_the_size_limit_is_refused_with_its_header_kept(
    rt: Runtime,
    cli_env: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Exit 65 (EX_DATAERR): the MTA returns the message to its sender, body and all, instead
    of a success that keeps only the header."""
    workflows = tmp_path / "workflows"
    shutil.copytree(rt.settings.workflows_dir, workflows)
    rules = workflows / "intake" / "mail.yaml"
    text = rules.read_text(encoding="utf-8")
    rules.write_text(
        re.sub(r"max_message_bytes: \d+", "max_message_bytes: 1000", text), encoding="utf-8"
    )
    monkeypatch.setenv("DSRFLOW_WORKFLOWS_DIR", str(workflows))
    raw = corpus("08_ja_disclosure_with_attachments.eml")
    assert len(raw) > 1000
    path = tmp_path / "big.eml"
    path.write_bytes(raw)
    assert main(["ingest-email", str(path)]) == 65
    captured = capsys.readouterr()
    assert captured.out.startswith("quarantined #1 (message is")
    assert "over the limit of 1000" in captured.err
    assert "returns it to the sender" in captured.err
    with Session(rt.db) as session:
        row = session.get(InboundMessage, 1)
        assert row is not None
        assert row.status == "quarantined"
        assert len(row.raw) < len(raw)
    assert main(["ingest-email", str(CORPUS / "14_en_erasure.eml")]) == 0


def test_a_database_it_cannot_reach_is_a_temporary_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit 75 (EX_TEMPFAIL): the MTA keeps the message and tries again; nothing is lost."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(
        "DSRFLOW_DATABASE_URL", "postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2"
    )
    monkeypatch.setenv("DSRFLOW_WORKFLOWS_DIR", str(Path(__file__).parents[2] / "workflows"))
    assert main(["ingest-email", str(CORPUS / "14_en_erasure.eml")]) == 75
    assert "cannot record the message now" in capsys.readouterr().err


def test_broken_configuration_is_a_temporary_failure(
    cli_env: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DSRFLOW_WORKFLOWS_DIR", str(tmp_path / "nowhere"))
    assert main(["ingest-email", str(CORPUS / "14_en_erasure.eml")]) == 75
    assert "cannot record the message now" in capsys.readouterr().err
