"""Benchmark: submitting rows to the provider, for precision under a rate limit and for overhead.

Every figure comes from one run of this script, against the mock provider (`veo-batch mock-api`,
a subprocess of its own, a fresh one for each measurement so its counters start at zero), a
fresh PostgreSQL database `veobatch_bench2` (dropped and created again for each distributed run,
migrated before any clock starts, dropped at the end) and a Redis database (`--redis-url`,
database 12 by default, flushed before each run). Every process this script starts gets a
process group of its own and is stopped (SIGTERM, then SIGKILL) when its part is over, on
errors and on Ctrl-C too. The experiments, each in a module of bench/submitting/ whose
docstring says exactly what it measures and how:

1. Precision (precision.py): veo-batch's workers and scheduler with VEO_RATE at 95% of the
   mock's limit of 20 requests per 1 s window, against a plain Celery task with
   `rate_limit='20/s'` (naive_celery.py), both on 1,000 rows (`--rows`).
2. Overhead (overhead.py): no rate limit, 10,000 rows (`--overhead-rows`): a plain asyncio
   script (script_baseline.py, the baseline), the distributed workers and `veo-batch run`,
   as ratios to the script; then the CPU time per row and peak RSS of every process group
   (overhead_report.py).

A distributed run is made as distributed.py says. Every run is checked: every row created
exactly once at the mock, every row with its task. A run that does not finish (no row done
for 60 s, or its deadline) stops the benchmark with the row counts per status, and problems in
the logs of veo-batch's processes (tracebacks, ERROR and WARNING lines) are printed. The
commit and a hash of the working tree's changes are recorded at the start and checked again
at the end (a change meanwhile is warned about). Results: a table per part and
`bench/out/submit-<time>.json`.

    python bench/submit.py                          # 1,000 + 10,000 rows, about 10 minutes
    python bench/submit.py --rows 100 --overhead-rows 1000
    python bench/submit.py --skip-overhead --keep   # keep the temporary directory and logs
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo root: bench.*

from bench.harness.cli import add_keep, add_redis_url, comma_separated, run_in_workspace
from bench.harness.processes import Children
from bench.harness.results import (
    git_state,
    machine_facts,
    note_code_change,
    print_problems,
    write_json,
)
from bench.harness.services import check_services, drop_database, flush_redis, write_jobs
from bench.submitting.config import (
    IMAGE,
    LIMIT,
    PG_NAME,
    PRECISION_CONCURRENCY,
    PROMPT,
    RATE_SHARE,
    REDIS_URL,
    TARGET_SHARE,
    WINDOW,
    WORKERS,
    Setup,
)
from bench.submitting.naive_celery import NAIVE_SECONDS, precision_naive
from bench.submitting.overhead import (
    DEFAULT_OVERHEAD_CONCURRENCY,
    EMBEDDED_CONCURRENCY,
    overhead_distributed,
    overhead_embedded,
    probe_latency,
)
from bench.submitting.overhead_report import measured_runs, overhead_table, resources_table
from bench.submitting.precision import precision_ours, precision_table
from bench.submitting.script_baseline import SCRIPT_CONCURRENCY, overhead_script

DEFAULT_ROWS: Final = 1_000
DEFAULT_OVERHEAD_ROWS: Final = 10_000


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Measure veo-batch's submission: rate precision against a naive Celery "
        "task, and overhead against a plain asyncio script."
    )
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS, help="rows of the precision part")
    parser.add_argument(
        "--overhead-rows", type=int, default=DEFAULT_OVERHEAD_ROWS, help="rows of the overhead part"
    )
    parser.add_argument(
        "--overhead-concurrency",
        default=",".join(map(str, DEFAULT_OVERHEAD_CONCURRENCY)),
        help="-c of each of the two workers in the overhead part; several, comma-separated, "
        "are each measured (default: %(default)s)",
    )
    parser.add_argument("--skip-precision", action="store_true", help="only the overhead part")
    parser.add_argument(
        "--scheduler-tick", help="the scheduler's --tick (default: its own default)"
    )
    parser.add_argument("--skip-naive", action="store_true", help="no naive Celery baseline")
    parser.add_argument(
        "--naive-seconds",
        type=float,
        default=NAIVE_SECONDS,
        help="watch the naive Celery baseline at most this long (default: %(default)g)",
    )
    parser.add_argument("--skip-overhead", action="store_true", help="only the precision part")
    parser.add_argument("--skip-embedded", action="store_true", help="no `veo-batch run`")
    add_redis_url(parser, REDIS_URL)
    add_keep(parser)
    args = parser.parse_args(argv)
    if args.rows < 2 or args.overhead_rows < 2:
        parser.error("--rows and --overhead-rows must be at least 2")
    try:
        args.overhead_concurrency = [int(c) for c in comma_separated(args.overhead_concurrency)]
    except ValueError:
        parser.error("--overhead-concurrency takes numbers separated by commas")
    if not args.overhead_concurrency or min(args.overhead_concurrency) < 1:
        parser.error("--overhead-concurrency needs numbers of at least 1")
    return args


def run_benchmark(args: argparse.Namespace, work: Path, children: Children) -> None:
    started, code = datetime.now(UTC), git_state()
    tick = ("--tick", args.scheduler_tick) if args.scheduler_tick else ()
    setup = Setup(redis_url=args.redis_url, tick=tick)
    check_services(PG_NAME, setup.redis_url)
    flush_redis(setup.redis_url)
    results: dict[str, Any] = {}
    try:
        if not args.skip_precision:
            results["precision"] = precision_ours(children, work, args.rows, setup)
            if not args.skip_naive:
                results["naive"] = precision_naive(
                    children, work, args.rows, args.naive_seconds, setup.redis_url
                )
        scripts, distributed, latency = [], [], {}
        if not args.skip_overhead:
            latency = probe_latency(children)
            print(
                f"overhead: the mock answers in {latency['median_ms']:.1f} ms (median)", flush=True
            )
            rows = args.overhead_rows
            jobs = write_jobs(
                work / "overhead.jsonl", rows, "overhead-{n}", "overhead " + PROMPT, IMAGE
            )
            scripts = [overhead_script(children, work, jobs, rows, c) for c in SCRIPT_CONCURRENCY]
            distributed = [
                overhead_distributed(children, work, jobs, rows, c, setup)
                for c in args.overhead_concurrency
            ]
            if not args.skip_embedded:
                results["embedded"] = overhead_embedded(children, work, jobs, rows)
    finally:
        drop_database(PG_NAME)
        flush_redis(setup.redis_url)
    document: dict[str, Any] = {
        "started": started.isoformat(),
        "machine": machine_facts(),
        "code": code,
        "settings": {
            "limit": LIMIT,
            "window": WINDOW,
            "rate_share": RATE_SHARE,
            "target_share": TARGET_SHARE,
            "workers": WORKERS,
            "tick": tick[1] if tick else "default",
            "precision_concurrency": PRECISION_CONCURRENCY,
            "overhead_concurrency": args.overhead_concurrency,
            "script_concurrency": SCRIPT_CONCURRENCY,
            "embedded_concurrency": EMBEDDED_CONCURRENCY,
        },
        "mock_latency": latency,
        "results": {**results, "scripts": scripts, "distributed": distributed},
    }
    note_code_change(document)
    if "precision" in results:
        print("\n" + precision_table(results["precision"], results.get("naive")))
    if scripts:
        table, ratios = overhead_table(scripts, distributed, results.get("embedded"), latency)
        document["veo_batch_vs_script"] = ratios
        print("\n" + table)
        print("\n" + resources_table(measured_runs(scripts, distributed, results.get("embedded"))))
    problems = {**results, **{f"distributed_c{r['concurrency']}": r for r in distributed}}
    print_problems(problems.items())
    print(f"\nwrote {write_json('submit', started, document)}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # The checks are in the tables (TARGETS, CHECK): a run that misses one still exits 0.
    return run_in_workspace(
        "veobatch-submit-", args.keep, lambda work, children: run_benchmark(args, work, children)
    )


if __name__ == "__main__":
    sys.exit(main())
