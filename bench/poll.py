"""Benchmark: following tasks to their end, polls per task and the in-flight cap.

One batch (5,000 rows by default, `--rows`) whose tasks each take 30 s to generate
(`--task-seconds`) at the mock provider (`veo-batch mock-api --task-seconds S`, a fresh
subprocess for each measurement so its counters start at zero). Every measurement keeps at
most 1,000 tasks in flight (`--cap`). Measured, each from one run:

1. veo-batch, embedded: `veo-batch run FILE -c 8` (`--concurrency`) on a fresh SQLite file in
   a temporary directory, with the default pacing (first poll 10 s after the submission, then
   at the end the provider's progress points to, clamped to 5-30 s), `VEO_MAX_IN_FLIGHT` set
   to the cap and `VEO_RATE=300/s` (`--rate`; shared by submits and polls, high enough not to
   be the bottleneck: the least requests take a fifth of the lower bound below at that rate,
   and `--rate 1000/s` gave the same wall time to 0.3 s). Timed from spawning `run` to its
   exit, so loading the file, migrating SQLite and exporting the results count.
2. The baseline, a relay-client-style poller in this script: one `httpx.AsyncClient`, at most
   8 requests at once and at most `--cap` tasks in flight (an asyncio semaphore each); each row
   is POSTed, then its task is polled every 5 s (`--interval`, counted from the last answer;
   the first poll 5 s after the submission) until SUCCESS or FAILURE. No rate limit, no retry
   of a submission; a poll that fails is simply made again 5 s later. Timed on its own clock,
   from its start to the last task seen finished. With 30 s tasks, a multiple of 5 s, its
   sixth poll comes just after the end: the best case of a fixed interval for wall time (a
   task of another length waits half an interval on average for the poll that sees it).
3. veo-batch, distributed (`--skip-distributed` leaves it out; it takes about 3.5 minutes of
   the default run): PostgreSQL database `veobatch_bench3` (created, migrated before any clock
   starts, dropped at the end), Redis database 13 (flushed before and after), two `veo-batch
   worker -c 2` processes and `veo-batch scheduler` (default tick) with the same VEO_RATE and
   VEO_MAX_IN_FLIGHT, started and waited for (`ready.`, `scheduler running`); then `veo-batch
   run FILE` with VEO_REDIS_URL set, which loads the batch and follows it. Timed from spawning
   that `run` to its exit. The mock sees the cap as all these processes keep it together.

For each, from the mock's own counters (`GET /_mock/stats`, read once the run is over):

- tasks created (must equal the rows: nothing created twice, no prompt created more than once)
  and polls (GET of a task); polls per finished task; every request to the API (submits and
  polls; the mock counts no others here), against the least a perfect poller needs, one submit
  and one poll per task (2 * created), as a ratio;
- `peak_running`: the most tasks generating at once by the mock's clock (from creation to the
  end of generation), which is what a provider's concurrency cap counts, against the cap.

From the database (veo-batch) or the poller's own records (baseline): every row must end
succeeded or failed (checked, like created == rows: a run that misses a check makes this script
exit 1); polls per row as a histogram; the detection lag of each row, `finished_at -
submitted_at - task seconds` (both stamps are taken when an answer is recorded, so the lag is
how long a finished task waited for the poll that saw it, plus a few milliseconds); the span
from the first submission answered to the last task seen finished, and the cap's use, the mean
number of tasks generating over that span (created * task seconds ÷ span) ÷ the cap. Wall time
is compared with the lower bound of any poller under the cap, `ceil(rows / cap) * task
seconds` (waves of `cap` tasks, each as long as one task; the least requests ÷ VEO_RATE is
reported next to it). The CPU time of the poller (the `run` process, this process for the
baseline, workers, scheduler and `run` for the distributed run) is reported too.

A run that does not finish (no request reaches the mock for 60 s, or its deadline passes)
stops the benchmark. Every process this script starts gets a process group of its own and is
stopped (SIGTERM, then SIGKILL) when its part is over, on errors and on Ctrl-C too. The commit
and a hash of the working tree's changes are recorded at the start and checked again at the
end. Results: a table and `bench/out/poll-<time>.json`.

    python bench/poll.py                             # 5,000 rows, 30 s tasks, about 9 minutes
    python bench/poll.py --rows 300 --task-seconds 5 --cap 100
    python bench/poll.py --skip-distributed          # no PostgreSQL or Redis, about 6 minutes
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import re
import resource
import sqlite3
import statistics
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

import httpx
import psycopg
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo root: bench.common

from bench.common import (
    NOT_A_PROBLEM,
    BenchError,
    Child,
    Children,
    Mock,
    base_env,
    check_services,
    children_cpu,
    drop_database,
    flush_redis,
    git_state,
    machine_facts,
    note_code_change,
    print_problems,
    problems_of,
    recreate_database,
    run_quietly,
    veo_batch,
    workspace,
    write_jobs,
    write_json,
)
from veobatch.cli.output import table_text
from veobatch.errors import ConfigError
from veobatch.provider.client import SUBMIT_PATH
from veobatch.settings import Rate

DEFAULT_ROWS: Final = 5_000
DEFAULT_TASK_SECONDS: Final = 30.0
DEFAULT_CAP: Final = 1_000
DEFAULT_RATE: Final = "300/s"
DEFAULT_CONCURRENCY: Final = 8  # `veo-batch run -c`, and the baseline's requests at once
DEFAULT_INTERVAL: Final = 5.0  # the baseline's seconds between polls of a task
WORKERS: Final = 2  # `veo-batch worker` processes in the distributed run
WORKER_CONCURRENCY: Final = 2  # -c of each
KEY: Final = "mock-key"
REDIS_URL: Final = "redis://127.0.0.1:6379/13"
PG_NAME: Final = "veobatch_bench3"
PG_BENCH_DSN: Final = f"host=127.0.0.1 port=5432 user=postgres dbname={PG_NAME} connect_timeout=5"
PG_URL: Final = f"postgresql://postgres@127.0.0.1:5432/{PG_NAME}"
STALL_SECONDS: Final = 60.0  # no request reaches the mock for this long: the run is stuck
LOOK_SECONDS: Final = 5.0  # seconds between looks at the mock's counters while a run goes on
FINISHED: Final = ("succeeded", "failed")
NOT_A_PROBLEM_OR_REMOTE_ERROR: Final = re.compile(
    NOT_A_PROBLEM.pattern
    + r"|^errors: remote ×\d"  # `run`'s summary of tasks the mock failed (--failure-rate)
)
IMAGE: Final = "https://img.example.com/1.jpg"
MOCK_COUNTERS: Final = (
    "requests",
    "created",
    "polls",
    "peak_running",
    "rejected_429",
    "video_requests",
)
PROMPT: Final = "row {n}: a fox in snow at dusk, slow dolly in"


# ---------------------------------------------------------------------------------- processes


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# ---------------------------------------------------------------------------------- services


def start_mock(children: Children, name: str, args: argparse.Namespace) -> Mock:
    """A fresh mock provider whose tasks take --task-seconds and fail at --failure-rate."""
    return Mock.start(
        children,
        name,
        KEY,
        "--task-seconds",
        f"{args.task_seconds:g}",
        "--failure-rate",
        f"{args.failure_rate:g}",
    )


# ---------------------------------------------------------------------------------- figures


def bounds(args: argparse.Namespace) -> dict[str, float]:
    """The least wall time of any poller under the cap, and the least requests ÷ the rate."""
    waves = math.ceil(args.rows / args.cap)
    return {
        "waves": waves,
        "waves_seconds": waves * args.task_seconds,
        "rate_seconds": 2 * args.rows / args.rate_per_second,
    }


def deadline_of(args: argparse.Namespace) -> float:
    """Seconds a run may take before the benchmark gives up on it."""
    found = bounds(args)
    return 300 + 4 * (found["waves_seconds"] + found["rate_seconds"])


def quantile(values: Sequence[float], share: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(int(share * len(ordered)), len(ordered) - 1)]


@dataclass
class RowRecord:
    """One row at the end of a run: its status, its polls, and when it was submitted and seen
    finished (seconds on any one clock; None when it never was)."""

    status: str
    polls: int
    submitted: float | None
    finished: float | None


def row_facts(records: Sequence[RowRecord], task_seconds: float) -> dict[str, Any]:
    """Statuses, polls per row, the detection lag and the span of a run's rows."""
    lags = [
        r.finished - r.submitted - task_seconds
        for r in records
        if r.finished is not None and r.submitted is not None
    ]
    submitted = [r.submitted for r in records if r.submitted is not None]
    finished = [r.finished for r in records if r.finished is not None]
    span = max(finished) - min(submitted) if submitted and finished else None
    return {
        "statuses": dict(Counter(r.status for r in records)),
        "polls": sum(r.polls for r in records),
        "polls_per_row": {str(k): v for k, v in sorted(Counter(r.polls for r in records).items())},
        "lag_seconds": {
            "median": statistics.median(lags) if lags else None,
            "p90": quantile(lags, 0.9),
            "max": max(lags, default=None),
        },
        "span_seconds": span,
    }


def _epoch(value: datetime | str | None) -> float | None:
    """A database timestamp as epoch seconds (SQLite keeps UTC as text without an offset)."""
    if value is None:
        return None
    stamp = datetime.fromisoformat(value) if isinstance(value, str) else value
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return stamp.timestamp()


ROWS_QUERY: Final = "SELECT status, polls, submitted_at, finished_at FROM jobs"


def sqlite_records(path: Path) -> list[RowRecord]:
    with closing(sqlite3.connect(path)) as conn:
        return [
            RowRecord(str(s), int(p), _epoch(a), _epoch(b))
            for s, p, a, b in conn.execute(ROWS_QUERY)
        ]


def pg_records() -> list[RowRecord]:
    with psycopg.connect(PG_BENCH_DSN) as conn:
        return [
            RowRecord(str(s), int(p), _epoch(a), _epoch(b))
            for s, p, a, b in conn.execute(ROWS_QUERY).fetchall()
        ]


def summarize(
    args: argparse.Namespace,
    tool: str,
    wall: float,
    stats: dict[str, Any],
    rows: dict[str, Any],
    cpu: float,
) -> dict[str, Any]:
    """The figures of one run, and what is wrong with it."""
    created = stats["created"]
    finished = sum(rows["statuses"].get(s, 0) for s in FINISHED)
    least = 2 * created
    found = bounds(args)
    span = rows["span_seconds"]
    result: dict[str, Any] = {
        "tool": tool,
        "rows": args.rows,
        "cap": args.cap,
        "task_seconds": args.task_seconds,
        "wall_seconds": wall,
        "mock": stats,
        "finished": finished,
        "polls_per_finished_task": stats["polls"] / finished if finished else None,
        "requests": stats["requests"],
        "least_requests": least,
        "requests_over_least": stats["requests"] / least if least else None,
        "peak_running": stats["peak_running"],
        "peak_over_cap": stats["peak_running"] / args.cap,
        "bound_seconds": found["waves_seconds"],
        "wall_over_bound": wall / found["waves_seconds"] if found["waves_seconds"] else None,
        "cap_use": created * args.task_seconds / span / args.cap if span else None,
        "cpu_seconds": cpu,
        **rows,
    }
    wrong = []
    if created != args.rows:
        wrong.append(f"the mock created {created:,} tasks for {args.rows:,} rows")
    if stats["prompts_created_twice"]:
        wrong.append(f"{stats['prompts_created_twice']:,} rows were created twice")
    if finished != args.rows:
        wrong.append(
            f"{args.rows - finished:,} rows did not end succeeded or failed: {rows['statuses']}"
        )
    result["wrong"] = wrong
    notes = []
    if stats["peak_running"] > args.cap:
        notes.append(
            f"the mock saw {stats['peak_running']:,} tasks generating at once, "
            f"over the cap of {args.cap:,}"
        )
    if rows["polls"] != stats["polls"]:
        notes.append(
            f"the mock answered {stats['polls']:,} polls, the rows record {rows['polls']:,}"
        )
    if stats["rejected_429"]:
        notes.append(f"{stats['rejected_429']:,} requests were answered 429")
    result["notes"] = notes
    return result


# ---------------------------------------------------------------------------------- veo-batch


def wait_exit(child: Child, mock: Mock, started: float, timeout: float) -> float:
    """Wait for `child` to exit; its wall time from `started`. Fails when no request reaches
    the mock for STALL_SECONDS, or after `timeout`."""
    deadline = started + timeout
    last, progressed, next_look = -1, started, started + LOOK_SECONDS
    while True:
        try:
            child.proc.wait(timeout=0.5)
            return time.monotonic() - started
        except subprocess.TimeoutExpired:
            pass
        now = time.monotonic()
        if now > deadline:
            raise BenchError(f"{child.name} did not end in {timeout:.0f} s:\n{child.tail()}")
        if now >= next_look:
            requests = int(mock.stats()["requests"])
            if requests != last:
                last, progressed = requests, now
            elif now - progressed > STALL_SECONDS:
                raise BenchError(
                    f"{child.name}: no request reached the mock for {STALL_SECONDS:.0f} s "
                    f"({requests:,} in all):\n{child.tail()}"
                )
            next_look = now + LOOK_SECONDS


def check_exit(result: dict[str, Any], child: Child) -> None:
    """`run` exits 0 when every row succeeded, 8 when some failed."""
    code = child.proc.returncode
    failed = result["statuses"].get("failed", 0)
    expected = 8 if failed else 0
    result["exit_code"] = code
    result["output"] = child.output().strip()[-2000:]
    if code != expected:
        result["wrong"].append(f"`veo-batch run` exited with {code} ({failed:,} rows failed)")


def pacing_env(args: argparse.Namespace, mock: Mock, **extra: str) -> dict[str, str]:
    return base_env(
        VEO_API_BASE=mock.url,
        VEO_API_KEY=KEY,
        VEO_RATE=args.rate,
        VEO_MAX_IN_FLIGHT=str(args.cap),
        **extra,
    )


def embedded(
    args: argparse.Namespace, children: Children, work: Path, jobs: Path
) -> dict[str, Any]:
    print(
        f"veo-batch run (embedded, SQLite): {args.rows:,} rows, {args.task_seconds:g} s "
        f"tasks, cap {args.cap:,}, VEO_RATE={args.rate}, -c {args.concurrency} ...",
        flush=True,
    )
    database = work / "embedded.db"
    mock = start_mock(children, "embedded-mock", args)
    try:
        env = pacing_env(args, mock, VEO_DATABASE_URL=f"sqlite:///{database}")
        argv = veo_batch(
            "run",
            str(jobs),
            "--batch",
            "poll",
            "--concurrency",
            str(args.concurrency),
            "--output",
            str(work / "embedded.results.csv"),
        )
        before = children_cpu()
        started = time.monotonic()
        child = children.spawn("embedded-run", argv, env)
        wall = wait_exit(child, mock, started, deadline_of(args))
        cpu = children_cpu() - before  # no other child was reaped meanwhile
        stats = mock.facts(MOCK_COUNTERS)
    finally:
        children.stop(mock.child)
    rows = row_facts(sqlite_records(database), args.task_seconds)
    result = summarize(args, "veo-batch run", wall, stats, rows, cpu)
    result["concurrency"] = args.concurrency
    check_exit(result, child)
    result["problems"] = problems_of([child], NOT_A_PROBLEM_OR_REMOTE_ERROR)
    return result


def distributed(
    args: argparse.Namespace, children: Children, work: Path, jobs: Path
) -> dict[str, Any]:
    print(
        f"veo-batch distributed (PostgreSQL, Redis, {WORKERS} workers -c "
        f"{WORKER_CONCURRENCY}): {args.rows:,} rows, cap {args.cap:,}, VEO_RATE={args.rate} "
        "...",
        flush=True,
    )
    recreate_database(PG_NAME)
    flush_redis(REDIS_URL)
    run_quietly(veo_batch("db", "upgrade"), base_env(VEO_DATABASE_URL=PG_URL))
    mock = start_mock(children, "distributed-mock", args)
    processes: list[Child] = []
    try:
        env = pacing_env(args, mock, VEO_DATABASE_URL=PG_URL, VEO_REDIS_URL=REDIS_URL)
        workers = [
            children.spawn(
                f"worker-{n}",
                veo_batch("worker", "-c", str(WORKER_CONCURRENCY), "-n", f"poll-{n}@%h"),
                env,
            )
            for n in range(1, WORKERS + 1)
        ]
        processes += workers
        for worker in workers:
            worker.wait_for(r"@\S+ ready\.")
        scheduler = children.spawn("scheduler", veo_batch("scheduler"), env)
        processes.append(scheduler)
        scheduler.wait_for(r"scheduler running")
        argv = veo_batch(
            "run", str(jobs), "--batch", "poll", "--output", str(work / "distributed.results.csv")
        )
        before = sum(p.cpu() for p in processes) + children_cpu()
        started = time.monotonic()
        child = children.spawn("distributed-run", argv, env)
        wall = wait_exit(child, mock, started, deadline_of(args))
        cpu = sum(p.cpu() for p in processes) + children_cpu() - before
        stats = mock.facts(MOCK_COUNTERS)
        rows = row_facts(pg_records(), args.task_seconds)
    finally:
        children.stop(*processes, mock.child)
    result = summarize(args, "veo-batch workers", wall, stats, rows, cpu)
    result["workers"] = WORKERS
    result["worker_concurrency"] = WORKER_CONCURRENCY
    check_exit(result, child)
    result["problems"] = problems_of([*processes, child], NOT_A_PROBLEM_OR_REMOTE_ERROR)
    return result


# ---------------------------------------------------------------------------------- baseline


async def _baseline(
    url: str, jobs: Path, cap: int, concurrency: int, interval: float
) -> tuple[list[RowRecord], float, int]:
    """Submit every row and poll its task every `interval` seconds until it ends, at most
    `cap` tasks in flight and `concurrency` requests at once: the rows, the seconds from the
    start to the last task seen finished, and the requests that failed."""
    with jobs.open(encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    tasks = asyncio.Semaphore(cap)
    requests = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    timeout = httpx.Timeout(60.0, connect=10.0, pool=None)
    headers = {"Authorization": f"Bearer {KEY}"}
    errors = 0
    started = time.monotonic()

    async with httpx.AsyncClient(
        base_url=url, headers=headers, timeout=timeout, limits=limits
    ) as client:

        async def follow(row: dict[str, Any]) -> RowRecord:
            nonlocal errors
            payload = {k: row[k] for k in ("prompt", "model", "images")}
            async with tasks:
                try:
                    async with requests:
                        response = await client.post(SUBMIT_PATH, json=payload)
                    response.raise_for_status()
                    task_id = str(response.json()["task_id"])
                except (httpx.HTTPError, ValueError, KeyError):
                    errors += 1
                    return RowRecord("unsent", 0, None, None)  # never resent: it may exist
                submitted, polls = time.monotonic() - started, 0
                path = f"{SUBMIT_PATH}/{quote(task_id, safe='')}"
                while True:
                    await asyncio.sleep(interval)
                    polls += 1
                    try:
                        async with requests:
                            response = await client.get(path)
                        response.raise_for_status()
                        status = response.json().get("status")
                    except (httpx.HTTPError, ValueError):
                        errors += 1
                        continue
                    if status in ("SUCCESS", "FAILURE"):
                        done = "succeeded" if status == "SUCCESS" else "failed"
                        return RowRecord(done, polls, submitted, time.monotonic() - started)

        records = await asyncio.gather(*(follow(row) for row in rows))
    last = max((r.finished for r in records if r.finished is not None), default=0.0)
    return list(records), last, errors


def baseline(args: argparse.Namespace, children: Children, jobs: Path) -> dict[str, Any]:
    print(
        f"baseline: httpx poller every {args.interval:g} s, {args.rows:,} rows, cap "
        f"{args.cap:,}, {args.concurrency} requests at once ...",
        flush=True,
    )
    mock = start_mock(children, "baseline-mock", args)
    try:
        before = own_cpu()
        follow = _baseline(mock.url, jobs, args.cap, args.concurrency, args.interval)
        try:
            records, wall, errors = asyncio.run(asyncio.wait_for(follow, timeout=deadline_of(args)))
        except TimeoutError as exc:
            raise BenchError(f"the baseline did not end in {deadline_of(args):.0f} s") from exc
        cpu = own_cpu() - before
        stats = mock.facts(MOCK_COUNTERS)
    finally:
        children.stop(mock.child)
    rows = row_facts(records, args.task_seconds)
    result = summarize(args, f"httpx every {args.interval:g} s", wall, stats, rows, cpu)
    result["interval"] = args.interval
    result["concurrency"] = args.concurrency
    result["request_errors"] = errors
    if errors:
        result["notes"].append(f"{errors:,} of its requests failed")
    return result


# ---------------------------------------------------------------------------------- report


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def _ratio(value: float | None) -> str:
    return "" if value is None else f"×{value:.2f}"


def histogram(polls_per_row: dict[str, int]) -> str:
    """`{"2": 4998, "3": 2}` → `2:4,998 3:2`."""
    return " ".join(f"{k}:{v:,}" for k, v in polls_per_row.items())


def table(results: Sequence[dict[str, Any]], args: argparse.Namespace) -> str:
    headers = [
        "TOOL",
        "CREATED",
        "OK/FAILED",
        "POLLS",
        "POLLS/TASK",
        "REQUESTS",
        "LEAST",
        "VS LEAST",
        "PEAK/CAP",
        "CAP USE",
        "WALL s",
        "VS BOUND",
        "LAG p50/p90 s",
        "CPU s",
        "CHECK",
    ]
    rows = []
    for r in results:
        statuses = r["statuses"]
        check = "ok" if not r["wrong"] else "WRONG: " + "; ".join(r["wrong"])
        lag = r["lag_seconds"]
        rows.append(
            [
                r["tool"],
                f"{r['mock']['created']:,}",
                f"{statuses.get('succeeded', 0):,}/{statuses.get('failed', 0):,}",
                f"{r['mock']['polls']:,}",
                _number(r["polls_per_finished_task"]),
                f"{r['requests']:,}",
                f"{r['least_requests']:,}",
                _ratio(r["requests_over_least"]),
                f"{r['peak_running']:,}/{r['cap']:,}",
                "" if r["cap_use"] is None else f"{100 * r['cap_use']:.0f}%",
                f"{r['wall_seconds']:.1f}",
                _ratio(r["wall_over_bound"]),
                f"{_seconds(lag['median'])}/{_seconds(lag['p90'])}",
                f"{r['cpu_seconds']:.1f}",
                check,
            ]
        )
    found = bounds(args)
    notes = [
        f"{args.rows:,} rows, tasks of {args.task_seconds:g} s at the mock, at most "
        f"{args.cap:,} in flight, VEO_RATE={args.rate} (veo-batch only).",
        "POLLS and REQUESTS: as the mock counted them; POLLS/TASK: polls ÷ tasks finished; LEAST: "
        "one submit + one poll per task created; PEAK/CAP: the most tasks generating at once "
        "by the mock's clock; CAP USE: created × task seconds ÷ (first submission → last task "
        "seen finished) ÷ the cap.",
        f"WALL: veo-batch from spawning `run` to its exit (loading and exporting included), the "
        f"baseline on its own clock; BOUND: ceil(rows ÷ cap) × task seconds = "
        f"{found['waves']:g} × {args.task_seconds:g} = {found['waves_seconds']:.0f} s (and "
        f"the least requests ÷ VEO_RATE: {found['rate_seconds']:.0f} s). LAG: finished_at - "
        "submitted_at - task seconds, how long a finished task waited for the poll that saw "
        "it. CPU: the poller's processes.",
        "polls per row: "
        + "; ".join(f"{r['tool']}: {histogram(r['polls_per_row'])}" for r in results),
    ]
    for r in results:
        notes += [f"note: {r['tool']}: {note}" for note in r["notes"]]
    return table_text(headers, rows) + "\n\n" + "\n".join(textwrap.fill(n, 100) for n in notes)


def comparison(results: Sequence[dict[str, Any]]) -> dict[str, float]:
    """veo-batch's polls per task and requests ÷ the baseline's."""
    by_tool = {r["tool"].split(" ")[0]: r for r in results}
    base = by_tool.get("httpx")
    ratios: dict[str, float] = {}
    if base is None:
        return ratios
    for r in results:
        if r is base or not base["polls_per_finished_task"]:
            continue
        key = "embedded" if r["tool"] == "veo-batch run" else "distributed"
        ratios[f"{key}_polls_per_task"] = (
            r["polls_per_finished_task"] / base["polls_per_finished_task"]
        )
        ratios[f"{key}_requests"] = r["requests"] / base["requests"]
    return ratios


# ---------------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Measure how veo-batch follows tasks to their end: polls per task, "
        "requests against the least possible, and the in-flight cap as the provider sees it, "
        "against a plain poller that asks every few seconds."
    )
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS, help="default: %(default)s")
    parser.add_argument(
        "--task-seconds",
        type=float,
        default=DEFAULT_TASK_SECONDS,
        help="how long each task generates at the mock (default: %(default)g)",
    )
    parser.add_argument(
        "--failure-rate",
        type=float,
        default=0.0,
        help="share of tasks the mock ends in FAILURE (default: %(default)g)",
    )
    parser.add_argument(
        "--cap",
        type=int,
        default=DEFAULT_CAP,
        help="tasks in flight at most (default: %(default)s)",
    )
    parser.add_argument(
        "--rate", default=DEFAULT_RATE, help="VEO_RATE for veo-batch (default: %(default)s)"
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=DEFAULT_CONCURRENCY,
        help="`veo-batch run -c`, and the baseline's requests at once (default: %(default)s)",
    )
    parser.add_argument(
        "--interval",
        type=float,
        default=DEFAULT_INTERVAL,
        help="the baseline's seconds between polls of a task (default: %(default)g)",
    )
    parser.add_argument("--skip-embedded", action="store_true", help="no `veo-batch run`")
    parser.add_argument("--skip-baseline", action="store_true", help="no baseline poller")
    parser.add_argument(
        "--skip-distributed",
        action="store_true",
        help="no scheduler and workers (PostgreSQL and Redis are then not needed)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    if args.rows < 1 or args.cap < 1 or args.concurrency < 1:
        parser.error("--rows, --cap and --concurrency must be at least 1")
    if args.task_seconds < 0 or args.interval <= 0 or not 0 <= args.failure_rate <= 1:
        parser.error("--task-seconds at least 0, --interval above 0, --failure-rate 0 to 1")
    try:
        args.rate_per_second = Rate.parse(args.rate, "--rate").per_second
    except ConfigError as exc:
        parser.error(str(exc))
    return args


def run_benchmark(args: argparse.Namespace, work: Path, children: Children) -> bool:
    """Every measurement asked for; True if every check passed."""
    started, code = datetime.now(UTC), git_state()
    if not args.skip_distributed:
        check_services(PG_NAME, REDIS_URL)  # before anything runs, not minutes later
    jobs = write_jobs(work / "poll.jsonl", args.rows, "r{n}", PROMPT, IMAGE)
    results: list[dict[str, Any]] = []
    try:
        if not args.skip_embedded:
            results.append(embedded(args, children, work, jobs))
        if not args.skip_baseline:
            results.append(baseline(args, children, jobs))
        if not args.skip_distributed:
            results.append(distributed(args, children, work, jobs))
    finally:
        if not args.skip_distributed:
            with contextlib.suppress(psycopg.Error, redis.RedisError):
                drop_database(PG_NAME)
                flush_redis(REDIS_URL)
    ratios = comparison(results)
    document: dict[str, Any] = {
        "started": started.isoformat(),
        "machine": machine_facts(),
        "code": code,
        "settings": {
            "rows": args.rows,
            "task_seconds": args.task_seconds,
            "failure_rate": args.failure_rate,
            "cap": args.cap,
            "rate": args.rate,
            "concurrency": args.concurrency,
            "interval": args.interval,
            "workers": WORKERS,
            "worker_concurrency": WORKER_CONCURRENCY,
        },
        "bounds": bounds(args),
        "results": results,
        "veo_batch_vs_baseline": ratios,
    }
    note_code_change(document)
    if results:
        print("\n" + table(results, args))
    for tool in ("embedded", "distributed"):
        if f"{tool}_requests" in ratios:
            print(
                f"veo-batch ({tool}) ÷ polling every {args.interval:g} s: polls per task "
                f"×{ratios[f'{tool}_polls_per_task']:.2f}, requests "
                f"×{ratios[f'{tool}_requests']:.2f}"
            )
    print_problems((r["tool"], r) for r in results)
    print(f"\nwrote {write_json('poll', started, document)}")
    return all(not r["wrong"] for r in results)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        with workspace("veobatch-poll-", args.keep) as (work, children):
            passed = run_benchmark(args, work, children)
    except BenchError:
        return 1  # printed by workspace()
    if not passed:
        print("error: a check failed (CHECK column)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
