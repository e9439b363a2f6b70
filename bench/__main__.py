"""Run the benchmarks and write docs/benchmarks.md.

Every figure is compared with a baseline measured in the same run on the same database, since
these machines are noisy: a target is a ratio to the baseline, not a number of milliseconds.

- decision: one transition through the service (engine, conditional update, audit event, letter
  rendered into the outbox, commit) against the bare SQL it cannot avoid (the conditional update
  and one insert, committed).
- sweep: one deadline sweep over N due requests (claim, plan, queue, commit per request) against
  reading the same N rows one transaction each.
- intake: POST /api/v1/requests against GET /healthz, through the same ASGI stack.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session

from dsrflow.app import create_app
from dsrflow.config import Settings
from dsrflow.db import make_engine, migrate
from dsrflow.deadlines.service import sweep
from dsrflow.requests import service
from dsrflow.requests.schemas import RequestCreate, TransitionIn
from dsrflow.runtime import Runtime

ROOT = Path(__file__).resolve().parent.parent
N = 300
# Targets: the work may cost at most this many times its baseline.
TARGETS = {"decision": 12.0, "sweep": 25.0, "intake": 10.0}


def body(i: int) -> RequestCreate:
    return RequestCreate(
        type="correction", name="Bench Mark", email=f"b{i}@example.jp", details="benchmark"
    )


def timed(fn: Callable[[], None], repeat: int = 3) -> float:
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def fresh_runtime(db: Engine, tmp: Path) -> Runtime:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=tmp,
        workflows_dir=ROOT / "workflows",
        rate_limit_per_minute=10**9,
    )
    return Runtime.load(settings, db=db)


def reset(db: Engine) -> None:
    with db.begin() as connection:
        for table in ("outbox", "events", "audit_heads", "verification_tokens", "requests"):
            connection.execute(text(f"DELETE FROM {table}"))


def seed(rt: Runtime, count: int, received_at: datetime | None = None) -> list[str]:
    ids = []
    with Session(rt.db, expire_on_commit=False) as session:
        for i in range(count):
            submitted = service.open_request(
                rt, session, body(i), channel="api", received_at=received_at
            )
            ids.append(submitted.request.id)
        session.commit()
    return ids


def bench_decision(rt: Runtime) -> tuple[float, float]:
    def work() -> None:
        reset(rt.db)
        ids = seed(rt, N)
        start = time.perf_counter()
        with Session(rt.db, expire_on_commit=False) as session:
            for request_id in ids:
                service.transition(
                    rt,
                    session,
                    request_id,
                    TransitionIn(trigger="verify_identity", method="in_person"),
                    actor="bench",
                )
        work.elapsed = time.perf_counter() - start  # type: ignore[attr-defined]

    def baseline() -> None:
        reset(rt.db)
        ids = seed(rt, N)
        start = time.perf_counter()
        with rt.db.connect() as connection:
            for request_id in ids:
                connection.execute(
                    text(
                        "UPDATE requests SET state = 'identity_verified', version = version + 1 "
                        "WHERE id = :id AND version = 1"
                    ),
                    {"id": request_id},
                )
                connection.execute(
                    text(
                        "INSERT INTO events (request_id, seq, kind, actor, at, detail, prev_hash,"
                        " hash) VALUES (:id, 2, 'transition', 'bench', :at, '{}', 'p', 'h')"
                    ),
                    {"id": request_id, "at": datetime.now(UTC)},
                )
                connection.commit()
        baseline.elapsed = time.perf_counter() - start  # type: ignore[attr-defined]

    return _median_of(work), _median_of(baseline)


def bench_sweep(rt: Runtime) -> tuple[float, float]:
    arrival = datetime.now(UTC) - timedelta(days=20)

    def work() -> None:
        reset(rt.db)
        seed(rt, N, arrival)
        start = time.perf_counter()
        report = sweep(rt)
        assert report.queued >= N, report
        work.elapsed = time.perf_counter() - start  # type: ignore[attr-defined]

    def baseline() -> None:
        reset(rt.db)
        ids = seed(rt, N, arrival)
        start = time.perf_counter()
        for request_id in ids:
            with rt.db.connect() as connection:
                connection.execute(
                    text("SELECT * FROM requests WHERE id = :id"), {"id": request_id}
                ).one()
                connection.commit()
        baseline.elapsed = time.perf_counter() - start  # type: ignore[attr-defined]

    return _median_of(work), _median_of(baseline)


def bench_intake(rt: Runtime) -> tuple[float, float]:
    with TestClient(create_app(rt)) as client:
        payload = body(0).model_dump(mode="json")

        def work() -> None:
            for _ in range(N // 3):
                assert client.post("/api/v1/requests", json=payload).status_code == 201

        def baseline() -> None:
            for _ in range(N // 3):
                assert client.get("/healthz").status_code == 200

        return timed(work), timed(baseline)


def _median_of(fn: Callable[[], None]) -> float:
    runs = []
    for _ in range(3):
        fn()
        runs.append(fn.elapsed)  # type: ignore[attr-defined]
    return statistics.median(runs)


def run_on(name: str, url: str, tmp: Path) -> list[tuple[str, str, float, float]]:
    db = make_engine(url)
    migrate(db)
    rt = fresh_runtime(db, tmp)
    rows = []
    for bench_name, fn in (
        ("decision", bench_decision),
        ("sweep", bench_sweep),
        ("intake", bench_intake),
    ):
        work, base = fn(rt)
        rows.append((name, bench_name, work, base))
        print(
            f"{name:10} {bench_name:9} {work:.3f}s vs baseline {base:.3f}s "
            f"= {work / base:.1f}x (target <= {TARGETS[bench_name]}x)",
            file=sys.stderr,
        )
    db.dispose()
    return rows


def main() -> int:
    sys.path.insert(0, str(ROOT))
    from tests.services import ServiceUnavailable
    from tests.services.postgres import PostgresCluster

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        rows += run_on("SQLite", f"sqlite:///{tmp}/bench.sqlite3", Path(tmp))
        try:
            with PostgresCluster() as cluster:
                rows += run_on("PostgreSQL", cluster.create_database("bench"), Path(tmp))
        except ServiceUnavailable as exc:
            print(f"PostgreSQL skipped: {exc.reason}", file=sys.stderr)
    failed = [r for r in rows if r[2] / r[3] > TARGETS[r[1]]]
    lines = [
        "# Benchmarks",
        "",
        f"Written by `make bench` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {N} requests per "
        "run, median of 3 runs. Each figure is a ratio to a baseline measured in the same run on "
        "the same database (see `bench/__main__.py` for what each baseline is).",
        "",
        "| database | benchmark | work (s) | baseline (s) | ratio | target | per item (ms) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, bench_name, work, base in rows:
        items = N // 3 if bench_name == "intake" else N
        mark = "ok" if work / base <= TARGETS[bench_name] else "MISSED"
        lines.append(
            f"| {name} | {bench_name} | {work:.3f} | {base:.3f} | {work / base:.1f}x | "
            f"<= {TARGETS[bench_name]}x ({mark}) | {1000 * work / items:.2f} |"
        )
    (ROOT / "docs" / "benchmarks.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("wrote docs/benchmarks.md", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
