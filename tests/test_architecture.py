"""Imports run one way, from the faces down (docs/architecture.md): nothing below imports above.

Read from the source with ``ast``, including imports inside functions (the CLI imports lazily).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "dsrflow"

# Higher layers may import lower ones, never the reverse. Modules of one layer may import each
# other only as listed in SIDEWAYS.
LAYERS: dict[str, int] = {
    # the command line starts the app and the scheduler; the app mounts the routers
    "cli": 6,
    "app": 5,
    # the registry of every table, for Alembic: it sees every room's models
    "models": 5,
    "migrations": 5,
    # faces
    "api": 4,
    "pages": 4,
    "console": 4,
    "scheduler": 4,
    # the domain, upper: it composes the request domain
    "inbound_mail": 3,
    "deadlines": 3,
    "reports": 3,
    "packages": 3,
    # retention purges across the rooms of the domain (requests, their mail, their letters)
    "retention": 3,
    "documents": 3,  # the requester's uploads: a request's files, audited
    # the domain
    "requests": 2,
    # below
    "runtime": 1,
    "outbound_mail": 1,
    "workflow": 1,
    "audit": 1,
    "auth": 1,
    "logs": 1,
    "backup": 1,
    "web": 1,  # what every face shares over HTTP: CSRF, limits, security headers, uvicorn
    "config": 0,
    # where DATA_DIR is, by the standard library alone (config, and ingest-email before it)
    "locations": 0,
    "db": 0,
    "errors": 0,
    "yamlio": 0,
}
# Allowed imports within a layer, (importer, imported).
SIDEWAYS = {
    ("pages", "api"),  # the pages share the API's session and rate-limit dependencies
    ("console", "api"),
    ("console", "pages"),
    ("migrations", "models"),
    ("deadlines", "inbound_mail"),  # the digest counts the triage inbox
    ("reports", "inbound_mail"),  # the metrics count the triage inbox and the IMAP lag
    ("retention", "inbound_mail"),  # purge empties a request's mail with the request
    ("retention", "packages"),  # and deletes its disclosure package files
    ("runtime", "outbound_mail"),  # the runtime holds the letter renderer
    ("runtime", "workflow"),
    ("outbound_mail", "workflow"),
    ("workflow", "config"),
    ("config", "workflow"),
    ("config", "locations"),
}


def _room(module: str) -> str:
    return module.split(".")[1] if module.count(".") else "__init__"


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
        elif isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
    return [name for name in found if name.startswith("dsrflow.")]


def _sources() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if "versions" not in p.parts)


def test_every_room_has_a_layer() -> None:
    rooms = {p.relative_to(SRC).parts[0].removesuffix(".py") for p in _sources()}
    assert rooms - {"__init__", "__main__"} <= set(LAYERS), sorted(rooms - set(LAYERS))


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(SRC)))
def test_imports_run_one_way(path: Path) -> None:
    importer = path.relative_to(SRC).parts[0].removesuffix(".py")
    if importer not in LAYERS:
        return
    upward = []
    for module in _imports(path):
        imported = _room(module)
        if imported == importer or imported not in LAYERS:
            continue
        lower = LAYERS[imported] < LAYERS[importer]
        if not lower and (importer, imported) not in SIDEWAYS:
            upward.append(module)
    assert upward == [], f"{path.relative_to(SRC)} imports upward or sideways: {upward}"
