"""docs/appi.md names real places: every file it cites exists, every function and key too."""

from __future__ import annotations

import importlib
import re

import pytest

from tests.conftest import ROOT

DOC = (ROOT / "docs" / "appi.md").read_text(encoding="utf-8")
CITED = re.findall(r"`([^`]+)`", DOC)
MODULES = {
    "law": "dsrflow.workflow.law",
    "engine": "dsrflow.workflow.engine",
    "runtime": "dsrflow.runtime",
}


@pytest.mark.parametrize("path", sorted({c for c in CITED if c.startswith(("src/", "workflows/"))}))
def test_every_cited_file_exists(path: str) -> None:
    assert list(ROOT.glob(path)), f"docs/appi.md cites {path}, which does not exist"


@pytest.mark.parametrize(
    "name", sorted({c for c in CITED if re.fullmatch(r"(law|engine|runtime)\.[\w.]+", c)})
)
def test_every_cited_name_exists(name: str) -> None:
    module, *attributes = name.split(".")
    target: object = importlib.import_module(MODULES[module])
    for attribute in attributes:
        assert hasattr(target, attribute), f"docs/appi.md cites {name}"
        target = getattr(target, attribute)


@pytest.mark.parametrize(
    ("path", "name"),
    sorted(set(re.findall(r"`(src/dsrflow/[\w/]+\.py|[\w/]+/\w+\.py)` `(\w+)`", DOC))),
)
def test_every_cited_function_is_in_its_file(path: str, name: str) -> None:
    candidates = [ROOT / path, ROOT / "src" / "dsrflow" / path]
    source = next((p for p in candidates if p.is_file()), None)
    assert source is not None, f"docs/appi.md cites {path}"
    assert re.search(rf"\b(def|class) {name}\b|^{name} = ", source.read_text(), re.M), (
        f"docs/appi.md cites {name} in {path}"
    )


def test_every_cited_reason_code_is_in_the_catalog() -> None:
    catalog = (ROOT / "workflows" / "legal_reasons.yaml").read_text(encoding="utf-8")
    codes = {c for c in CITED if re.fullmatch(r"(DISC|TPR|CORR|CEASE|PROC|PURPOSE|NOT)_[A-Z_]+", c)}
    missing = [c for c in sorted(codes) if f"code: {c}\n" not in catalog]
    assert missing == []
