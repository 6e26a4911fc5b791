"""Benchmark: several relay accounts (VEO_ACCOUNTS), for failover and for throughput.

Every figure comes from one run of this script, against mock providers (`veo-batch mock-api
--text-videos`, a subprocess each, fresh ones for each measurement so that their counters
start at zero), each named by one account of a VEO_ACCOUNTS file the script writes, with its
own key in a variable of its own. Each measurement runs in the embedded mode (`veo-batch run`
on a fresh SQLite file) and in the distributed mode (two `veo-batch worker -c 2` and `veo-batch
scheduler` on PostgreSQL database `veobatch_bench_accounts`, dropped and created again for each
run and dropped at the end, and the Redis database of `--redis-url`, database 11 by default,
flushed before each run and at the end; `--skip-distributed` leaves it out). The
experiments, each in a module of bench/accounts_parts/ whose docstring says exactly what it
measures and how:

1. Failover (failover.py): 300 rows (`--failover-rows`) over three accounts, `empty` (a
   balance of 40 tasks), `down` (every request answered 502) and `ok`: every row must succeed
   once, each poll must go to the relay that made its task, `empty` must end paused.
2. Throughput (throughput.py): 600 rows (`--rows`) submitted through two accounts at 9/s each
   (mocks allowing 10 requests per 1 s), against ONE such account in the same run: rows/s,
   their ratio, 429s and each mock's busiest window.

A run is made as runs.py says. One that makes no progress for 60 s, whose batch pauses or that
passes its deadline is stopped and reported (CHECK column); a failed check makes this script
exit 1 (a missed target does not). Every process it starts gets a process group of its own and
is stopped (SIGTERM, then SIGKILL) when its part is over, on errors and on Ctrl-C too. Problems
in the logs of veo-batch's processes (tracebacks, ERROR and WARNING lines) are printed. The
commit and a hash of the working tree's changes are recorded at the start and checked again at
the end. Results: a table per part and `bench/out/accounts-<time>.json`.

    python bench/accounts.py                        # 300 + 600 rows, about 5 minutes
    python bench/accounts.py --rows 100 --failover-rows 60
    python bench/accounts.py --skip-distributed     # no PostgreSQL or Redis needed
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

from bench.accounts_parts.config import (
    DEFAULT_FAILOVER_ROWS,
    DEFAULT_ROWS,
    DOWN_STATUS,
    EMBEDDED_CONCURRENCY,
    EMPTY_BALANCE,
    FAST_POLLS,
    HELD_POLLS,
    LIMIT,
    PG_NAME,
    RATE,
    REDIS_URL,
    TARGET_ROWS_PER_S,
    WINDOW,
    WORKER_CONCURRENCY,
    WORKERS,
)
from bench.accounts_parts.failover import failover, failover_table
from bench.accounts_parts.throughput import RATIO_TARGET, ratios, throughput, throughput_table
from bench.harness.cli import add_keep, add_redis_url, run_in_workspace
from bench.harness.processes import Children
from bench.harness.results import (
    git_state,
    machine_facts,
    note_code_change,
    print_problems,
    write_json,
)
from bench.harness.services import check_services, drop_database, flush_redis


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Measure veo-batch over several relay accounts: failover past an empty "
        "and a down relay, and the rows/s of two rate-limited accounts against one."
    )
    parser.add_argument(
        "--rows",
        type=int,
        default=DEFAULT_ROWS,
        help="rows of the throughput part (default: %(default)s)",
    )
    parser.add_argument(
        "--failover-rows",
        type=int,
        default=DEFAULT_FAILOVER_ROWS,
        help=f"rows of the failover part, more than the empty relay's {EMPTY_BALANCE} "
        "(default: %(default)s)",
    )
    parser.add_argument("--skip-failover", action="store_true", help="only the throughput part")
    parser.add_argument("--skip-throughput", action="store_true", help="only the failover part")
    parser.add_argument("--skip-embedded", action="store_true", help="no `veo-batch run`")
    parser.add_argument(
        "--skip-distributed",
        action="store_true",
        help="no workers and scheduler (PostgreSQL and Redis are then not needed)",
    )
    add_redis_url(parser, REDIS_URL)
    add_keep(parser)
    args = parser.parse_args(argv)
    if args.rows < 2:
        parser.error("--rows must be at least 2")
    if args.failover_rows <= EMPTY_BALANCE:
        parser.error(f"--failover-rows must be more than the empty relay's {EMPTY_BALANCE}")
    return args


def run_benchmark(args: argparse.Namespace, work: Path, children: Children) -> bool:
    """Every measurement asked for; True if every check passed."""
    started, code = datetime.now(UTC), git_state()
    modes = [
        mode
        for mode, skip in (("embedded", args.skip_embedded), ("distributed", args.skip_distributed))
        if not skip
    ]
    if not args.skip_distributed:
        check_services(PG_NAME, args.redis_url)  # before anything runs, not minutes later
    failovers: list[dict[str, Any]] = []
    throughputs: list[dict[str, Any]] = []
    try:
        if not args.skip_failover:
            failovers += [
                failover(children, work, mode, args.failover_rows, args.redis_url) for mode in modes
            ]
        if not args.skip_throughput:
            throughputs += [
                throughput(children, work, mode, accounts, args.rows, args.redis_url)
                for mode in modes
                for accounts in (1, 2)
            ]
    finally:
        if not args.skip_distributed:
            with contextlib.suppress(psycopg.Error, redis.RedisError):
                drop_database(PG_NAME)
                flush_redis(args.redis_url)
    two_over_one = ratios(throughputs)
    document: dict[str, Any] = {
        "started": started.isoformat(),
        "machine": machine_facts(),
        "code": code,
        "settings": {
            "failover_rows": args.failover_rows,
            "rows": args.rows,
            "empty_balance": EMPTY_BALANCE,
            "down_status": DOWN_STATUS,
            "rate": RATE,
            "limit": LIMIT,
            "window": WINDOW,
            "embedded_concurrency": EMBEDDED_CONCURRENCY,
            "workers": WORKERS,
            "worker_concurrency": WORKER_CONCURRENCY,
            "failover_polls": FAST_POLLS,
            "throughput_polls": HELD_POLLS,
            "target_rows_per_s": TARGET_ROWS_PER_S,
            "target_ratio": RATIO_TARGET,
        },
        "results": {"failover": failovers, "throughput": throughputs},
        "two_accounts_vs_one": two_over_one,
    }
    note_code_change(document)
    if failovers:
        print("\n" + failover_table(failovers))
    if throughputs:
        print("\n" + throughput_table(throughputs))
        for mode, ratio in two_over_one.items():
            if ratio is not None:
                print(f"{mode}: two accounts ÷ one account, rows/s ×{ratio:.2f}")
    print_problems((f"failover {r['mode']}", r) for r in failovers)
    print_problems((f"throughput {r['mode']} {r['accounts']}", r) for r in throughputs)
    print(f"\nwrote {write_json('accounts', started, document)}")
    return all(not r["wrong"] for r in [*failovers, *throughputs])


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return run_in_workspace(
        "veobatch-accounts-", args.keep, lambda work, children: run_benchmark(args, work, children)
    )


if __name__ == "__main__":
    sys.exit(main())
