"""Experiment: veo-batch's overhead when submitting, against a plain asyncio script.

No rate limit: the mock accepts everything, VEO_RATE is unset. 10,000 rows
(`--overhead-rows`), the same JSON Lines file for every tool:

- the baseline script (bench/submitting/script_baseline.py): one process, one
  `httpx.AsyncClient`, 4 and then 8 requests in flight. The faster concurrency is "the
  script";
- distributed veo-batch: PostgreSQL, Redis, two `veo-batch worker -c N` processes (N from
  `--overhead-concurrency`, several values are each measured; by default the worker's own
  default, one process per CPU), `veo-batch scheduler`, as bench/submitting/distributed.py
  runs them. Timed from the scheduler's "scheduler running" line (the workers are ready
  before) to every row having its task in the database (polled every 50 ms). Compared with
  the script's own clock;
- embedded veo-batch: `veo-batch run FILE` (its defaults) on a fresh SQLite file, sending to
  the same kind of mock through VEO_API_BASE/VEO_API_KEY (not `--mock`). Timed from spawn to
  exit, so it includes loading and checking the file, migrating SQLite and exporting the
  results CSV; compared with the script timed from spawn to exit.

Before this part, 50 requests are sent one after another on one connection to an idle mock and
timed: an answer slower than 10 ms is a stall (as when the mock wrote headers and body in two
writes with Nagle's algorithm on: ~43 ms each), which bounds every tool at requests in flight ÷
that time, and the table says so. For each run the CPU time of the mock (% of one core: near
100% means the mock is the bottleneck) and how busy the whole machine was (both cores,
PostgreSQL and Redis included) are reported, and the CPU time per row and peak memory of each
process group (bench/submitting/overhead_report.py says how they are read).

The script and `run` exit first: their CPU is the rusage `os.wait4` gives once reaped. Their
own peak RSS from that rusage (`ru_maxrss`), which Linux starts at this script's peak (the
child begins as a copy of it), is in the JSON with that floor next to it.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path
from typing import Any, Final

import httpx

from bench.harness.processes import (
    Child,
    Children,
    base_env,
    problems_of,
    reap,
    veo_batch,
)
from bench.harness.procfs import own_peak_rss_mib
from bench.harness.resources import CpuClock, tree_of
from bench.harness.services import Mock
from bench.submitting.config import IMAGE, KEY, MOCK_COUNTERS, WORKERS, Setup, start_mock
from bench.submitting.distributed import check_all_submitted, run_distributed
from veobatch.concurrency import RUN_CONCURRENCY, worker_processes
from veobatch.provider.relay import SUBMIT_PATH

DEFAULT_OVERHEAD_CONCURRENCY: Final = (worker_processes(),)  # the worker's own default
EMBEDDED_CONCURRENCY: Final = RUN_CONCURRENCY  # `veo-batch run`'s default: no flag given
LATENCY_PROBES: Final = 50  # requests that time the mock's answer before the overhead part
STALL_MS: Final = 10.0  # an answer slower than this from an idle local mock is a stall


def probe_latency(children: Children) -> dict[str, float]:
    """Time LATENCY_PROBES requests, one after another on one connection, to a fresh mock: its
    answer time with nothing else running (a stall shows here, see overhead_table)."""
    mock = start_mock(children, "latency-mock")
    seconds = []
    try:
        headers = {"Authorization": f"Bearer {KEY}"}
        with httpx.Client(base_url=mock.url, headers=headers, timeout=10) as client:
            for n in range(LATENCY_PROBES + 1):
                payload = {"prompt": f"probe {n}", "model": "veo3.1", "images": [IMAGE]}
                started = time.perf_counter()
                client.post(SUBMIT_PATH, json=payload).raise_for_status()
                seconds.append(time.perf_counter() - started)
    finally:
        children.stop(mock.child)
    ordered = sorted(seconds[1:])  # the first one also opens the connection
    return {
        "median_ms": 1000 * ordered[len(ordered) // 2],
        "p90_ms": 1000 * ordered[int(len(ordered) * 0.9)],
    }


def run_timed(
    children: Children,
    name: str,
    argv: Sequence[str],
    env: dict[str, str],
    mock: Mock,
    rows: int,
    timeout: float,
) -> tuple[Child, float, dict[str, Any]]:
    """Run one child to its end: the child, its wall time from spawn to exit, and the CPU time
    and peak RSS of it (CPU from its rusage once reaped, RSS sampled over its process tree), of
    the mock and of the machine meanwhile. Its rusage's own peak RSS is added apart, with the
    floor Linux gives it (this script's peak: the child starts as a copy of it)."""
    with CpuClock({"mock": tree_of(mock.child)}) as clock:
        started = time.monotonic()
        child = children.spawn(name, argv, env)
        clock.watch(name, tree_of(child))
        usage = reap(child, timeout)
        wall = time.monotonic() - started
        clock.spent[name] = usage.ru_utime + usage.ru_stime
        cpu = clock.stop(rows)
    cpu["rusage_peak_rss_mib"] = {name: usage.ru_maxrss / 1024}
    cpu["rusage_peak_rss_floor_mib"] = own_peak_rss_mib()
    return child, wall, cpu


def overhead_distributed(
    children: Children, work: Path, jobs: Path, rows: int, concurrency: int, setup: Setup
) -> dict[str, Any]:
    print(
        f"overhead: veo-batch distributed, {rows:,} rows, {WORKERS} workers -c {concurrency} ...",
        flush=True,
    )
    name = f"overhead-c{concurrency}"
    mock = start_mock(children, f"{name}-mock")
    try:
        result = run_distributed(
            children,
            work,
            name,
            jobs,
            rows,
            mock,
            setup,
            rate_setting=None,
            concurrency=concurrency,
            timeout=120 + rows / 20,
        )
    finally:
        children.stop(mock.child)
    result["wrong"] = check_all_submitted(result, rows)
    if result["database"]["attempts"] != rows:
        result["wrong"].append(f"{result['database']['attempts']:,} attempts for {rows:,} rows")
    return result


def overhead_embedded(children: Children, work: Path, jobs: Path, rows: int) -> dict[str, Any]:
    print(
        f"overhead: veo-batch run (embedded, SQLite), {rows:,} rows, --concurrency "
        f"{EMBEDDED_CONCURRENCY} ...",
        flush=True,
    )
    database = work / "embedded.db"
    mock = start_mock(children, "embedded-mock")
    try:
        env = base_env(
            VEO_DATABASE_URL=f"sqlite:///{database}", VEO_API_BASE=mock.url, VEO_API_KEY=KEY
        )
        argv = veo_batch(
            "run",
            str(jobs),
            "--batch",
            "overhead",
            "--output",
            str(work / "embedded.results.csv"),
            "--no-wait",  # submitting only
        )
        child, wall, cpu = run_timed(children, "run", argv, env, mock, rows, 120 + rows / 20)
        stats = mock.facts(MOCK_COUNTERS)
    finally:
        children.stop(mock.child)
    with closing(sqlite3.connect(database)) as conn:
        statuses = {
            str(s): int(n) for s, n in conn.execute("SELECT status, count(*) FROM jobs GROUP BY 1")
        }
    code = child.proc.returncode
    result: dict[str, Any] = {
        "rows": rows,
        "concurrency": EMBEDDED_CONCURRENCY,
        "seconds": wall,
        "exit_code": code,
        "output": child.output().strip()[-3000:],
        "mock": stats,
        "statuses": statuses,
        "cpu": cpu,
        "problems": problems_of([child]),
    }
    result["wrong"] = check_all_submitted(result, rows)
    if code != 0:
        result["wrong"].append(f"`veo-batch run` exited with {code}")
    return result
