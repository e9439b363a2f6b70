"""The command line: handler tokens, and errors without tracebacks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dsrflow.cli import main
from dsrflow.runtime import Runtime


def test_handlers_add_list_revoke(
    rt: Runtime, cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    # Regression: `handlers add` used to crash printing the handler after its session closed.
    assert main(["handlers", "add", "Privacy desk", "--email", "info@example.jp"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("handler 1 (handler) created")
    token = out[-1]
    assert token.startswith("dsr_")
    assert len(token) > 40
    assert main(["handlers", "add", "Audit", "--email", "a@example.jp", "--role", "auditor"]) == 0
    capsys.readouterr()
    assert main(["handlers", "list"]) == 0
    listing = capsys.readouterr().out
    assert "1\thandler\tactive\tPrivacy desk <info@example.jp>" in listing
    assert token not in listing
    assert main(["handlers", "revoke", "1"]) == 0
    assert main(["handlers", "list"]) == 0
    assert "1\thandler\trevoked" in capsys.readouterr().out
    assert main(["handlers", "revoke", "99"]) == 2
    assert "no handler with id 99" in capsys.readouterr().err


def test_unreachable_database_is_a_message_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DSRFLOW_DATABASE_URL", "postgresql+psycopg://nobody@127.0.0.1:9/none")
    assert main(["handlers", "list"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("dsrflow: error: OperationalError")
    assert "Traceback" not in err


def test_a_long_running_process_settles_what_it_loaded_out_of_the_collectors_reach(
    rt: Runtime, cli_env: None, tmp_path: Path
) -> None:
    """An API worker freezes what it holds once loaded (``runtime.settle``): full collections
    no longer walk the modules, definitions and templates (a sweep's time, measured)."""
    probe = (
        "import gc; from dsrflow.cli import worker_app; "
        "before = gc.get_freeze_count(); worker_app(); print(before, gc.get_freeze_count())"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        env=dict(os.environ),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    before, after = map(int, out.stdout.split())
    assert before == 0
    assert after > 10_000  # the loaded process: tens of thousands of objects
