"""Letters: Jinja2 templates in workflows/templates/{ja,en}/<letter>.txt.j2.

Each template defines two blocks, ``subject`` and ``body``. Subjects are single lines: any CR or
LF that a value smuggles in is folded to a space, so no value can ever add a header.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

_LINE_BREAKS = re.compile(r"[\r\n\u2028\u2029\x0b\x0c\x85]+")


def single_line(value: str) -> str:
    return _LINE_BREAKS.sub(" ", value).strip()


@dataclass(frozen=True)
class Letter:
    subject: str
    body: str


class LetterRenderer:
    def __init__(self, templates_dir: Path):
        self.env = Environment(
            loader=FileSystemLoader(str(templates_dir)),
            undefined=StrictUndefined,
            autoescape=False,
            keep_trailing_newline=True,
            trim_blocks=True,
            lstrip_blocks=True,
            # Templates are read once: workflows/ is loaded and checked at start-up, so a
            # changed letter takes effect on restart, as a changed workflow does.
            auto_reload=False,
        )

    def render(self, letter: str, language: str, context: dict[str, Any]) -> Letter:
        template = self.env.get_template(f"{language}/{letter}.txt.j2")
        ctx = template.new_context(dict(context))
        subject = "".join(template.blocks["subject"](ctx))
        body = "".join(template.blocks["body"](ctx))
        return Letter(subject=single_line(subject), body=body.strip() + "\n")
