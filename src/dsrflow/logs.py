"""Logging that keeps secrets and personal data out: requester links are redacted."""

from __future__ import annotations

import logging
import re

# /status/<token> and /verify/<token> are bearer secrets for the requester's own request.
_SECRET_PATH = re.compile(r"(/(?:status|verify)/)[^\s/?\"']+")


def redact(text: str) -> str:
    return _SECRET_PATH.sub(r"\1[redacted]", text)


class RedactSecrets(logging.Filter):
    """Rewrites a record's message and arguments so no requester link reaches a log."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        return True


def install() -> None:
    """Redact at every handler: a logger's own filters do not see its children's records."""
    loggers = [
        logging.getLogger(),
        *(logging.getLogger(n) for n in ("uvicorn.access", "uvicorn.error", "uvicorn")),
    ]
    for logger in loggers:
        for handler in logger.handlers:
            if not any(isinstance(f, RedactSecrets) for f in handler.filters):
                handler.addFilter(RedactSecrets())
