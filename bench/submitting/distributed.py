"""One distributed run of veo-batch's submission, as both experiments of bench/submit.py make
it: a fresh PostgreSQL database `veobatch_bench2` (dropped and created again for each run,
migrated before any clock starts), the Redis database of --redis-url (flushed before each
run), the batch loaded with `veo-batch load`, two `veo-batch worker` processes started and
waited for (`ready.`), then `veo-batch scheduler`. Timed from the scheduler's "scheduler
running" line to every row having its task in the database (polled every 50 ms). Polls are
held off (`VEO_POLL_DELAY=3600`) so that every rate slot goes to a submission.

Over that clock, the CPU time and peak RSS of each process group (harness.resources): the
mock, each worker (its whole process tree), the scheduler, PostgreSQL (every `postgres`
process on the machine but this script's own polling backend, which is opened before the
clock starts and closed after it stops) and Redis. When other databases of the server had
transactions meanwhile (pg_stat_database, read at the start and at the stop), PostgreSQL's
figure includes their work: the result names them (`postgres_shared_with`).

A run that does not finish (no row done for 60 s, or its deadline) stops the benchmark with
the row counts per status.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Final

import psycopg

from bench.harness.processes import BenchError, Children, problems_of, run_quietly, veo_batch
from bench.harness.resources import CpuClock, Selector, service, tree_of
from bench.harness.services import (
    Mock,
    flush_redis,
    fresh_database,
    start_scheduler,
    start_workers,
)
from bench.submitting.config import (
    KEY,
    MOCK_COUNTERS,
    PG_BENCH_DSN,
    PG_NAME,
    PG_URL,
    POLL,
    WORKERS,
    Setup,
    rate,
)

STALL_SECONDS: Final = 60.0  # no row done for this long: the run is stuck
OPEN_STATUSES: Final = ("pending", "queued", "submitting")


def services(exclude: int) -> dict[str, Selector]:
    """What a distributed run uses besides its own processes: PostgreSQL (every `postgres`
    process on the machine but `exclude`, this script's own backend) and Redis."""
    return {"postgres": service("postgres", exclude={exclude}), "redis": service("redis-server")}


def wait_finished(conn: psycopg.Connection[Any], batch: str, rows: int, timeout: float) -> float:
    """Poll on `conn` until every row of the batch has its task (or ended); the moment it was
    seen. Fails on a pause, after STALL_SECONDS without a row done, or after `timeout`, with
    the rows per status. (Following the tasks is not measured here: see bench/poll.py.)"""
    started = time.monotonic()
    deadline = started + timeout
    done, progressed, next_count = -1, started, started

    def counts() -> dict[str, int]:
        query = "SELECT status, count(*) FROM jobs GROUP BY status ORDER BY status"
        return {str(s): int(n) for s, n in conn.execute(query).fetchall()}

    while True:
        row = conn.execute(
            "SELECT state, pause_reason FROM batches WHERE name = %s", (batch,)
        ).fetchone()
        now = time.monotonic()
        if row is None:
            raise BenchError(f"batch {batch!r} is not in the database")
        unsent = conn.execute(
            "SELECT count(*) FROM jobs WHERE status = ANY(%s)", (list(OPEN_STATUSES),)
        ).fetchone()
        if row[0] == "finished" or (unsent is not None and unsent[0] == 0):
            return now
        if row[0] != "active":
            raise BenchError(f"batch {batch!r} is {row[0]} ({row[1]}); rows: {counts()}")
        if now >= next_count:
            by_status = counts()
            now_done = rows - sum(by_status.get(s, 0) for s in OPEN_STATUSES)
            if now_done != done:
                done, progressed = now_done, now
            elif now - progressed > STALL_SECONDS:
                raise BenchError(
                    f"batch {batch!r}: no row done for {STALL_SECONDS:.0f} s, "
                    f"{done:,}/{rows:,} done; rows per status: {by_status}"
                )
            next_count = now + 1.0
        if now > deadline:
            raise BenchError(
                f"batch {batch!r} not finished after {timeout:.0f} s; rows: {counts()}"
            )
        time.sleep(POLL)


def database_facts() -> dict[str, Any]:
    """Rows per status, and the times of creation and of every submit attempt (epoch s)."""
    with psycopg.connect(PG_BENCH_DSN, autocommit=True) as conn:
        statuses = {
            str(s): int(n)
            for s, n in conn.execute("SELECT status, count(*) FROM jobs GROUP BY status")
        }
        created = conn.execute(
            "SELECT count(*), extract(epoch FROM min(submitted_at))::float8, "
            "extract(epoch FROM max(submitted_at))::float8 FROM jobs WHERE task_id IS NOT NULL"
        ).fetchone()
        attempts = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE http_status = 429), "
            "extract(epoch FROM min(at))::float8, extract(epoch FROM max(at))::float8 "
            "FROM attempts WHERE action = 'submit'"
        ).fetchone()
    assert created is not None
    assert attempts is not None
    return {
        "statuses": statuses,
        "rows_created": int(created[0]),
        "created_per_s": rate(int(created[0]), created[1], created[2]),
        "attempts": int(attempts[0]),
        "attempts_429": int(attempts[1]),
        "requests_per_s": rate(int(attempts[0]), attempts[2], attempts[3]),
    }


def run_distributed(
    children: Children,
    work: Path,
    name: str,
    jobs: Path,
    rows: int,
    mock: Mock,
    setup: Setup,
    *,
    rate_setting: str | None,
    concurrency: int,
    timeout: float,
) -> dict[str, Any]:
    """Load `jobs` as batch `name` into a fresh database, start the workers, then the
    scheduler, and time the batch from the scheduler's start to every row having its task."""
    env = fresh_database(PG_NAME, PG_URL)
    flush_redis(setup.redis_url)
    run_quietly(veo_batch("load", str(jobs), "--batch", name), env)
    # Polls would share the rate with submissions: held off, so every slot is a submission.
    env.update(
        VEO_REDIS_URL=setup.redis_url, VEO_API_BASE=mock.url, VEO_API_KEY=KEY, VEO_POLL_DELAY="3600"
    )
    if rate_setting is not None:
        env["VEO_RATE"] = rate_setting
    workers = start_workers(
        children,
        env,
        count=WORKERS,
        concurrency=concurrency,
        log_prefix=f"{name}-",
        node_prefix=name,
    )
    # Opened before the clock starts and closed after it stops, so that its backend (this
    # script's polling) is left out of PostgreSQL's CPU time: an ended one would count.
    with psycopg.connect(PG_BENCH_DSN, autocommit=True) as conn:
        scheduler, started = start_scheduler(children, f"{name}-scheduler", env, *setup.tick)
        groups = {
            "mock": tree_of(mock.child),
            **{f"worker-{n}": tree_of(worker) for n, worker in enumerate(workers, 1)},
            "scheduler": tree_of(scheduler),
            **services(exclude=conn.info.backend_pid),
        }
        try:
            before = transactions(conn)
            with CpuClock(groups) as clock:
                finished = wait_finished(conn, name, rows, timeout)
                cpu = clock.stop(rows)
            cpu["postgres_shared_with"] = shared_with(before, transactions(conn))
        finally:
            children.stop(scheduler, *workers)
    stats = mock.facts(MOCK_COUNTERS)
    facts = database_facts()
    return {
        "rows": rows,
        "seconds": finished - started,
        "concurrency": concurrency,
        "rate_setting": rate_setting,
        "mock": stats,
        "database": facts,
        "cpu": cpu,
        "problems": problems_of([*workers, scheduler]),
    }


def transactions(conn: psycopg.Connection[Any]) -> dict[str, int]:
    """Transactions so far in each database of the server (pg_stat_database)."""
    query = "SELECT datname, xact_commit + xact_rollback FROM pg_stat_database WHERE datname <> ''"
    return {str(name): int(n) for name, n in conn.execute(query).fetchall()}


def shared_with(before: dict[str, int], after: dict[str, int]) -> dict[str, int | None]:
    """The other databases with transactions between `before` and `after`, and how many (None:
    dropped meanwhile): PostgreSQL's CPU time then includes whoever used them (tests run
    meanwhile, say). A backend reports its counts within a second or so, and a database
    created and dropped meanwhile is not seen: this is a warning, not a measurement."""
    return {
        name: after[name] - before.get(name, 0) if name in after else None
        for name in sorted(before.keys() | after.keys())
        if name != PG_NAME and after.get(name) != before.get(name)
    }


def check_all_submitted(result: dict[str, Any], rows: int) -> list[str]:
    """What is wrong with a run of veo-batch: every row must be created once, and have its
    task (`submitted`, or `succeeded` once the scheduler has polled it)."""
    wrong = []
    stats = result["mock"]
    if stats["created"] != rows:
        wrong.append(f"the mock created {stats['created']:,} tasks for {rows:,} rows")
    if stats["prompts_created_twice"]:
        wrong.append(f"{stats['prompts_created_twice']:,} rows were created twice")
    statuses = result["statuses"] if "statuses" in result else result["database"]["statuses"]
    if statuses.get("submitted", 0) + statuses.get("succeeded", 0) != rows:
        wrong.append(f"rows per status: {statuses}")
    return wrong
