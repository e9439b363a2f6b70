"""docs/letters.md is generated from the templates and must not go stale."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_committed_letters_match_the_templates() -> None:
    spec = importlib.util.spec_from_file_location(
        "render_letters", ROOT / "scripts" / "render_letters.py"
    )
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    try:
        spec.loader.exec_module(module)
        text = module.render()
    finally:
        del sys.modules[spec.name]
    for heading in ("Acknowledgment", "verification", "fulfilled in part", "refused", "Withdrawn"):
        assert heading in text
    assert "<verify-token>" in text
    assert "<status-token>" in text
    committed = (ROOT / "docs" / "letters.md").read_text(encoding="utf-8")
    assert committed == text, "docs/letters.md is stale: run `make letters`"
