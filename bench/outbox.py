"""The outbox cell alone, for profiling the dispatcher without the whole `make bench`:

    .venv/bin/python -m bench.outbox [MESSAGES]       # default 2,000, as the full run
    .venv/bin/py-spy record -o outbox.svg -- .venv/bin/python -m bench.outbox

A throwaway SQLite database, one flush to an aiosmtpd sink in its own process; prints the
rate, writes no docs."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from bench.__main__ import OUTBOX_MESSAGES, ROOT, outbox_cell


def main() -> int:
    sys.path.insert(0, str(ROOT))
    from dsrflow.db import make_engine, migrate

    messages = int(sys.argv[1]) if len(sys.argv) > 1 else OUTBOX_MESSAGES
    with tempfile.TemporaryDirectory(prefix="dsrflow-bench-outbox-") as tmp_name:
        tmp = Path(tmp_name)
        db = make_engine(f"sqlite:///{tmp}/outbox.sqlite3")
        migrate(db)
        result = outbox_cell(db, tmp, messages)
        db.dispose()
    print(
        f"{result.value:.0f} {result.unit} ({result.target}: {'met' if result.met else 'not met'})"
    )
    return 0 if result.met else 1


if __name__ == "__main__":
    sys.exit(main())
