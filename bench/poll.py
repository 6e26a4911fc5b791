"""Benchmark: following tasks to their end, polls per task and the in-flight cap.

One batch (5,000 rows by default, `--rows`) whose tasks each take 30 s to generate
(`--task-seconds`) at the mock provider (`veo-batch mock-api --task-seconds S`, a fresh
subprocess for each measurement so its counters start at zero). Every measurement keeps at
most 1,000 tasks in flight (`--cap`). Measured, each from one run, by a module of
bench/polling/ whose docstring says exactly what it measures and how:

1. veo-batch, embedded (veobatch_run.py): `veo-batch run FILE -c 8` on a fresh SQLite file;
2. the baseline (baseline.py), a relay-client-style poller in this script that polls each
   task every 5 s (`--interval`);
3. veo-batch, distributed (distributed.py; `--skip-distributed` leaves it out): workers and
   the scheduler on PostgreSQL database `veobatch_bench3` and a Redis database
   (`--redis-url`, database 13 by default), then `veo-batch run FILE` with VEO_REDIS_URL set.

For each, the figures of figures.py: polls per finished task, every request against the least
a perfect poller needs, the mock's `peak_running` against the cap, wall time against the lower
bound `ceil(rows / cap) * task seconds`, polls per row, the detection lag, and the CPU time of
the poller; then veo-batch's polls and requests as ratios to the baseline's (report.py). A run
that misses a check (every row created once and ended succeeded or failed) makes this script
exit 1.

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
import contextlib
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo root: bench.*

from bench.harness.cli import add_keep, add_redis_url, run_in_workspace
from bench.harness.processes import Children
from bench.harness.results import (
    git_state,
    machine_facts,
    note_code_change,
    print_problems,
    write_json,
)
from bench.harness.services import check_services, drop_database, flush_redis, write_jobs
from bench.polling.baseline import baseline
from bench.polling.config import (
    DEFAULT_CAP,
    DEFAULT_CONCURRENCY,
    DEFAULT_INTERVAL,
    DEFAULT_RATE,
    DEFAULT_ROWS,
    DEFAULT_TASK_SECONDS,
    IMAGE,
    PG_NAME,
    PROMPT,
    REDIS_URL,
    WORKER_CONCURRENCY,
    WORKERS,
    bounds,
)
from bench.polling.distributed import distributed
from bench.polling.report import comparison, table
from bench.polling.veobatch_run import embedded
from veobatch.errors import ConfigError
from veobatch.settings import Rate


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
    add_redis_url(parser, REDIS_URL)
    add_keep(parser)
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
        check_services(PG_NAME, args.redis_url)  # before anything runs, not minutes later
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
                flush_redis(args.redis_url)
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
    return run_in_workspace(
        "veobatch-poll-", args.keep, lambda work, children: run_benchmark(args, work, children)
    )


if __name__ == "__main__":
    sys.exit(main())
