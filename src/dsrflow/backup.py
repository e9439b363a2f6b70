"""``dsrflow backup PATH``: a consistent copy of a SQLite database while the service runs.

SQLite's online backup API copies the database page by page under a read transaction, so
writers go on meanwhile and the copy is the database as of one moment, committed transactions
only. PostgreSQL is backed up with ``pg_dump`` (docs/reliability.md).
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from sqlalchemy.engine import Engine


class BackupError(Exception):
    """The backup cannot be made (wrong backend, target exists, disk error)."""


def backup_sqlite(db: Engine, target: Path | str) -> int:
    """Copy the database behind ``db`` to ``target`` (a new file); returns its page count."""
    if db.dialect.name != "sqlite":
        raise BackupError(
            f"dsrflow backup copies SQLite databases; for {db.dialect.name} use pg_dump "
            "(see docs/reliability.md)"
        )
    source = db.url.database
    if not source or source == ":memory:":
        raise BackupError("an in-memory database cannot be backed up")
    target = Path(target)
    if target.exists():
        raise BackupError(f"{target} exists; choose a new file")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    try:
        with (
            contextlib.closing(sqlite3.connect(source, timeout=30)) as src,
            contextlib.closing(sqlite3.connect(partial)) as dst,
        ):
            src.backup(dst, pages=1024)
            # A self-contained file: no WAL beside it.
            dst.execute("PRAGMA journal_mode=DELETE")
            pages = int(dst.execute("PRAGMA page_count").fetchone()[0])
            check = dst.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise BackupError(f"the copy failed its integrity check: {check}")
        partial.replace(target)
    except sqlite3.Error as exc:
        raise BackupError(f"backup to {target} failed: {exc}") from exc
    finally:
        partial.unlink(missing_ok=True)
    return pages
