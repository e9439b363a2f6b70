"""Where DATA_DIR is, and the files dsrflow keeps in it, by the standard library alone.

``config.Settings`` takes its prefix, ``.env`` file and default from here. ``dsrflow
ingest-email`` resolves DATA_DIR with ``data_dir()`` before it imports pydantic, to find the
service's intake socket: the same rule (the environment, then ``.env``, then ``./var``), which
``tests/test_config.py`` checks against pydantic-settings.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

ENV_PREFIX = "DSRFLOW_"
ENV_FILE = ".env"
DEFAULT_DATA_DIR = Path("./var")

# The service's intake socket and the lock that says which process owns it (docs/mail-intake.md).
RUN_DIR = "run"
INTAKE_SOCKET = "intake.sock"
INTAKE_LOCK = "intake.lock"

_DATA_DIR_KEY = f"{ENV_PREFIX}DATA_DIR".lower()
# python-dotenv's line: optional `export`, KEY, `=`, a value quoted or bare (a bare value ends
# at ` #`, a comment).
_DOTENV_LINE = re.compile(
    r"""^\s*(?:export\s+)?(?P<key>[A-Za-z_][A-Za-z0-9_.-]*)\s*=\s*"""
    r"""(?:'(?P<single>[^']*)'|"(?P<double>(?:\\.|[^"\\])*)"|(?P<bare>.*?))\s*(?:\s\#.*)?$"""
)


def data_dir(environ: Mapping[str, str] | None = None, env_file: Path | None = None) -> Path:
    """DATA_DIR as ``Settings().data_dir`` reads it: ``DSRFLOW_DATA_DIR`` in the environment
    (any case; empty means unset), else in ``.env`` of the working directory, else ``./var``."""
    for key, value in (os.environ if environ is None else environ).items():
        if key.lower() == _DATA_DIR_KEY and value:
            return Path(value)
    found = _dotenv_value(Path(ENV_FILE) if env_file is None else env_file, _DATA_DIR_KEY)
    return Path(found) if found else DEFAULT_DATA_DIR


def intake_socket(data_dir: Path) -> Path:
    return data_dir / RUN_DIR / INTAKE_SOCKET


def intake_lock(data_dir: Path) -> Path:
    return data_dir / RUN_DIR / INTAKE_LOCK


def _dotenv_value(path: Path, key: str) -> str | None:
    """The last value of ``key`` (any case) in a dotenv file, or None."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    found: str | None = None
    for line in text.splitlines():
        match = _DOTENV_LINE.match(line)
        if match is None or match["key"].lower() != key:
            continue
        if match["double"] is not None:
            found = re.sub(r"\\(.)", r"\1", match["double"])
        else:
            found = match["single"] if match["single"] is not None else match["bare"]
    return found
