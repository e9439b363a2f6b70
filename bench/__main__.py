"""`make bench`: dsrflow against the bare floor, side by side in one run; writes docs/benchmarks.md
and docs/benchmarks.json. ``QUICK=1`` runs every cell briefly (under a minute in all), to check
the harness; only a full run on a quiet machine gives figures worth writing down.

Every target is a ratio to a baseline measured in the same run on the same machine and database,
since these machines are shared and noisy:

- creates, decisions: dsrflow served by ``dsrflow serve`` against the bare floor
  (``bench/floor.py``: FastAPI + SQLModel, one validated insert per call) under the same closed
  loop (``wrk``, one process each, ``c`` connections), SQLite and PostgreSQL, c=8 and c=32;
- workers: ``dsrflow serve --workers 2`` against one worker, PostgreSQL, c=32;
- memory: the resident size of ``serve`` after the first tenth of the creates and at the end;
- sweeps: the queuing pass with N requests in the table and M newly due, then a pass with
  nothing new, then the next queuing pass over M more (absolute targets, with the time to read
  the M rows as the baseline);
- mail intake: ``dsrflow ingest-email`` start-up (one message), and the batch form over a
  Maildir (messages per second);
- outbox: one flush to a local aiosmtpd (messages per second, one connection reused).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Engine

from bench.load import (
    CREATE_LUA,
    REFUSE_LUA,
    VERIFY_FULFIL_LUA,
    Cell,
    free_port,
    paced_mixed_load,
    rss_kib,
    run_wrk,
    serving,
    smtp_sink,
    wrk_available,
)

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
QUICK = os.environ.get("QUICK", "") not in ("", "0")
SECONDS = 1.0 if QUICK else 20.0
CONCURRENCY = (8, 32)
MIXED_CLIENTS = 64
MEMORY_CREATES = 400 if QUICK else 100_000
SWEEP_TABLE = int(os.environ.get("SWEEP_TABLE", 20_000 if QUICK else 1_000_000))
SWEEP_DUE = int(os.environ.get("SWEEP_DUE", 1_000 if QUICK else 10_000))
INGEST_MESSAGES = 50 if QUICK else 1_000
OUTBOX_MESSAGES = 200 if QUICK else 2_000


@dataclass
class Result:
    """One figure and its target: ``value`` against ``baseline`` (a ratio) or against a fixed
    ``limit``; ``higher`` says which way is better."""

    name: str
    value: float
    unit: str
    target: str
    met: bool
    baseline: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- HTTP cells


def _env(url: str, data_dir: Path) -> dict[str, str]:
    return {
        "DSRFLOW_DATABASE_URL": url,
        "DSRFLOW_DATA_DIR": str(data_dir),
        "DSRFLOW_WORKFLOWS_DIR": str(ROOT / "workflows"),
        "DSRFLOW_RATE_LIMIT_PER_MINUTE": str(10**9),
        "PYTHONPATH": str(ROOT),
    }


@contextmanager
def floor_server(url: str, data_dir: Path) -> Iterator[str]:
    port = free_port()
    argv = [
        str(BIN / "uvicorn"),
        "--factory",
        "bench.floor:create_app",
        "--port",
        str(port),
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    with serving(argv, _env(url, data_dir), port, data_dir / "floor.log"):
        yield f"http://127.0.0.1:{port}"


@contextmanager
def dsrflow_server(
    url: str, data_dir: Path, workers: int = 1, env: dict[str, str] | None = None
) -> Iterator[tuple[str, int]]:
    port = free_port()
    argv = [str(BIN / "dsrflow"), "serve", "--no-scheduler", "--port", str(port)]
    if workers > 1:
        argv += ["--workers", str(workers)]
    server_env = {**_env(url, data_dir), **(env or {})}
    with serving(argv, server_env, port, data_dir / "dsrflow.log") as process:
        yield f"http://127.0.0.1:{port}", process.pid


def handler_token(db: Engine) -> str:
    """A handler's token, added in this process (as `dsrflow handlers add` would)."""
    from sqlmodel import Session

    from dsrflow.auth.service import add_handler

    with Session(db) as session:
        _, token = add_handler(session, "Bench", "bench@example.jp", "handler")
        session.commit()
    return token


def received_ids(db: Engine, exclude: set[str]) -> list[str]:
    with db.connect() as connection:
        rows = connection.execute(text("SELECT id FROM requests WHERE state = 'received'"))
        return [r for (r,) in rows if r not in exclude]


def http_cells(name: str, url: str, floor_url: str, data_dir: Path, db: Engine) -> list[Result]:
    results: list[Result] = []
    floor: dict[int, Cell] = {}
    with floor_server(floor_url, data_dir) as base:
        for c in CONCURRENCY:
            floor[c] = run_wrk(base, CREATE_LUA, c, SECONDS)
            log(f"{name} floor c={c}: {floor[c]}")
    token = handler_token(db)
    with dsrflow_server(url, data_dir) as (server, _):
        for c in CONCURRENCY:
            cell = run_wrk(server, CREATE_LUA, c, SECONDS)
            log(f"{name} creates c={c}: {cell}")
            ratio = cell.per_second / floor[c].per_second
            p99_ok = c != 8 or cell.p99_ms <= 50
            results.append(
                Result(
                    f"{name}: creates/s, c={c}",
                    cell.per_second,
                    "calls/s",
                    ">= 0.5x floor" + (", p99 <= 50 ms" if c == 8 else "") + ", no failed call",
                    ratio >= 0.5 and p99_ok and cell.failed == 0,
                    floor[c].per_second,
                    {"dsrflow": cell.as_dict(), "floor": floor[c].as_dict(), "ratio": ratio},
                )
            )
        used: set[str] = set()
        for label, script, per_id in (
            ("refuse with a reason", REFUSE_LUA, 1),
            ("verify then fulfil", VERIFY_FULFIL_LUA, 2),
        ):
            needed = int(floor[8].per_second * SECONDS * 1.5 / per_id) + 50
            ids = received_ids(db, used)
            while len(ids) < needed:
                run_wrk(server, CREATE_LUA, 8, SECONDS)
                ids = received_ids(db, used)
            ids = ids[:needed]
            used.update(ids)
            id_file = data_dir / "ids.txt"
            id_file.write_text("\n".join(ids) + "\n", encoding="utf-8")
            env = {"BENCH_IDS": str(id_file), "BENCH_TOKEN": token}
            cell = run_wrk(server, script, 8, SECONDS, env)
            log(f"{name} {label} c=8: {cell}")
            ratio = cell.per_second / floor[8].per_second
            results.append(
                Result(
                    f"{name}: decisions/s ({label}), c=8",
                    cell.per_second,
                    "calls/s",
                    ">= 0.5x floor creates, no failed call",
                    ratio >= 0.5 and cell.failed == 0,
                    floor[8].per_second,
                    {"dsrflow": cell.as_dict(), "ratio": ratio},
                )
            )
    return results


def workers_cell(url: str, data_dir: Path, one: Result) -> Result:
    """``--workers 2`` against the one-worker creates at c=32 measured just before it."""
    cells = {1: Cell(**one.detail["dsrflow"])}
    with dsrflow_server(url, data_dir, 2) as (server, _):
        run_wrk(server, CREATE_LUA, 32, 1)  # warm every worker
        cells[2] = run_wrk(server, CREATE_LUA, 32, SECONDS)
        log(f"PostgreSQL creates, 2 workers, c=32: {cells[2]}")
    ratio = cells[2].per_second / cells[1].per_second
    return Result(
        "PostgreSQL: serve --workers 2 vs 1, creates/s, c=32",
        cells[2].per_second,
        "calls/s",
        ">= 1.6x one worker",
        ratio >= 1.6,
        cells[1].per_second,
        {"one": cells[1].as_dict(), "two": cells[2].as_dict(), "ratio": ratio},
    )


def synchronous_cell(url: str, data_dir: Path, full: Result) -> Result:
    """What ``synchronous=FULL`` (the default: each commit on disk before it is acknowledged)
    costs beside ``NORMAL``: the same creates at c=8 on a fresh database with ``NORMAL``."""
    with dsrflow_server(url, data_dir, env={"DSRFLOW_SQLITE_SYNCHRONOUS": "NORMAL"}) as (
        server,
        _,
    ):
        normal = run_wrk(server, CREATE_LUA, 8, SECONDS)
    log(f"SQLite creates c=8, synchronous=NORMAL: {normal}")
    return Result(
        "SQLite: creates/s c=8 with synchronous=FULL (default), beside NORMAL",
        full.value,
        "calls/s",
        "measured: the cost of durable commits",
        True,
        normal.per_second,
        {"full": full.detail["dsrflow"], "normal": normal.as_dict()},
    )


def mixed_cell(url: str, data_dir: Path) -> Result:
    """Issue 12's SQLite target: 64 concurrent clients mixing intake, decisions and handler
    reads, each paced at one call per second, with no error and a p99 of 200 ms or less."""
    from dsrflow.db import make_engine, migrate

    db = make_engine(url)
    migrate(db)
    token = handler_token(db)
    with dsrflow_server(url, data_dir) as (server, _):
        cell = paced_mixed_load(server, token, MIXED_CLIENTS, 3.0 if QUICK else SECONDS, 1.0)
    log(f"SQLite mixed load, {MIXED_CLIENTS} paced clients: {cell}")
    return Result(
        f"SQLite: {MIXED_CLIENTS} clients mixing intake, decisions and reads, 1 call/s each",
        cell.p99_ms,
        "ms p99",
        "0 errors, p99 <= 200 ms",
        cell.failed == 0 and cell.p99_ms <= 200,
        detail={"load": cell.as_dict()},
    )


def memory_cell(url: str, data_dir: Path) -> Result:
    samples: list[tuple[int, int]] = []
    with dsrflow_server(url, data_dir) as (server, pid):
        done = 0
        while done < MEMORY_CREATES:
            cell = run_wrk(server, CREATE_LUA, 8, 1 if QUICK else 10)
            done += cell.calls
            samples.append((done, rss_kib(pid)))
    first = next(rss for count, rss in samples if count >= MEMORY_CREATES // 10)
    last = samples[-1][1]
    growth = (last - first) / first
    log(f"memory: {samples}")
    return Result(
        f"SQLite: serve RSS over {samples[-1][0]:,} creates",
        last / 1024,
        "MiB",
        "within +-10 % of the RSS after the first tenth",
        abs(growth) <= 0.10,
        first / 1024,
        {"samples_kib": samples, "growth": growth},
    )


# ----------------------------------------------------------------------------- in-process cells


def _runtime(db: Engine, data_dir: Path) -> Any:
    from dsrflow.config import Settings
    from dsrflow.runtime import Runtime

    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=data_dir,
        workflows_dir=ROOT / "workflows",
    )
    return Runtime.load(settings, db=db)


def _bulk_requests(
    db: Engine, count: int, start: int, state: str, received: datetime, next_sweep: datetime
) -> None:
    """``count`` requests straight into the table (the sweep reads nothing else of them)."""
    from dsrflow.db import UTCDateTime

    bind = UTCDateTime().process_bind_param
    dialect = db.dialect
    values = {
        "state": state,
        "received": bind(received, dialect),
        "due": bind(received + timedelta(days=14), dialect),
        "next": bind(next_sweep, dialect),
        "start": start,
        "stop": start + count - 1,
    }
    numbers = (
        "generate_series(:start, :stop) AS n"
        if dialect.name == "postgresql"
        else "(WITH RECURSIVE s(n) AS (SELECT :start UNION ALL SELECT n + 1 FROM s "
        "WHERE n < :stop) SELECT n FROM s)"
    )
    with db.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO requests (id, reference, type, state, version, channel, language, "
                "requester_name, requester_email, details, received_at, due_at, extension_days, "
                "status_token_hash, created_at, updated_at, next_sweep_at) "
                "SELECT printf('%032d', n), 'DSR-2026-' || n, 'correction', :state, 1, 'api', "
                "'ja', 'Bench', 'b' || n || '@example.jp', 'bench', :received, :due, 0, "
                "printf('%064d', n), :received, :received, :next FROM " + numbers
            ).bindparams(**values)
            if dialect.name == "sqlite"
            else text(
                "INSERT INTO requests (id, reference, type, state, version, channel, language, "
                "requester_name, requester_email, details, received_at, due_at, extension_days, "
                "status_token_hash, created_at, updated_at, next_sweep_at) "
                "SELECT lpad(n::text, 32, '0'), 'DSR-2026-' || n, 'correction', :state, 1, "
                "'api', 'ja', 'Bench', 'b' || n || '@example.jp', 'bench', :received, :due, 0, "
                "lpad(n::text, 64, '0'), :received, :received, :next FROM " + numbers
            ).bindparams(**values)
        )
        if dialect.name == "postgresql":
            connection.execute(text("ANALYZE requests"))


def sweep_cells(name: str, db: Engine, data_dir: Path) -> list[Result]:
    from dsrflow.deadlines.service import sweep
    from dsrflow.runtime import settle

    rt = _runtime(db, data_dir)
    settle()  # as `dsrflow scheduler` does once it has loaded everything
    now = datetime.now(UTC)
    log(f"{name}: seeding {SWEEP_TABLE:,} requests ({SWEEP_DUE:,} newly due)")
    _bulk_requests(
        db, SWEEP_TABLE - SWEEP_DUE, 1, "identity_verified", now, now + timedelta(days=30)
    )
    # The scheduler's process is warm when its sweep runs every minute: one pass with nothing
    # due first, so the figure is not the first query's mapper set-up.
    assert sweep(rt, now).queued == 0

    def newly_due(start: int) -> None:
        _bulk_requests(
            db,
            SWEEP_DUE,
            start,
            "identity_verified",
            now - timedelta(days=20),
            now - timedelta(minutes=1),
        )

    def queuing_sweep(at: datetime) -> tuple[float, int]:
        start = time.perf_counter()
        report = sweep(rt, at)
        seconds = time.perf_counter() - start
        assert report.errors == 0, report
        assert report.queued >= SWEEP_DUE, report
        return seconds, report.queued

    newly_due(SWEEP_TABLE - SWEEP_DUE + 1)
    start = time.perf_counter()
    with db.connect() as connection:
        read = connection.execute(
            text("SELECT * FROM requests WHERE next_sweep_at <= :now"),
            {"now": now.replace(tzinfo=None) if db.dialect.name == "sqlite" else now},
        ).all()
    baseline = time.perf_counter() - start
    queuing, queued = queuing_sweep(now)
    start = time.perf_counter()
    again = sweep(rt, now + timedelta(seconds=60))
    idle = time.perf_counter() - start
    assert again.queued == 0, again
    with db.connect() as connection:
        mails = connection.execute(text("SELECT count(*) FROM outbox")).scalar_one()
    # The next day's sweep meets a reminders table that has just grown by as many rows, which
    # autovacuum has not analyzed yet (a plan from stale statistics once made this pass 80 s).
    newly_due(SWEEP_TABLE + 1)
    following, _ = queuing_sweep(now + timedelta(seconds=120))
    log(
        f"{name} sweep: queue {queuing:.3f}s ({queued} reminders, {mails} mails), "
        f"idle {idle:.3f}s, the next that queues {following:.3f}s, "
        f"reading the due rows {baseline:.3f}s ({len(read)})"
    )
    return [
        Result(
            f"{name}: sweep that queues, {SWEEP_DUE:,} newly due in {SWEEP_TABLE:,}",
            queuing,
            "s",
            "< 1 s",
            queuing < 1.0,
            baseline,
            {"reminders": queued, "mails": mails},
        ),
        Result(
            f"{name}: sweep with nothing new, {SWEEP_TABLE:,} requests",
            idle,
            "s",
            "< 0.1 s",
            idle < 0.1,
        ),
        Result(
            f"{name}: the next sweep that queues, {SWEEP_DUE:,} more newly due",
            following,
            "s",
            "< 1 s",
            following < 1.0,
            baseline,
        ),
    ]


def outbox_cell(db: Engine, data_dir: Path, messages: int = OUTBOX_MESSAGES) -> Result:
    import asyncio

    from sqlmodel import Session

    from dsrflow.outbound_mail.dispatch import flush_outbox
    from dsrflow.outbound_mail.outbox import OutgoingMail, enqueue

    rt = _runtime(db, data_dir)
    with Session(db) as session:
        for i in range(messages):
            mail = OutgoingMail(
                f"bench:{i}", "bench", f"r{i}@example.jp", f"[DSR-2026-{i:06d}] 受付", "本文\n"
            )
            enqueue(session, mail, "example.jp", new_key=True)
        session.commit()
    # The SMTP server runs in its own process, as a real one does: in this process it would
    # share the interpreter with the dispatcher it is measuring.
    with smtp_sink() as port:
        rt.settings.smtp_host, rt.settings.smtp_port = "127.0.0.1", port
        start = time.perf_counter()
        report = asyncio.run(flush_outbox(db, rt.settings, rt.letters))
        took = time.perf_counter() - start
    rate = report.sent / took
    log(f"outbox: {report.sent} sent in {took:.2f}s = {rate:.0f}/s")
    return Result(
        "SQLite: outbox flush to a local aiosmtpd",
        rate,
        "messages/s",
        ">= 200/s",
        rate >= 200 and report.sent == messages,
        detail={"sent": report.sent, "seconds": took},
    )


def ingest_cells(url: str, data_dir: Path) -> list[Result]:
    env = {**os.environ, **_env(url, data_dir)}
    maildir = data_dir / "inbound"
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)

    def message(i: int) -> bytes:
        return (
            f"From: person{i}@example.jp\r\nTo: info@innovativeai.co.jp\r\n"
            f"Subject: =?utf-8?b?5YCL5Lq65oOF5aCx44Gu6ZaL56S6?=\r\n"
            f"Message-ID: <bench{i}@example.jp>\r\n"
            f"Date: {datetime.now(UTC):%a, %d %b %Y %H:%M:%S +0000}\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n\r\n"
            "私の個人情報の開示を請求します。\r\n".encode()
        )

    for i in range(INGEST_MESSAGES):
        (maildir / "new" / f"{i}.bench").write_bytes(message(i))

    def one_message(i: int) -> float:
        # A new message each time (the same one again would time a duplicate's short path),
        # none of those of the batch.
        one = data_dir / f"single{i}.eml"
        one.write_bytes(message(INGEST_MESSAGES + i))
        start = time.perf_counter()
        subprocess.run(
            [str(BIN / "dsrflow"), "ingest-email", str(one)],
            env=env,
            check=True,
            capture_output=True,
        )
        return time.perf_counter() - start

    # As an MTA's pipe runs it: the scheduler is running, and records the message handed to
    # it over DATA_DIR/run/intake.sock (docs/mail-intake.md).
    scheduler = subprocess.Popen(
        [str(BIN / "dsrflow"), "scheduler"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        socket_path = data_dir / "run" / "intake.sock"
        deadline = time.monotonic() + 60
        while not socket_path.exists():
            if time.monotonic() > deadline or scheduler.poll() is not None:
                raise RuntimeError("dsrflow scheduler did not open its intake socket")
            time.sleep(0.1)
        startup = statistics.median(one_message(i) for i in range(1 if QUICK else 3))
    finally:
        scheduler.terminate()
        scheduler.wait(60)
    # No service: the command records the message itself (the fallback).
    alone = statistics.median(one_message(10 + i) for i in range(1 if QUICK else 3))
    start = time.perf_counter()
    subprocess.run(
        [str(BIN / "dsrflow"), "ingest-email", "--maildir", str(maildir)],
        env=env,
        check=True,
        capture_output=True,
    )
    batch = time.perf_counter() - start
    rate = INGEST_MESSAGES / batch
    log(
        f"ingest: one message {startup:.3f}s (no service: {alone:.3f}s); "
        f"batch {INGEST_MESSAGES} in {batch:.2f}s"
    )
    return [
        Result(
            "SQLite: ingest-email, one message (start-up included)",
            startup,
            "s",
            "<= 0.3 s",
            startup <= 0.3,
            detail={"no_service_seconds": round(alone, 3)},
        ),
        Result(
            f"SQLite: ingest-email --maildir, {INGEST_MESSAGES} messages",
            rate,
            "messages/s",
            ">= 200/s",
            rate >= 200,
        ),
    ]


# ----------------------------------------------------------------------------- the run


def on_backend(name: str, make_url: Callable[[str], str], tmp: Path) -> list[Result]:
    from dsrflow.db import make_engine, migrate

    data_dir = tmp / name.lower()
    data_dir.mkdir()
    results: list[Result] = []
    url = make_url("dsrflow")
    db = make_engine(url)
    migrate(db)
    if wrk_available():
        results += http_cells(name, url, make_url("floor"), data_dir, db)
        if name == "PostgreSQL":
            one = next(r for r in results if r.name == "PostgreSQL: creates/s, c=32")
            results.append(workers_cell(url, data_dir, one))
        else:
            full = next(r for r in results if r.name == "SQLite: creates/s, c=8")
            results.append(synchronous_cell(make_url("normal"), data_dir, full))
            results.append(mixed_cell(make_url("mixed"), data_dir))
            results.append(memory_cell(make_url("memory"), data_dir))
    else:
        log("wrk is not installed (apt-get install wrk): HTTP cells skipped")
    sweep_db = make_engine(make_url("sweep"))
    migrate(sweep_db)
    results += sweep_cells(name, sweep_db, data_dir)
    if name == "SQLite":
        outbox_db = make_engine(make_url("outbox"))
        migrate(outbox_db)
        results.append(outbox_cell(outbox_db, data_dir))
        ingest_db = make_engine(make_url("ingest"))
        migrate(ingest_db)  # ingest-email does not migrate
        results += ingest_cells(make_url("ingest"), data_dir)
    return results


def machine() -> dict[str, Any]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    load = os.getloadavg()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
        "load_average_at_start": [round(x, 2) for x in load],
        "quick": QUICK,
        "seconds_per_cell": SECONDS,
    }


def write(results: list[Result], about: dict[str, Any], took: float) -> None:
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M")
    (ROOT / "docs" / "benchmarks.json").write_text(
        json.dumps(
            {
                "written": stamp,
                "machine": about,
                "seconds": round(took, 1),
                "results": [r.__dict__ for r in results],
            },
            indent=2,
            ensure_ascii=False,
        )
        + "\n",
        encoding="utf-8",
    )
    lines = [
        "# Benchmarks",
        "",
        f"Written by `{'QUICK=1 ' if QUICK else ''}make bench` on {stamp} UTC in {took:.0f} s "
        f"(figures in `docs/benchmarks.json`). Machine: {about['cpu']}, {about['cores']} cores, "
        f"Python {about['python']}, {about['system']}; load average at start "
        f"{', '.join(map(str, about['load_average_at_start']))}."
        + (" **QUICK run: a check of the harness, not figures to quote.**" if QUICK else ""),
        "",
        "How: `bench/__main__.py`. Each HTTP cell is `wrk -t1 -cC -dDs --latency` "
        f"({SECONDS:.0f} s) against one server process (`dsrflow serve --no-scheduler`, or "
        "`uvicorn --factory bench.floor:create_app` for the floor), SQLite (WAL) and a "
        "throwaway PostgreSQL 15 cluster (as the tests start one). The floor is a bare "
        "FastAPI + SQLModel app that validates a similar body and inserts one row; a dsrflow "
        "create also takes a reference number and writes the first audit event, a verification "
        "token and three outbox rows. The mixed-load cell is a Python client (`bench/load.py` "
        "`paced_mixed_load`): 64 clients, each one call a second, latency counted from each "
        "call's scheduled time. The outbox cell sends to an aiosmtpd sink in its own process.",
        "",
        "| figure | value | baseline | ratio | target | met |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        ratio = f"{r.value / r.baseline:.2f}x" if r.baseline else ""
        base = f"{r.baseline:,.3g}" if r.baseline is not None else ""
        p99 = r.detail.get("dsrflow", {}).get("p99_ms")
        value = f"{r.value:,.3g} {r.unit}" + (f" (p99 {p99:.0f} ms)" if p99 is not None else "")
        lines.append(
            f"| {r.name} | {value} | {base} | {ratio} | {r.target} | "
            f"{'yes' if r.met else '**no**'} |"
        )
    (ROOT / "docs" / "benchmarks.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    log("wrote docs/benchmarks.md and docs/benchmarks.json")


def sweep_only() -> int:
    """`python -m bench sweep`: the sweep cells alone, SQLite and PostgreSQL, printed (sizes from
    ``SWEEP_TABLE`` and ``SWEEP_DUE``); nothing written to docs/."""
    sys.path.insert(0, str(ROOT))
    from dsrflow.db import make_engine, migrate
    from tests.services import ServiceUnavailable
    from tests.services.postgres import PostgresCluster

    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="dsrflow-bench-") as tmp_name:
        tmp = Path(tmp_name)
        for name, make in (
            ("SQLite", lambda n: f"sqlite:///{tmp}/{n}.sqlite3"),
            ("PostgreSQL", None),
        ):
            try:
                with contextlib.ExitStack() as stack:
                    if make is None:
                        settings = {"shared_buffers": os.environ.get("PG_SHARED_BUFFERS", "128MB")}
                        cluster = stack.enter_context(PostgresCluster(settings=settings))
                        make = cluster.create_database
                    db = make_engine(make("sweep"))
                    migrate(db)
                    (tmp / name).mkdir()
                    results += sweep_cells(name, db, tmp / name)
            except ServiceUnavailable as exc:
                log(f"{name} skipped: {exc.reason}")
    for r in results:
        log(
            f"{r.name}: {r.value:.3f} {r.unit} (target {r.target}: {'met' if r.met else 'NOT met'})"
        )
    return 0 if all(r.met for r in results) else 1


def main() -> int:
    if sys.argv[1:] == ["sweep"]:
        return sweep_only()
    sys.path.insert(0, str(ROOT))
    from tests.services import ServiceUnavailable
    from tests.services.postgres import PostgresCluster

    started = time.perf_counter()
    about = machine()
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="dsrflow-bench-") as tmp_name:
        tmp = Path(tmp_name)
        results += on_backend("SQLite", lambda n: f"sqlite:///{tmp}/{n}.sqlite3", tmp)
        try:
            with PostgresCluster() as cluster:
                results += on_backend("PostgreSQL", cluster.create_database, tmp)
        except ServiceUnavailable as exc:
            log(f"PostgreSQL skipped: {exc.reason}")
    write(results, about, time.perf_counter() - started)
    return 0 if all(r.met for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
