"""Letters: Jinja2 templates in workflows/templates/{ja,en}/<letter>.txt.j2.

Each template defines two blocks, ``subject`` and ``body``. Subjects are single lines: any CR or
LF that a value smuggles in is folded to a space, so no value can ever add a header.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import yaml
from jinja2 import Environment, FileSystemLoader, StrictUndefined, pass_context
from jinja2.runtime import Context

_LINE_BREAKS = re.compile(r"[\r\n\u2028\u2029\x0b\x0c\x85]+")


def single_line(value: str) -> str:
    return _LINE_BREAKS.sub(" ", value).strip()


# templates/formats.yaml: per language, how dates, times and amounts are written.
FORMATS_FILE = "formats.yaml"


def _fields(value: date, formats: dict[str, Any]) -> dict[str, Any]:
    return {
        "year": value.year,
        "month": value.month,
        "day": value.day,
        "weekday": formats["weekdays"][value.weekday()],
        "month_name": formats["months"][value.month - 1],
    }


class Formats:
    """The filters ``long_date``, ``long_datetime`` and ``yen``, in the letter's language."""

    def __init__(self, path: Path):
        self.by_language: dict[str, dict[str, Any]] = (
            yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else {}
        )

    def _for(self, ctx: Context) -> dict[str, Any]:
        return self.by_language[ctx.get("language") or "ja"]

    def long_date(self, ctx: Context, value: date | datetime | None) -> str:
        if value is None:
            return ""
        day = value.date() if isinstance(value, datetime) else value
        formats = self._for(ctx)
        return str(formats["date"]).format(**_fields(day, formats))

    def long_datetime(self, ctx: Context, value: datetime | None) -> str:
        if value is None:
            return ""
        formats = self._for(ctx)
        return str(formats["datetime"]).format(
            **_fields(value.date(), formats), hour=value.hour, minute=value.minute
        )

    def yen(self, ctx: Context, value: int | None) -> str:
        if value is None:
            return ""
        return str(self._for(ctx)["yen"]).format(amount=f"{int(value):,}")


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
        )
        formats = Formats(Path(templates_dir) / FORMATS_FILE)
        for name in ("long_date", "long_datetime", "yen"):
            method = getattr(formats, name)
            # A plain function (a bound method cannot carry Jinja's pass_context mark).
            self.env.filters[name] = pass_context(
                lambda ctx, value, method=method: method(ctx, value)
            )

    def render(self, letter: str, language: str, context: dict[str, Any]) -> Letter:
        template = self.env.get_template(f"{language}/{letter}.txt.j2")
        ctx = template.new_context({**context, "language": language})
        subject = "".join(template.blocks["subject"](ctx))
        body = "".join(template.blocks["body"](ctx))
        return Letter(subject=single_line(subject), body=body.strip() + "\n")
