"""Mixed load on SQLite (issue 12, section 1): 64 concurrent clients filing requests, deciding
them and reading the queue against a real `dsrflow serve` get no error at all: no 5xx and no
"database is locked". The latencies are printed for docs/reliability.md, not asserted (speed is
measured in bench/). ``DSRFLOW_LOAD_SECONDS`` sets how long it runs (default 6)."""

from __future__ import annotations

import os
import statistics
import threading
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from dsrflow.app import create_app
from dsrflow.auth.service import add_handler
from dsrflow.runtime import Runtime
from tests.reliability.test_crash import REFUSE, Service
from tests.services import free_port

pytestmark = pytest.mark.slow

CLIENTS = 64
SECONDS = float(os.environ.get("DSRFLOW_LOAD_SECONDS", "6"))


@pytest.fixture
def backend() -> str:
    return "sqlite"


def test_64_clients_mixing_intake_decisions_and_reads(
    rt: Runtime, database_url: str, tmp_path: Path
) -> None:
    with Session(rt.db) as s:
        _, token = add_handler(s, "load test", "load@example.jp", "handler")
    env = {
        **os.environ,
        "DSRFLOW_DATABASE_URL": database_url,
        "DSRFLOW_WORKFLOWS_DIR": str(rt.settings.workflows_dir),
        "DSRFLOW_DATA_DIR": str(tmp_path / "var"),
        "DSRFLOW_RATE_LIMIT_PER_MINUTE": "1000000",
    }
    service = Service(env, free_port(), tmp_path / "serve.log")
    service.start()
    latencies: dict[str, list[float]] = {"intake": [], "decision": [], "read": []}
    errors: list[str] = []
    lock = threading.Lock()
    stop = time.monotonic() + SECONDS
    headers = {"Authorization": f"Bearer {token}"}

    def timed(kind: str, call: httpx.Response | None, began: float) -> httpx.Response | None:
        with lock:
            latencies[kind].append(time.monotonic() - began)
        return call

    def client(n: int) -> None:
        with httpx.Client(base_url=service.url, timeout=60) as http:
            i = 0
            while time.monotonic() < stop:
                i += 1
                try:
                    if n % 4 == 0:  # a handler reading the queue
                        began = time.monotonic()
                        r = http.get("/api/v1/requests?limit=20", headers=headers)
                        timed("read", r, began)
                        if r.status_code != 200:
                            errors.append(f"read {r.status_code}")
                        continue
                    body = {
                        "type": "purpose_notice",
                        "name": "負荷",
                        "email": f"l{n}-{i}@example.jp",
                    }
                    body["details"] = "x"
                    began = time.monotonic()
                    r = http.post("/api/v1/requests", json=body)
                    timed("intake", r, began)
                    if r.status_code != 201:
                        errors.append(f"intake {r.status_code} {r.text[:80]}")
                        continue
                    began = time.monotonic()
                    url = f"/api/v1/requests/{r.json()['id']}/transitions"
                    d = http.post(url, json=REFUSE, headers=headers)
                    timed("decision", d, began)
                    if d.status_code != 200:
                        errors.append(f"decision {d.status_code} {d.text[:80]}")
                except httpx.HTTPError as exc:
                    errors.append(f"{type(exc).__name__}")

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    service.stop()
    log = (tmp_path / "serve.log").read_text(errors="replace")
    assert "database is locked" not in log
    assert errors == []
    summary = []
    for kind, values in latencies.items():
        values.sort()
        p99 = values[int(len(values) * 0.99) - 1] if values else 0.0
        summary.append(
            f"{kind} n={len(values)} median={statistics.median(values) * 1000:.0f}ms "
            f"p99={p99 * 1000:.0f}ms"
        )
    print(f"\nmixed load, {CLIENTS} clients, {SECONDS:g} s on SQLite: " + "; ".join(summary))


def test_the_api_runs_at_most_api_threads_blocking_calls_at_once(rt: Runtime) -> None:
    """``API_THREADS`` bounds the pool that runs sync routes and dependencies: calls beyond it
    wait their turn, and all succeed."""
    rt.settings.api_threads = 2
    app = create_app(rt)
    running = peak = 0
    guard = threading.Lock()

    @app.get("/test-blocking")
    def blocking() -> dict[str, int]:
        nonlocal running, peak
        with guard:
            running += 1
            peak = max(peak, running)
        time.sleep(0.05)
        with guard:
            running -= 1
        return {"ok": 1}

    with TestClient(app) as client:
        answers: list[int] = []
        calls = [
            threading.Thread(
                target=lambda: answers.append(client.get("/test-blocking").status_code)
            )
            for _ in range(8)
        ]
        for call in calls:
            call.start()
        for call in calls:
            call.join()
    assert answers == [200] * 8
    assert peak == 2
