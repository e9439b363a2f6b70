"""The law in the checker: an illegal copy of workflows/ stops `workflows check` and start-up.

Each test breaks one legal invariant in a copy of the shipped files and asserts the exact file
and key in the message and the exit code (2 for an error, 0 with a printed warning).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from dsrflow.cli import main
from dsrflow.config import Settings
from dsrflow.runtime import Runtime
from dsrflow.workflow.definitions import WorkflowError, load_definitions
from dsrflow.workflow.engine import GUARDS
from dsrflow.workflow.law import FAMILIES, family, provisions
from tests.conftest import WORKFLOWS

Check = Callable[[], tuple[int, str, str]]


@pytest.fixture
def workflows(tmp_path: Path) -> Path:
    target = tmp_path / "workflows"
    shutil.copytree(WORKFLOWS, target)
    return target


@pytest.fixture
def check(
    workflows: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Check:
    """Run `dsrflow workflows check` on the copy: (exit code, stdout, stderr)."""
    monkeypatch.setenv("DSRFLOW_WORKFLOWS_DIR", str(workflows))
    monkeypatch.setenv("DSRFLOW_DATA_DIR", str(tmp_path / "var"))

    def run() -> tuple[int, str, str]:
        code = main(["workflows", "check"])
        out, err = capsys.readouterr()
        assert "Traceback" not in err
        return code, out, err

    return run


def edit(path: Path, change: Callable[[Any], object]) -> None:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")


def reason(data: dict[str, Any], code: str) -> dict[str, Any]:
    return next(r for r in data["reasons"] if r["code"] == code)


def test_the_shipped_files_keep_the_law(check: Check) -> None:
    code, out, err = check()
    assert code == 0, err
    assert "OK" in out
    assert "error" not in err.lower()


def test_a_fee_on_a_correction_is_refused(workflows: Path, check: Check) -> None:
    edit(workflows / "correction.yaml", lambda d: d.update(fee={"amount_jpy": 50000}))
    code, _, err = check()
    assert code == 2
    assert f"{workflows / 'correction.yaml'}: fee: Art. 38(1) allows a fee only" in err
    assert "34(1)" in err


@pytest.mark.parametrize("request_type", ["suspension", "third_party_cessation"])
def test_a_fee_on_any_stop_request_is_refused(
    workflows: Path, check: Check, request_type: str
) -> None:
    edit(workflows / f"{request_type}.yaml", lambda d: d.update(fee={"amount_jpy": 1000}))
    code, _, err = check()
    assert code == 2
    assert f"{workflows / (request_type + '.yaml')}: fee: " in err


def test_a_fee_citing_another_article_is_refused(workflows: Path, check: Check) -> None:
    edit(workflows / "disclosure.yaml", lambda d: d["fee"].update(article="33(1)"))
    code, _, err = check()
    assert code == 2
    assert f"{workflows / 'disclosure.yaml'}: fee.article: '33(1)' must cite Art. 38" in err


@pytest.mark.parametrize(
    "request_type",
    ["disclosure", "third_party_record_disclosure", "correction", "suspension",
     "third_party_cessation"],
)  # fmt: skip
def test_art39_cannot_be_switched_off_where_it_applies(
    workflows: Path, check: Check, request_type: str
) -> None:
    edit(workflows / f"{request_type}.yaml", lambda d: d["deadline"].update(art39=False))
    code, _, err = check()
    assert code == 2
    assert f"{workflows / (request_type + '.yaml')}: deadline.art39: must be true" in err


def test_a_purpose_notice_may_have_art39_off(workflows: Path) -> None:
    # The shipped purpose_notice.yaml has art39: false (Art. 39 does not cover Art. 32(2)).
    definitions = load_definitions(workflows, guards=GUARDS)
    assert not definitions.workflows["purpose_notice"].deadline.art39


def test_a_disclosure_ground_on_a_correction_is_refused(workflows: Path, check: Check) -> None:
    edit(
        workflows / "legal_reasons.yaml",
        lambda d: reason(d, "DISC_HARM_RIGHTS")["types"].extend(["correction", "suspension"]),
    )
    code, _, err = check()
    assert code == 2
    catalog = workflows / "legal_reasons.yaml"
    assert (
        f"{catalog}: reasons.DISC_HARM_RIGHTS.types: 'correction' is a request under 34(1)" in err
    )
    assert f"{catalog}: reasons.DISC_HARM_RIGHTS.types: 'suspension' is a request under" in err


def test_art33_4_does_not_reach_third_party_records(workflows: Path, check: Check) -> None:
    # Art. 33(5) applies only paras. 1-3 of Art. 33 to third-party provision records.
    edit(
        workflows / "legal_reasons.yaml",
        lambda d: reason(d, "DISC_OTHER_LAW_REGIME")["types"].append(
            "third_party_record_disclosure"
        ),
    )
    code, _, err = check()
    assert code == 2
    assert (
        "reasons.DISC_OTHER_LAW_REGIME.types: 'third_party_record_disclosure' is a request "
        "under 33(5), outside the family of 33(4)"
    ) in err


def test_the_family_follows_the_article_not_the_code(workflows: Path, check: Check) -> None:
    """A new code is judged by its `article`: a cessation ground (35(3)-(4), Arts. 27(1)/28)
    put on a suspension is refused; the same ground on a cessation loads."""

    def add(types: list[str]) -> Callable[[Any], object]:
        def change(data: Any) -> None:
            data["reasons"].append(
                {
                    **reason(data, "CEASE_P5_NOT_MET"),
                    "code": "TEST_CESSATION_GROUND",
                    "article": "35(3)-(4)",
                    "types": types,
                }
            )

        return change

    edit(workflows / "legal_reasons.yaml", add(["third_party_cessation"]))
    assert check()[0] == 0
    edit(workflows / "legal_reasons.yaml", add(["suspension"]))
    code, _, err = check()
    assert code == 2
    assert (
        f"{workflows / 'legal_reasons.yaml'}: reasons.TEST_CESSATION_GROUND.types: "
        "'suspension' is a request under 35(1), 35(5), outside the family of 35(3)-(4)"
    ) in err


def test_proc_fee_unpaid_needs_a_fee(workflows: Path, check: Check) -> None:
    edit(workflows / "disclosure.yaml", lambda d: d.update(fee=None))
    code, _, err = check()
    assert code == 2
    assert (
        f"{workflows / 'legal_reasons.yaml'}: reasons.PROC_FEE_UNPAID.types: 'disclosure' "
        "charges no fee (disclosure.yaml fee)"
    ) in err


def test_proc_fee_unpaid_on_a_type_art38_excludes(workflows: Path, check: Check) -> None:
    edit(
        workflows / "legal_reasons.yaml",
        lambda d: reason(d, "PROC_FEE_UNPAID")["types"].append("correction"),
    )
    code, _, err = check()
    assert code == 2
    assert "reasons.PROC_FEE_UNPAID.types: 'correction' is a request under 34(1)" in err


def test_a_zero_fee_is_no_fee_for_proc_fee_unpaid(workflows: Path, check: Check) -> None:
    edit(workflows / "purpose_notice.yaml", lambda d: d["fee"].update(amount_jpy=0))
    code, _, err = check()
    assert code == 2
    assert "reasons.PROC_FEE_UNPAID.types: 'purpose_notice' charges no fee" in err


def test_a_fee_ground_declares_it_needs_a_fee(workflows: Path, check: Check) -> None:
    edit(
        workflows / "legal_reasons.yaml",
        lambda d: reason(d, "PROC_FEE_UNPAID").update(requires_fee=False),
    )
    code, _, err = check()
    assert code == 2
    assert (
        f"{workflows / 'legal_reasons.yaml'}: reasons.PROC_FEE_UNPAID.requires_fee: must be true"
    ) in err


def test_a_ground_that_requires_a_fee_needs_one(workflows: Path, check: Check) -> None:
    # requires_fee is the catalog's own word for a fee ground, whatever its article.
    edit(
        workflows / "legal_reasons.yaml",
        lambda d: reason(d, "PROC_NONCONFORMING").update(requires_fee=True),
    )
    code, _, err = check()
    assert code == 2
    assert "reasons.PROC_NONCONFORMING.types: 'correction' charges no fee" in err


def test_a_procedural_ground_is_never_a_withheld_part(workflows: Path, check: Check) -> None:
    edit(
        workflows / "legal_reasons.yaml",
        lambda d: reason(d, "PROC_ID_UNVERIFIED").update(uses=["refuse", "withheld"]),
    )
    code, _, err = check()
    assert code == 2
    assert (
        f"{workflows / 'legal_reasons.yaml'}: reasons.PROC_ID_UNVERIFIED.uses: 'withheld': "
        "a procedural ground"
    ) in err


def test_a_reason_must_cite_a_known_provision(workflows: Path, check: Check) -> None:
    edit(
        workflows / "legal_reasons.yaml",
        lambda d: reason(d, "CORR_NOT_NEEDED").update(article="Guideline 3-8-4"),
    )
    code, _, err = check()
    assert code == 2
    assert (
        f"{workflows / 'legal_reasons.yaml'}: reasons.CORR_NOT_NEEDED.article: "
        "'Guideline 3-8-4' cites no provision of the Act"
    ) in err


def test_a_workflow_must_be_a_request_of_art37(workflows: Path, check: Check) -> None:
    edit(workflows / "correction.yaml", lambda d: d.update(article="40"))
    code, _, err = check()
    assert code == 2
    assert f"{workflows / 'correction.yaml'}: article: '40' is not a request of Art. 37(1)" in err


def test_a_substantive_ground_waits_for_identity(workflows: Path, check: Check) -> None:
    edit(
        workflows / "legal_reasons.yaml",
        lambda d: reason(d, "CORR_NOT_INACCURATE")["states"].append("received"),
    )
    code, _, err = check()
    assert code == 2
    assert "reasons.CORR_NOT_INACCURATE.states: 'received': only a procedural ground" in err


def test_business_days_that_can_pass_art39_warn(workflows: Path, check: Check) -> None:
    # Ten business days are two calendar weeks only when no holiday or closure intervenes.
    edit(workflows / "correction.yaml", lambda d: d["deadline"].update(counting="business"))
    code, out, err = check()
    assert code == 0
    assert (
        f"warning: {workflows / 'correction.yaml'}: deadline.days: 14 business days can put "
        "the target on or after the Art. 39 date"
    ) in err
    assert "it is cut back to the day before unless deadline.confirm_past_art39 is true" in err
    assert "warnings)" in out


def test_a_confirmed_crossing_warns_that_it_stays(workflows: Path, check: Check) -> None:
    edit(
        workflows / "correction.yaml",
        lambda d: d["deadline"].update(counting="business", confirm_past_art39=True),
    )
    code, _, err = check()
    assert code == 0
    line = next(x for x in err.splitlines() if "correction.yaml: deadline.days" in x)
    assert line.endswith("deadline.confirm_past_art39 is true, so it stays there")


def test_calendar_days_past_two_weeks_warn(workflows: Path, check: Check) -> None:
    edit(workflows / "suspension.yaml", lambda d: d["deadline"].update(days=15))
    code, _, err = check()
    assert code == 0
    assert f"warning: {workflows / 'suspension.yaml'}: deadline.days: 15 calendar days" in err


def test_an_extension_that_can_pass_art39_warns(workflows: Path, check: Check) -> None:
    edit(workflows / "correction.yaml", lambda d: d["deadline"].update(days=10))
    assert f"{workflows / 'correction.yaml'}" not in check()[2]
    edit(workflows / "correction.yaml", lambda d: d["deadline"].update(extension_max_days=5))
    code, _, err = check()
    assert code == 0
    assert (
        f"warning: {workflows / 'correction.yaml'}: deadline.extension_max_days: an extension "
        "of 5 calendar days"
    ) in err


def test_a_short_business_target_does_not_warn(workflows: Path, check: Check) -> None:
    # Five business days never reach two calendar weeks, Golden Week and year-end included.
    edit(
        workflows / "correction.yaml",
        lambda d: d["deadline"].update(counting="business", days=5),
    )
    code, _, err = check()
    assert code == 0
    assert "correction.yaml" not in err


def test_no_warning_where_art39_does_not_apply(workflows: Path, check: Check) -> None:
    edit(workflows / "purpose_notice.yaml", lambda d: d["deadline"].update(days=30))
    assert "purpose_notice.yaml" not in check()[2]


def test_start_up_refuses_an_illegal_configuration(workflows: Path, tmp_path: Path) -> None:
    edit(workflows / "correction.yaml", lambda d: d.update(fee={"amount_jpy": 1000}))
    settings = Settings(workflows_dir=workflows, data_dir=tmp_path / "var")
    with pytest.raises(WorkflowError) as caught:
        Runtime.load(settings)
    assert any(e.startswith(f"{workflows / 'correction.yaml'}: fee: ") for e in caught.value.errors)


@pytest.mark.parametrize(
    ("article", "cited"),
    [
        ("33(2)(i)", [(33, 2)]),
        ("35(1)-(4)", [(35, 1), (35, 2), (35, 3), (35, 4)]),
        ("35(2),(4),(6) proviso", [(35, 2), (35, 4), (35, 6)]),
        ("38, Cabinet Order 12(iv)", [(38, None)]),
        ("32(2)(ii), 21(4)(i)-(iii)", [(32, 2), (21, 4)]),
        ("33(5), Guideline 3-8-3", [(33, 5)]),
        ("16(4), Cabinet Order 5", [(16, 4)]),
        ("Cabinet Order 11", []),
        ("35(1), 35(5)", [(35, 1), (35, 5)]),
    ],
)
def test_articles_are_read_as_provisions(article: str, cited: list[tuple[int, int | None]]) -> None:
    assert provisions(article) == cited


def test_families_by_article() -> None:
    assert family(provisions("35(2), 35(6)")) == {(35, 1), (35, 5)}  # necessary limit
    assert family(provisions("37(2)")) == family(provisions("16(4)"))  # every request
    assert family(provisions("99(1)")) is None
    assert all(isinstance(found, frozenset) for found in FAMILIES.values())


def test_every_start_says_the_warnings(
    cli_env: None,
    workflows: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    edit(workflows / "correction.yaml", lambda d: d["deadline"].update(days=20))
    monkeypatch.setenv("DSRFLOW_WORKFLOWS_DIR", str(workflows))
    caplog.set_level("WARNING", logger="dsrflow")
    assert main(["audit", "verify"]) == 0
    logged = [r.getMessage() for r in caplog.records if r.name == "dsrflow"]
    assert (
        f"workflows: {workflows / 'correction.yaml'}: deadline.days: 20 calendar days"
        in "\n".join(logged)
    ), logged
