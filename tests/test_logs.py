"""No requester secret reaches a log line."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from dsrflow.cli import main
from dsrflow.db import make_engine
from dsrflow.logs import RedactSecrets, install, redact
from dsrflow.runtime import Runtime
from tests.conftest import make_request


def test_requester_links_are_redacted() -> None:
    line = '127.0.0.1:5 - "GET /status/st_AbC-123_x?lang=en HTTP/1.1" 200'
    assert redact(line) == '127.0.0.1:5 - "GET /status/[redacted]?lang=en HTTP/1.1" 200'
    assert redact("POST /status/st_abc/withdraw") == "POST /status/[redacted]/withdraw"
    assert redact("GET /verify/vt_secret HTTP/1.1") == "GET /verify/[redacted] HTTP/1.1"
    assert redact("GET /api/v1/requests/abc") == "GET /api/v1/requests/abc"


def test_filter_rewrites_access_log_arguments(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("dsrflow.tests.access")
    logger.addFilter(RedactSecrets())
    with caplog.at_level(logging.INFO, logger="dsrflow.tests.access"):
        # uvicorn's access log passes the path as an argument, not in the message.
        logger.info(
            '%s - "%s %s HTTP/%s" %d', "127.0.0.1", "GET", "/verify/vt_topsecret", "1.1", 200
        )
    assert "vt_topsecret" not in caplog.text
    assert "/verify/[redacted]" in caplog.text


def test_database_errors_carry_no_parameters(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/x.sqlite3")
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE people (email TEXT UNIQUE)")
        connection.execute(text("INSERT INTO people VALUES (:e)"), {"e": "taro@example.jp"})
    with pytest.raises(IntegrityError) as caught, engine.begin() as connection:
        connection.execute(text("INSERT INTO people VALUES (:e)"), {"e": "taro@example.jp"})
    assert "taro@example.jp" not in str(caught.value)


def test_install_redacts_records_of_every_logger(capsys: pytest.CaptureFixture[str]) -> None:
    # Regression: the filter sat on the "dsrflow" logger, which never sees its children's records.
    root = logging.getLogger()
    handler = logging.StreamHandler()
    root.addHandler(handler)
    try:
        install()
        logging.getLogger("dsrflow.api.somewhere").error("failed on %s", "/verify/vt_leak")
    finally:
        root.removeHandler(handler)
    err = capsys.readouterr().err
    assert "vt_leak" not in err
    assert "/verify/[redacted]" in err


@pytest.mark.usefixtures("cli_env")
def test_a_decision_writes_no_log_line_of_the_state_machine(
    rt: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    """`transitions` logs each state's exit and entry at INFO; under the CLI's logging (serve,
    scheduler) a decision logs nothing of its own."""
    machine_logger = logging.getLogger("transitions")
    try:
        assert main(["workflows", "check"]) == 0
        with caplog.at_level(logging.INFO):
            make_request(rt, "disclosure", "fulfilled")
            logging.getLogger("dsrflow.tests").info("still logged")
    finally:
        machine_logger.setLevel(logging.NOTSET)
    assert [r.name for r in caplog.records] == ["dsrflow.tests"]
