"""Experiment: veo-batch following tasks distributed (`--skip-distributed` leaves it out; it
takes about 3.5 minutes of the default run): PostgreSQL database `veobatch_bench3` (created,
migrated before any clock starts, dropped at the end), the Redis database of `--redis-url`
(flushed before and after), two `veo-batch worker -c 2` processes and `veo-batch scheduler`
(default tick) with the same VEO_RATE and VEO_MAX_IN_FLIGHT as the embedded run, started and
waited for (`ready.`, `scheduler running`); then `veo-batch run FILE` with VEO_REDIS_URL set,
which loads the batch and follows it. Timed from spawning that `run` to its exit. The mock
sees the cap as all these processes keep it together. Its CPU time is that of the workers,
the scheduler and `run`.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from bench.harness.processes import Child, Children, problems_of, veo_batch
from bench.harness.procfs import children_cpu
from bench.harness.services import flush_redis, fresh_database, start_scheduler, start_workers
from bench.polling.config import (
    MOCK_COUNTERS,
    NOT_A_PROBLEM_OR_REMOTE_ERROR,
    PG_NAME,
    PG_URL,
    WORKER_CONCURRENCY,
    WORKERS,
    deadline_of,
    start_mock,
)
from bench.polling.figures import pg_records, row_facts, summarize
from bench.polling.veobatch_run import check_exit, pacing_env, wait_exit


def distributed(
    args: argparse.Namespace, children: Children, work: Path, jobs: Path
) -> dict[str, Any]:
    print(
        f"veo-batch distributed (PostgreSQL, Redis, {WORKERS} workers -c "
        f"{WORKER_CONCURRENCY}): {args.rows:,} rows, cap {args.cap:,}, VEO_RATE={args.rate} "
        "...",
        flush=True,
    )
    flush_redis(args.redis_url)
    fresh_database(PG_NAME, PG_URL)
    mock = start_mock(children, "distributed-mock", args)
    processes: list[Child] = []
    try:
        env = pacing_env(args, mock, VEO_DATABASE_URL=PG_URL, VEO_REDIS_URL=args.redis_url)
        processes += start_workers(
            children,
            env,
            count=WORKERS,
            concurrency=WORKER_CONCURRENCY,
            log_prefix="",
            node_prefix="poll",
        )
        scheduler, _ = start_scheduler(children, "scheduler", env)
        processes.append(scheduler)
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
