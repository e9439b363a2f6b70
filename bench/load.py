"""Closed-loop HTTP load with Debian's ``wrk`` (``apt-get install wrk``), and the servers it drives.

``wrk`` keeps ``c`` connections busy for the cell's duration; the Lua scripts below choose each
call. A decision script takes each request id once (refuse), or verifies an id and then fulfils
it when the verification's answer comes back, so no call is ever made out of order.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

CREATE_LUA = """
wrk.method = "POST"
wrk.path = "/api/v1/requests"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"type":"correction","name":"Bench Mark","email":"bench@example.jp",' ..
  '"details":"benchmark request, please correct my address"}'
"""

_IDS_LUA = """
local ids = {}
for line in io.lines(os.getenv("BENCH_IDS")) do ids[#ids + 1] = line end
local next_id = 0
local headers = {["Content-Type"] = "application/json",
                 ["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN")}
local function fresh()
  next_id = next_id + 1
  return ids[next_id] or ids[#ids]
end
local function transition(id, body)
  return wrk.format("POST", "/api/v1/requests/" .. id .. "/transitions", headers, body)
end
"""

REFUSE_LUA = (
    _IDS_LUA
    + """
request = function()
  return transition(fresh(), '{"trigger":"refuse","reason_code":"PROC_ID_UNVERIFIED",' ..
    '"explanation":"We could not confirm your identity from the documents sent."}')
end
"""
)

VERIFY_FULFIL_LUA = (
    _IDS_LUA
    + """
local verified = {}
request = function()
  local id = table.remove(verified)
  if id then
    return transition(id, '{"trigger":"fulfill","summary":"Corrected as asked."}')
  end
  return transition(fresh(), '{"trigger":"verify_identity","method":"in_person",' ..
    '"evidence":"driving licence seen at the counter"}')
end
response = function(status, headers, body)
  if status == 200 and string.find(body, '"state":"identity_verified"', 1, true) then
    verified[#verified + 1] = string.match(body, '"id":"(%x+)"')
  end
end
"""
)


@dataclass
class Cell:
    """One measurement: a target at a concurrency for a duration."""

    calls: int
    seconds: float
    per_second: float
    p50_ms: float
    p99_ms: float
    failed: int

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def run_wrk(
    url: str, script: str, connections: int, seconds: float, env: dict[str, str] | None = None
) -> Cell:
    """``wrk`` against ``url`` with a Lua ``script``; failures are non-2xx answers and socket
    errors."""
    workdir = Path(os.environ.get("TMPDIR", "/tmp"))
    path = workdir / f"bench-{os.getpid()}-{abs(hash(script))}.lua"
    path.write_text(script, encoding="utf-8")
    try:
        out = subprocess.run(
            [
                "wrk",
                "-t1",
                f"-c{connections}",
                f"-d{max(1, round(seconds))}s",
                "--latency",
                "--timeout",
                "10s",
                "-s",
                str(path),
                url,
            ],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, **(env or {})},
        ).stdout
    finally:
        path.unlink(missing_ok=True)
    summary = re.search(r"(\d+) requests in ([\d.]+)(ms|s|m)\b", out)
    if summary is None:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    calls, took, unit = summary.groups()
    seconds_taken = float(took) * {"ms": 0.001, "s": 1.0, "m": 60.0}[unit]
    percentile: dict[str, float] = {}
    for pct, value, unit in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M):
        percentile[pct] = _ms(value, unit)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    )
    failed = int(non_2xx.group(1)) if non_2xx else 0
    if socket_errors:
        failed += sum(int(n) for n in socket_errors.groups())
    return Cell(
        calls=int(calls),
        seconds=seconds_taken,
        per_second=int(calls) / seconds_taken,
        p50_ms=percentile.get("50", 0.0),
        p99_ms=percentile.get("99", 0.0),
        failed=failed,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_kib(pid: int) -> int:
    """Resident size of ``pid`` and its children (a ``--workers`` parent and its workers)."""
    total = 0
    pids = [pid]
    with contextlib.suppress(OSError):
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(c) for c in children]
    for p in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


@contextlib.contextmanager
def serving(
    argv: list[str], env: dict[str, str], port: int, log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """Run a server until the block ends; ready once ``/healthz`` answers."""
    with log.open("ab") as out:
        process = subprocess.Popen(
            argv, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 90
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{argv[0]} exited {process.returncode}; see {log}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{argv} did not answer /healthz; see {log}") from None
                time.sleep(0.05)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class MixedCell:
    """The paced mixed load: every call's latency by kind, and what failed."""

    calls: int
    seconds: float
    offered_per_second: float
    p50_ms: float
    p99_ms: float
    p99_by_kind_ms: dict[str, float]
    failed: int
    failures: list[str]

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))] if ordered else 0.0


def paced_mixed_load(
    url: str, token: str, clients: int, seconds: float, period: float
) -> MixedCell:
    """``clients`` concurrent clients, each making one call every ``period`` seconds (from a
    random phase, so they do not march in step): a quarter are handlers reading the queue, the
    rest file a request and, on their next turn, refuse it with a reason. Latency is measured
    from each call's scheduled time, so a server that falls behind is charged for the wait
    (no coordinated omission)."""
    import asyncio
    import random

    import httpx

    latencies: dict[str, list[float]] = {"intake": [], "decision": [], "read": []}
    failures: list[str] = []
    auth = {"Authorization": f"Bearer {token}"}
    refusal = {
        "trigger": "refuse",
        "reason_code": "PROC_ID_UNVERIFIED",
        "explanation": "We could not confirm your identity from the documents sent.",
    }

    async def client(n: int, http: httpx.AsyncClient, start: float) -> None:
        due = start + random.uniform(0, period)
        pending: str | None = None
        i = 0
        while due < start + seconds:
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            i += 1
            if n % 4 == 0:
                kind, call = "read", http.get("/api/v1/requests?limit=20", headers=auth)
            elif pending is None:
                body = {
                    "type": "correction",
                    "name": "Bench Mark",
                    "email": f"mixed{n}-{i}@example.jp",
                    "details": "benchmark request, please correct my address",
                }
                kind, call = "intake", http.post("/api/v1/requests", json=body)
            else:
                path = f"/api/v1/requests/{pending}/transitions"
                kind, call = "decision", http.post(path, json=refusal, headers=auth)
            try:
                response = await call
                ok = response.is_success
                problem = f"{kind} {response.status_code}"
            except httpx.HTTPError as exc:
                ok, problem = False, f"{kind} {type(exc).__name__}"
            latencies[kind].append(time.monotonic() - due)
            if not ok:
                failures.append(problem)
            elif kind == "intake":
                pending = response.json()["id"]
            elif kind == "decision":
                pending = None
            due += period

    async def run() -> None:
        limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
        async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as http:
            start = time.monotonic()
            await asyncio.gather(*(client(n, http, start) for n in range(clients)))

    began = time.monotonic()
    asyncio.run(run())
    took = time.monotonic() - began
    every = [x for values in latencies.values() for x in values]
    return MixedCell(
        calls=len(every),
        seconds=took,
        offered_per_second=clients / period,
        p50_ms=_percentile(every, 50) * 1000,
        p99_ms=_percentile(every, 99) * 1000,
        p99_by_kind_ms={k: _percentile(v, 99) * 1000 for k, v in latencies.items()},
        failed=len(failures),
        failures=sorted(set(failures))[:10],
    )


@contextlib.contextmanager
def smtp_sink() -> Iterator[int]:
    """aiosmtpd in a process of its own, accepting every message and keeping none; yields its
    port once it answers."""
    import sys

    port = free_port()
    argv = [sys.executable, "-m", "aiosmtpd", "-n", "-c", "aiosmtpd.handlers.Sink"]
    process = subprocess.Popen([*argv, "-l", f"127.0.0.1:{port}"])
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                    if s.recv(64).startswith(b"220"):
                        break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("aiosmtpd did not start") from None
                time.sleep(0.1)
        yield port
    finally:
        process.terminate()
        process.wait(10)
