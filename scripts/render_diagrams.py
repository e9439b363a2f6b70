"""Write the state diagrams drawn from workflows/ into README.md and docs/workflows.md.

Run by `make diagrams`; a test fails when the committed diagrams no longer match workflows/.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from dsrflow.workflow.definitions import Definitions, load_definitions
from dsrflow.workflow.diagram import mermaid
from dsrflow.workflow.engine import GUARDS

ROOT = Path(__file__).resolve().parent.parent
README_TYPE = "disclosure"
MARKERS = re.compile(r"(<!-- diagram:start -->\n).*?(<!-- diagram:end -->)", re.S)


def readme_block(definitions: Definitions) -> str:
    return f"```mermaid\n{mermaid(definitions.workflows[README_TYPE])}```\n"


def workflows_doc(definitions: Definitions) -> str:
    parts = [
        "# Workflows\n",
        "Generated from `workflows/*.yaml` by `make diagrams`; do not edit by hand.\n",
    ]
    for wf in definitions.workflows.values():
        deadline = wf.deadline
        fee = f"{wf.fee.amount_jpy} JPY (Art. {wf.fee.article})" if wf.fee else "none"
        parts.append(
            f"\n## `{wf.id}`: {wf.title.en} ({wf.title.ja})\n\n"
            f"APPI Art. {wf.article}. Deadline: {deadline.days} {deadline.counting} days from "
            f"arrival{'' if deadline.art39 else ' (Art. 39 does not apply)'}. Fee: {fee}. "
            f"Identity methods: {', '.join(f'`{m}`' for m in wf.identity_methods)}"
            f"{' (the e-mail link alone suffices)' if wf.email_link_sufficient else ''}.\n\n"
            f"```mermaid\n{mermaid(wf)}```\n"
        )
    return "".join(parts)


def render(root: Path = ROOT) -> dict[Path, str]:
    definitions = load_definitions(root / "workflows", guards=GUARDS)
    readme = (root / "README.md").read_text(encoding="utf-8")
    readme = MARKERS.sub(lambda m: m.group(1) + readme_block(definitions) + m.group(2), readme)
    return {root / "README.md": readme, root / "docs" / "workflows.md": workflows_doc(definitions)}


if __name__ == "__main__":
    for path, text in render().items():
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path.relative_to(ROOT)}", file=sys.stderr)
