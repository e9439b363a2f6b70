#!/usr/bin/env bash
# Development helper, used only before the first release: rebuild migration 0001 from the models.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -f src/dsrflow/migrations/versions/0001_*.py
tmp=$(mktemp -d)
.venv/bin/python - "$tmp" <<'PY'
import sys
from alembic import command
from dsrflow.db import alembic_config, make_engine
command.revision(alembic_config(make_engine(f"sqlite:///{sys.argv[1]}/x.sqlite3")), message="initial schema", autogenerate=True, rev_id="0001")
PY
rm -rf "$tmp"
.venv/bin/ruff format -q src/dsrflow/migrations/versions/
