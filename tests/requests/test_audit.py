"""The audit log's hash chains: tampering of any kind is caught by `dsrflow audit verify`."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from dsrflow.cli import main
from dsrflow.runtime import Runtime
from tests.conftest import make_request


def verify(capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["audit", "verify"])
    return code, capsys.readouterr().out


def test_untouched_log_verifies(
    rt: Runtime, cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    make_request(rt, "disclosure", "fulfilled")
    make_request(rt, "correction", "refused")
    code, out = verify(capsys)
    assert code == 0, out
    assert "6 events checked, 0 breaks" in out  # 1+3 (a fee payment) and 1+1


@pytest.mark.parametrize(
    "tamper",
    [
        # an edited explanation
        'UPDATE events SET detail = \'{"summary": "something else"}\' WHERE seq = 3',
        # a back-dated decision
        "UPDATE events SET at = at - INTERVAL '1 day' WHERE seq = 3",
        # a deleted middle event
        "DELETE FROM events WHERE seq = 2",
        # a deleted last event
        "DELETE FROM events WHERE seq = 3",
    ],
    ids=["edited", "backdated", "deleted-middle", "deleted-tail"],
)
def test_tampering_is_detected(
    tamper: str, rt: Runtime, cli_env: None, capsys: pytest.CaptureFixture[str], backend: str
) -> None:
    request = make_request(rt, "disclosure", "fulfilled")
    if backend == "sqlite":
        tamper = tamper.replace("at - INTERVAL '1 day'", "datetime(at, '-1 day')")
    with rt.db.begin() as connection:
        connection.execute(text(tamper))
    code, out = verify(capsys)
    assert code == 1
    assert f"BROKEN request {request.id}" in out
