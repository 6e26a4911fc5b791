"""One run of veo-batch over several relay accounts, in either mode, waited for and read back:

- embedded: `veo-batch run FILE --concurrency 8` on a fresh SQLite file in the temporary
  directory, timed from spawning it to its exit;
- distributed: PostgreSQL database `veobatch_bench_accounts` dropped and created again (and
  migrated) before any clock starts, the Redis database of --redis-url flushed, the file
  loaded with `veo-batch load`, two `veo-batch worker -c 2` started and waited for (`ready.`),
  then `veo-batch scheduler`; timed from its "scheduler running" line until the rows are where
  the experiment waits for them (every row ended, or every row with its task), looked at in
  the database every 50 ms.

Every process gets VEO_ACCOUNTS and the key variables (config.run_env), and nothing of this
shell's VEO_* settings. A run that makes no progress (no task created and no poll answered at
any relay for 60 s), whose batch pauses, or that passes its deadline is waited for no longer:
it is stopped, and what it reached is reported with why it ended (`ended`, which fails its
check). The lines of its logs that look like trouble and that the experiment does not expect
(`expected`: the errors its relays are made to answer) are kept (`problems`).

Once the run is over (its processes stopped), the relays' counters are read (GET
/_mock/stats) and the rows from the database: per status, per account, the first and the last
submission (`submitted_at`, stamped when the answer with the task is recorded), and each
account's state (table `accounts`).
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import psycopg

from bench.accounts_parts.config import (
    EMBEDDED_CONCURRENCY,
    LOOK_SECONDS,
    MOCK_COUNTERS,
    PG_BENCH_DSN,
    PG_NAME,
    PG_URL,
    STALL_SECONDS,
    WORKER_CONCURRENCY,
    WORKERS,
    Relay,
    run_env,
    write_accounts,
)
from bench.harness.processes import (
    NOT_A_PROBLEM,
    BenchError,
    Child,
    Children,
    problems_of,
    run_quietly,
    veo_batch,
)
from bench.harness.services import flush_redis, fresh_database, start_scheduler, start_workers
from bench.submitting.config import rate

UNSENT: Final = ("pending", "queued", "submitting")
OPEN: Final = (*UNSENT, "submitted")
ROWS_QUERY: Final = "SELECT status, account, task_id, submitted_at FROM jobs"
ACCOUNTS_QUERY: Final = (
    "SELECT name, state, reason, strikes, cool_until FROM accounts ORDER BY name"
)


def wait(ended: Callable[[], str | None], relays: Sequence[Relay], timeout: float) -> str:
    """Look every LOOK_SECONDS until `ended()` says why the run is over ("done" when it went
    to its end); "stalled ..." after STALL_SECONDS without a task created or a poll answered
    at any relay, "deadline ..." after `timeout`."""
    started = time.monotonic()
    progress, progressed, next_look = -1, started, started
    while True:
        why = ended()
        if why is not None:
            return why
        now = time.monotonic()
        if now > started + timeout:
            return f"deadline: not over after {timeout:.0f} s"
        if now >= next_look:
            stats = [relay.stats() for relay in relays]
            seen = sum(int(s["created"]) + int(s["polls"]) for s in stats)
            if seen != progress:
                progress, progressed = seen, now
            elif now - progressed > STALL_SECONDS:
                return f"stalled: no task created and no poll answered for {STALL_SECONDS:.0f} s"
            next_look = now + 2.0
        time.sleep(LOOK_SECONDS)


def embedded(
    children: Children,
    work: Path,
    name: str,
    jobs: Path,
    relays: Sequence[Relay],
    polls: dict[str, str],
    *,
    follow: bool,
    timeout: float,
    expected: re.Pattern[str] = NOT_A_PROBLEM,
) -> dict[str, Any]:
    """`veo-batch run` of `jobs` as batch `name` (`--no-wait` unless `follow`)."""
    database = work / f"{name}.db"
    accounts = write_accounts(work / f"{name}.accounts.toml", relays)
    env = run_env(accounts, relays, polls, VEO_DATABASE_URL=f"sqlite:///{database}")
    argv = veo_batch(
        "run",
        str(jobs),
        "--batch",
        name,
        "--concurrency",
        str(EMBEDDED_CONCURRENCY),
        "--output",
        str(work / f"{name}.results.csv"),
        *(() if follow else ("--no-wait",)),
    )
    started = time.monotonic()
    child = children.spawn(f"{name}-run", argv, env)

    def exited() -> str | None:
        code = child.proc.poll()
        return None if code is None else "done"

    try:
        ended = wait(exited, relays, timeout)
        wall = time.monotonic() - started
    finally:
        children.stop(child)
    if not database.exists():
        raise BenchError(f"{child.name} exited with {child.proc.returncode}:\n{child.tail()}")
    return {
        "mode": "embedded",
        "wall_seconds": wall,
        "ended": ended,
        "exit_code": child.proc.returncode,
        "output": child.output().strip()[-2000:],
        "relays": relay_counters(relays),
        "database": sqlite_facts(database),
        "problems": problems_of([child], expected),
    }


def distributed(
    children: Children,
    work: Path,
    name: str,
    jobs: Path,
    relays: Sequence[Relay],
    polls: dict[str, str],
    redis_url: str,
    *,
    follow: bool,
    timeout: float,
    expected: re.Pattern[str] = NOT_A_PROBLEM,
) -> dict[str, Any]:
    """Workers and the scheduler on `jobs`, loaded as batch `name`, until every row ended
    (`follow`) or every row has its task."""
    accounts = write_accounts(work / f"{name}.accounts.toml", relays)
    fresh_database(PG_NAME, PG_URL)
    flush_redis(redis_url)
    env = run_env(accounts, relays, polls, VEO_DATABASE_URL=PG_URL, VEO_REDIS_URL=redis_url)
    run_quietly(veo_batch("load", str(jobs), "--batch", name), env)
    processes: list[Child] = []
    try:
        processes += start_workers(
            children,
            env,
            count=WORKERS,
            concurrency=WORKER_CONCURRENCY,
            log_prefix=f"{name}-",
            node_prefix=name,
        )
        with psycopg.connect(PG_BENCH_DSN, autocommit=True) as conn:
            scheduler, started = start_scheduler(children, f"{name}-scheduler", env)
            processes.append(scheduler)
            ended = wait(lambda: rows_over(conn, name, follow), relays, timeout)
            wall = time.monotonic() - started
    finally:
        children.stop(*processes)
    return {
        "mode": "distributed",
        "wall_seconds": wall,
        "ended": ended,
        "relays": relay_counters(relays),
        "database": pg_facts(),
        "problems": problems_of(processes, expected),
    }


def rows_over(conn: psycopg.Connection[Any], batch: str, follow: bool) -> str | None:
    """None while batch `batch` has rows to send (or, with `follow`, rows not ended); why the
    run is over otherwise ("done", or the batch's pause)."""
    row = conn.execute(
        "SELECT state, pause_reason FROM batches WHERE name = %s", (batch,)
    ).fetchone()
    if row is not None and row[0] not in ("active", "finished"):
        return f"batch {row[0]}: {row[1]}"
    waiting_for = OPEN if follow else UNSENT
    left = conn.execute(
        "SELECT count(*) FROM jobs WHERE status = ANY(%s)", (list(waiting_for),)
    ).fetchone()
    return "done" if left is not None and left[0] == 0 else None


def relay_counters(relays: Iterable[Relay]) -> dict[str, dict[str, Any]]:
    """Each relay's counters, and the prompts it created (`created_by_prompt`)."""
    counters = {}
    for relay in relays:
        stats = relay.stats()
        counters[relay.name] = {
            **{name: stats[name] for name in MOCK_COUNTERS},
            "created_by_prompt": stats["created_by_prompt"],
        }
    return counters


def created_across(relays: dict[str, dict[str, Any]]) -> Counter[str]:
    """Tasks created per prompt, summed over every relay."""
    made: Counter[str] = Counter()
    for counters in relays.values():
        made.update(counters["created_by_prompt"])
    return made


def common_problems(result: dict[str, Any]) -> list[str]:
    """What every run of either part must not show: a run that did not end, a `run` that
    failed, a prompt created twice or nowhere."""
    wrong = []
    if result["ended"] != "done":
        wrong.append(result["ended"])
    if result.get("exit_code") not in (None, 0):
        wrong.append(f"`veo-batch run` exited with {result['exit_code']}")
    if result["prompts_created_twice"]:
        wrong.append(f"{result['prompts_created_twice']:,} prompts created twice")
    if result["prompts_not_created"]:
        wrong.append(f"{result['prompts_not_created']:,} prompts created nowhere")
    return wrong


def without_prompts(relays: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The counters without `created_by_prompt` (for the JSON: the figures are kept)."""
    return {
        name: {k: v for k, v in counters.items() if k != "created_by_prompt"}
        for name, counters in relays.items()
    }


# ---------------------------------------------------------------------------------- the rows


def _epoch(value: datetime | str | None) -> float | None:
    """A database timestamp as epoch seconds (SQLite keeps UTC as text without an offset)."""
    if value is None:
        return None
    stamp = datetime.fromisoformat(value) if isinstance(value, str) else value
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return stamp.timestamp()


def facts(rows: Iterable[Sequence[Any]], accounts: Iterable[Sequence[Any]]) -> dict[str, Any]:
    """Rows per status, per account (rows with a task), the submissions' rate, accounts."""
    statuses: Counter[str] = Counter()
    tasks: Counter[str] = Counter()
    stamps = []
    for status, account, task_id, submitted_at in rows:
        statuses[str(status)] += 1
        if task_id is not None:
            tasks[str(account)] += 1
            stamp = _epoch(submitted_at)
            if stamp is not None:
                stamps.append(stamp)
    first, last = (min(stamps), max(stamps)) if stamps else (None, None)
    return {
        "statuses": dict(statuses),
        "tasks_by_account": dict(sorted(tasks.items())),
        "submitted": len(stamps),
        "submission_seconds": last - first if first is not None and last is not None else None,
        "submitted_per_s": rate(len(stamps), first, last),
        "accounts": {
            str(name): {
                "state": state,
                "reason": reason,
                "strikes": strikes,
                "cool_until": None if cool is None else str(cool),
            }
            for name, state, reason, strikes, cool in accounts
        },
    }


def sqlite_facts(path: Path) -> dict[str, Any]:
    with closing(sqlite3.connect(path)) as conn:
        return facts(conn.execute(ROWS_QUERY).fetchall(), conn.execute(ACCOUNTS_QUERY).fetchall())


def pg_facts() -> dict[str, Any]:
    with psycopg.connect(PG_BENCH_DSN) as conn:
        return facts(conn.execute(ROWS_QUERY).fetchall(), conn.execute(ACCOUNTS_QUERY).fetchall())
