"""Experiment: veo-batch following tasks embedded, `veo-batch run FILE -c 8` (`--concurrency`)
on a fresh SQLite file in a temporary directory, with the default pacing (first poll 10 s
after the submission, then at the end the provider's progress points to, clamped to 5-30 s),
`VEO_MAX_IN_FLIGHT` set to the cap and `VEO_RATE=300/s` (`--rate`; shared by submits and polls,
high enough not to be the bottleneck: the least requests take a fifth of the lower bound at
that rate, and `--rate 1000/s` gave the same wall time to 0.3 s). Timed from spawning `run` to
its exit, so loading the file, migrating SQLite and exporting the results count. Its CPU time
is the `run` process's, from its rusage once reaped.

Also what every run of veo-batch here shares: waiting for `run` to exit while the mock still
sees requests (none for 60 s, or the deadline, stops the benchmark), its exit code, and its
settings.
"""

from __future__ import annotations

import argparse
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.harness.processes import BenchError, Child, Children, base_env, problems_of, veo_batch
from bench.harness.procfs import children_cpu
from bench.harness.services import Mock
from bench.polling.config import (
    KEY,
    LOOK_SECONDS,
    MOCK_COUNTERS,
    NOT_A_PROBLEM_OR_REMOTE_ERROR,
    STALL_SECONDS,
    deadline_of,
    start_mock,
)
from bench.polling.figures import row_facts, sqlite_records, summarize


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
