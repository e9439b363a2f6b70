"""workflows/ is the domain: loading, validation errors that name file and key, diagrams."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest
import yaml

from dsrflow.cli import main
from dsrflow.workflow.definitions import WorkflowError, load_definitions
from dsrflow.workflow.diagram import mermaid
from dsrflow.workflow.engine import GUARDS
from tests.conftest import WORKFLOWS

TYPES = {
    "disclosure",
    "third_party_record_disclosure",
    "correction",
    "suspension",
    "third_party_cessation",
    "purpose_notice",
}


@pytest.fixture
def workflows(tmp_path: Path) -> Path:
    target = tmp_path / "workflows"
    shutil.copytree(WORKFLOWS, target)
    return target


def edit(path: Path, change: object) -> None:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(data)  # type: ignore[operator]
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")


def errors_of(directory: Path) -> list[str]:
    with pytest.raises(WorkflowError) as caught:
        load_definitions(directory, guards=GUARDS)
    return caught.value.errors


def test_the_shipped_definitions_load() -> None:
    definitions = load_definitions(WORKFLOWS, guards=GUARDS)
    assert set(definitions.workflows) == TYPES
    assert len(definitions.reasons) == 20
    fees = {t for t, wf in definitions.workflows.items() if wf.fee is not None}
    assert fees == {"disclosure", "third_party_record_disclosure", "purpose_notice"}
    assert all(wf.deadline.days == 14 for wf in definitions.workflows.values())
    assert not definitions.workflows["purpose_notice"].deadline.art39


def test_unknown_state_names_file_and_key(workflows: Path) -> None:
    edit(workflows / "correction.yaml", lambda d: d["transitions"][0].update(dest="verifed"))
    errors = errors_of(workflows)
    assert any(
        "correction.yaml" in e and "transitions[0]" in e and "dest" in e and "verifed" in e
        for e in errors
    ), errors


def test_unknown_guard_is_an_error_at_load(workflows: Path) -> None:
    edit(workflows / "suspension.yaml", lambda d: d["transitions"][2].update(guards=["always"]))
    errors = errors_of(workflows)
    assert any("suspension.yaml" in e and "guards" in e and "'always'" in e for e in errors)


def test_missing_template_is_an_error(workflows: Path) -> None:
    (workflows / "templates" / "en" / "refused.txt.j2").unlink()
    errors = errors_of(workflows)
    assert any("letter" in e and "en/refused.txt.j2" in e for e in errors), errors


def test_reason_with_unknown_type_names_the_catalog_key(workflows: Path) -> None:
    edit(workflows / "legal_reasons.yaml", lambda d: d["reasons"][0]["types"].append("deletion"))
    errors = errors_of(workflows)
    assert any("legal_reasons.yaml" in e and "DISC_HARM_RIGHTS.types" in e for e in errors)


def test_schema_error_names_the_key(workflows: Path) -> None:
    edit(workflows / "disclosure.yaml", lambda d: d["deadline"].update(counting="lunar"))
    errors = errors_of(workflows)
    assert any("disclosure.yaml" in e and "deadline.counting" in e for e in errors), errors


def test_missing_contract_trigger_is_an_error(workflows: Path) -> None:
    edit(
        workflows / "purpose_notice.yaml",
        lambda d: d.update(transitions=[t for t in d["transitions"] if t["trigger"] != "refuse"]),
    )
    errors = errors_of(workflows)
    assert any("purpose_notice.yaml" in e and "'refuse'" in e for e in errors)


def test_broken_yaml_is_reported_not_raised(workflows: Path) -> None:
    (workflows / "correction.yaml").write_text("id: correction\nstates: [unclosed\n")
    errors = errors_of(workflows)
    assert any("correction.yaml" in e and "YAML" in e for e in errors)


def test_every_error_is_reported_at_once(workflows: Path) -> None:
    edit(workflows / "correction.yaml", lambda d: d["transitions"][0].update(dest="nowhere"))
    edit(workflows / "suspension.yaml", lambda d: d["transitions"][0].update(source="limbo"))
    errors = errors_of(workflows)
    assert any("correction.yaml" in e for e in errors)
    assert any("suspension.yaml" in e for e in errors)


def test_cli_check_reports_errors_and_fails(
    workflows: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DSRFLOW_WORKFLOWS_DIR", str(workflows))
    assert main(["workflows", "check"]) == 0
    assert "6 workflows" in capsys.readouterr().out
    edit(workflows / "correction.yaml", lambda d: d["states"].pop("awaiting_requester"))
    assert main(["workflows", "check"]) == 2
    err = capsys.readouterr().err
    assert "correction.yaml" in err
    assert "awaiting_requester" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("variable", "value", "argv"),
    [
        ("DSRFLOW_SMTP_SECURITY", "ssl3", ["workflows", "check"]),
        # Regression: an unknown zone escaped as a traceback (ZoneInfoNotFoundError is a KeyError).
        ("DSRFLOW_TIMEZONE", "Mars/Base", ["workflows", "check"]),
        ("DSRFLOW_TIMEZONE", "Mars/Base", ["sweep", "--as-of", "2026-12-01T00:00"]),
        ("DSRFLOW_CLOSURE_DAYS", '["13-40"]', ["workflows", "check"]),
    ],
)
def test_cli_reports_bad_configuration_naming_the_variable(
    variable: str,
    value: str,
    argv: list[str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(variable, value)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert variable in err
    assert "Traceback" not in err


def test_diagram_draws_every_transition() -> None:
    wf = load_definitions(WORKFLOWS, guards=GUARDS).workflows["correction"]
    text = mermaid(wf)
    assert text.startswith("stateDiagram-v2")
    assert "received --> identity_verified: verify_identity" in text
    assert "awaiting_requester --> withdrawn: withdraw" in text  # "*" expanded to open states
    assert "fulfilled --> withdrawn" not in text  # nothing leaves a terminal state
    assert "refused --> [*]" in text


def test_cli_diagram_for_one_type(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["workflows", "diagram", "suspension"]) == 0
    assert "suspension" in capsys.readouterr().out
    assert main(["workflows", "diagram", "nonsense"]) == 2


def test_committed_diagrams_match_the_workflows() -> None:
    spec = importlib.util.spec_from_file_location(
        "render_diagrams", WORKFLOWS.parent / "scripts" / "render_diagrams.py"
    )
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for path, text in module.render().items():
        assert path.read_text(encoding="utf-8") == text, f"{path} is stale: run `make diagrams`"


def test_cli_check_covers_the_mail_intake_rules(
    workflows: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DSRFLOW_WORKFLOWS_DIR", str(workflows))
    (workflows / "intake" / "mail.yaml").write_text("types: [unclosed\n", encoding="utf-8")
    assert main(["workflows", "check"]) == 2
    err = capsys.readouterr().err
    assert "mail.yaml" in err
    assert "Traceback" not in err


def test_a_missing_letter_key_is_an_error(workflows: Path) -> None:
    # Regression: a workflow without `letters.handler_notice` passed the check, then every
    # submission of that type failed with a KeyError.
    edit(workflows / "disclosure.yaml", lambda d: d["letters"].pop("handler_notice"))
    errors = errors_of(workflows)
    assert any("disclosure.yaml" in e and "letters.handler_notice" in e for e in errors), errors
