"""The definition checks that the APPI additions need: each refuses a broken copy of
workflows/, naming the file and the key."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from dsrflow.workflow.definitions import WorkflowError, load_definitions
from dsrflow.workflow.engine import GUARDS
from tests.conftest import WORKFLOWS


def broken(tmp_path: Path, name: str, change: Callable[[dict[str, Any]], None]) -> Path:
    workflows = tmp_path / "workflows"
    shutil.copytree(WORKFLOWS, workflows)
    path = workflows / name
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return workflows


def fulfill_without_method(data: dict[str, Any]) -> None:
    for t in data["transitions"]:
        if t["trigger"] == "fulfill":
            t["requires"] = ["summary"]


def no_not_held(data: dict[str, Any]) -> None:
    del data["states"]["not_held"]
    data["transitions"] = [t for t in data["transitions"] if t["trigger"] != "report_not_held"]


def substituted_not_terminal(data: dict[str, Any]) -> None:
    data["states"]["substituted"]["terminal"] = False


@pytest.mark.parametrize(
    ("name", "change", "key"),
    [
        ("disclosure.yaml", lambda d: d["disclosure_method_options"].pop("paper"), "paper"),
        ("disclosure.yaml", fulfill_without_method, "method_used"),
        ("correction.yaml", lambda d: d.update(authority_documents={}), "authority_documents"),
        ("suspension.yaml", no_not_held, "not_held"),
        ("suspension.yaml", substituted_not_terminal, "states.substituted.terminal"),
        ("correction.yaml", lambda d: d["letters"].pop("agent_notice"), "letters.agent_notice"),
        ("correction.yaml", lambda d: d["letters"].pop("art39_alert"), "letters.art39_alert"),
    ],
)
def test_a_broken_copy_is_refused_naming_file_and_key(
    tmp_path: Path, name: str, change: Callable[[dict[str, Any]], None], key: str
) -> None:
    with pytest.raises(WorkflowError) as caught:
        load_definitions(broken(tmp_path, name, change), guards=GUARDS)
    assert any(name in error and key in error for error in caught.value.errors), caught.value.errors


def test_a_workflow_may_offer_its_own_disclosure_method(tmp_path: Path) -> None:
    # Rules Art. 30: "その他当該個人情報取扱事業者の定める方法", e.g. inspection at the office.
    def add_inspection(data: dict[str, Any]) -> None:
        data["disclosure_methods"].append("inspection")
        data["disclosure_method_options"]["inspection"] = {
            "label": {"ja": "当社窓口での閲覧", "en": "inspection at our office"}
        }

    definitions = load_definitions(broken(tmp_path, "disclosure.yaml", add_inspection), GUARDS)
    assert "inspection" in definitions.workflow("disclosure").disclosure_methods
