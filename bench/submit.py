"""Benchmark: submitting rows to the provider, for precision under a rate limit and for overhead.

Every figure comes from one run of this script, against the mock provider (`veo-batch mock-api`,
a subprocess of its own, a fresh one for each measurement so its counters start at zero), a
fresh PostgreSQL database `veobatch_bench2` (dropped and created again for each distributed run,
migrated before any clock starts, dropped at the end) and Redis database 12 (flushed before
each run). Every process this script starts gets a process group of its own and is stopped
(SIGTERM, then SIGKILL) when its part is over, on errors and on Ctrl-C too.

1. Precision. The mock allows 20 requests per sliding 1 s window (a 21st is answered 429);
   VEO_RATE is 95% of that, `19/s`. 1,000 rows (`--rows`) are loaded with `veo-batch load`,
   two `veo-batch worker -c 2` processes are started and waited for (`ready.`), then
   `veo-batch scheduler` with its default settings (`--scheduler-tick` to try another).
   Measured:

   - achieved rate: (rows created - 1) / (last `submitted_at` - first `submitted_at`), from the
     database (`submitted_at` is taken when the answer is recorded), as a % of VEO_RATE
     (target: at least 97%); the request rate the same way from every submit attempt, and the
     mock's request count over the whole run (scheduler start to every row having its task);
   - 429s the mock sent (target 0) and its busiest 1 s window (target at most 20);
   - rows created twice (must be 0).

   The naive baseline, in the same run, on a fresh mock with the same limit: a plain Celery
   task with `rate_limit='20/s'` that POSTs one row with httpx and nothing else (no retry),
   run by two `celery worker -c 2` processes, and 1,000 tasks sent to them. Each request's
   time and HTTP status is appended to a file by the task; the same rates are computed from
   those, next to the mock's 429s and busiest window. Celery's rate_limit holds per worker
   process, so two workers send about twice the rate: what users get without us. On the
   Redis transport, Celery's rate limit also collapses to about one task per second per
   worker after a first burst of a few seconds, so the baseline is watched for at most 60 s
   (`--naive-seconds`): the table says how many tasks ran, and the request rate of the first
   3 s apart from the rest. Its tasks left in Redis are flushed away, never run.

2. Overhead. No rate limit: the mock accepts everything, VEO_RATE is unset. 10,000 rows
   (`--overhead-rows`), the same JSON Lines file for every tool:

   - the baseline script: one process, one `httpx.AsyncClient`, 4 and then 8 requests in
     flight, POSTs each row and appends its task_id to a file; no database, no checks. Timed
     two ways: from its first POST to its last task_id (its own clock) and from spawning it
     to its exit (interpreter start-up included). The faster concurrency is "the script";
   - distributed veo-batch: PostgreSQL, Redis, two `veo-batch worker -c N` processes (N from
     `--overhead-concurrency`, several values are each measured; by default the worker's own
     default, one process per CPU), `veo-batch scheduler` as
     above. Timed from the scheduler's "scheduler running" line (the workers are ready before)
     to every row having its task in the database (polled every 50 ms). Compared with the
     script's own clock;
   - embedded veo-batch: `veo-batch run FILE` (its defaults) on a fresh SQLite file, sending
     to the same kind of mock through VEO_API_BASE/VEO_API_KEY (not `--mock`). Timed from spawn
     to exit, so it includes loading and checking the file, migrating SQLite and exporting
     the results CSV; compared with the script timed from spawn to exit.

   Before this part, 50 requests are sent one after another on one connection to an idle
   mock and timed: an answer slower than 10 ms is a stall (as when the mock wrote headers
   and body in two writes with Nagle's algorithm on: ~43 ms each), which bounds every tool
   at requests in flight ÷ that time, and the table says so. For each run the CPU time of
   the mock (% of one core: near 100% means the mock is the bottleneck) and how busy the
   whole machine was (both cores, PostgreSQL and Redis included) are reported.

   A second pair of tables gives, for each run and each process group in it, the CPU time
   per row and the peak memory, over the run's own clock (the script and `run`: spawn →
   exit; the workers: scheduler start → all tasks, their start-up left out). The groups: the
   mock; the script or `veo-batch run`; each `veo-batch worker` (its whole process tree, the
   prefork children too) and the scheduler; and for the distributed runs the services they
   use, PostgreSQL (every `postgres` process on the machine) and Redis (redis-server).

   - CPU ms/row: user + system CPU seconds * 1000 / rows. From /proc/PID/stat (utime +
     stime, plus cutime + cstime, the children a process reaped) summed over the group's
     processes at the start and at the end: the difference. A process started meanwhile
     (a new PostgreSQL backend) counts from zero; one that ended was reaped by a process
     still there (the postmaster, a worker), so its time is in that one's cutime. The
     script and `run` exit first: their CPU is the rusage `os.wait4` gives once reaped.
     The benchmark's own polling connection is opened before the clock starts and closed
     after it stops, and its backend is left out of PostgreSQL. When other databases of
     the server had transactions meanwhile (pg_stat_database, read at the start and at the
     stop: tests run against the same server, say), PostgreSQL's figure includes their work:
     it is flagged `*` and the JSON names them (`postgres_shared_with`). TOTAL is the sum
     over the groups; MACHINE is the busy time of all cores from /proc/stat (this script
     and whatever else runs on the machine included): MACHINE - TOTAL is what the groups
     leave out.
   - Peak RSS MiB: a thread looks at every process every 0.2 s (one pass over /proc/PID/stat,
     whose field 24 is VmRSS in pages) and keeps each group's largest sum. RSS counts a
     shared page in every process that maps it, so a sum overstates a group's memory
     (PostgreSQL's shared buffers, the pages prefork children share with their parent). The
     JSON also has the script's and `run`'s own peak from their rusage (`ru_maxrss`), which
     Linux starts at this script's peak (the child begins as a copy of it): that floor is
     recorded next to it.

Every run is checked: every row created exactly once at the mock, every row with its task. A run
that does not finish (no row done for 60 s, or its deadline) stops the benchmark with the
row counts per status, and problems in the logs of veo-batch's processes (tracebacks, ERROR
and WARNING lines) are printed. The commit and a hash of the working tree's changes are
recorded at the start and checked again at the end (a change meanwhile is warned about).
Results: a table per part and `bench/out/submit-<time>.json`.

    python bench/submit.py                          # 1,000 + 10,000 rows, about 10 minutes
    python bench/submit.py --rows 100 --overhead-rows 1000
    python bench/submit.py --skip-overhead --keep   # keep the temporary directory and logs
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sqlite3
import sys
import time
from collections import Counter
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import httpx
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo root: bench.common

from bench.common import (
    CLK_TCK,
    RSS_EVERY,
    BenchError,
    Child,
    Children,
    Mock,
    PeakRss,
    Selector,
    Snapshot,
    base_env,
    check_services,
    drop_database,
    flush_redis,
    git_state,
    machine_facts,
    note_code_change,
    print_problems,
    problems_of,
    reap,
    recreate_database,
    run_quietly,
    service,
    tree_of,
    veo_batch,
    workspace,
    write_jobs,
    write_json,
)
from veobatch.cli.output import table_text
from veobatch.process import RUN_CONCURRENCY, worker_processes
from veobatch.provider.client import SUBMIT_PATH

DEFAULT_ROWS: Final = 1_000
DEFAULT_OVERHEAD_ROWS: Final = 10_000
LIMIT: Final = 20  # the mock's requests per window in the precision part
WINDOW: Final = 1.0  # seconds
RATE_SHARE: Final = 0.95  # VEO_RATE as a share of the mock's limit
TARGET_SHARE: Final = 0.97  # achieved rate as a share of VEO_RATE
WORKERS: Final = 2  # worker processes (`veo-batch worker` / `celery worker`)
PRECISION_CONCURRENCY: Final = 2  # -c of each worker in the precision part
DEFAULT_OVERHEAD_CONCURRENCY: Final = (worker_processes(),)  # the worker's own default
SCRIPT_CONCURRENCY: Final = (4, 8)
EMBEDDED_CONCURRENCY: Final = RUN_CONCURRENCY  # `veo-batch run`'s default: no flag given
NAIVE_RATE_LIMIT: Final = "20/s"
NAIVE_SECONDS: Final = 60.0  # the longest the naive baseline is watched (--naive-seconds)
NAIVE_BURST_SECONDS: Final = 3  # its first seconds, reported apart from the rest
LATENCY_PROBES: Final = 50  # requests that time the mock's answer before the overhead part
STALL_MS: Final = 10.0  # an answer slower than this from an idle local mock is a stall
KEY: Final = "bench-key"
REDIS_URL: Final = "redis://127.0.0.1:6379/12"
PG_NAME: Final = "veobatch_bench2"
PG_BENCH_DSN: Final = f"host=127.0.0.1 port=5432 user=postgres dbname={PG_NAME} connect_timeout=5"
PG_URL: Final = f"postgresql://postgres@127.0.0.1:5432/{PG_NAME}"
TICK: list[str] = []  # the scheduler's options: its defaults unless --scheduler-tick
POLL: Final = 0.05  # seconds between looks at the database or a log
STALL_SECONDS: Final = 60.0  # no row done for this long: the run is stuck
OPEN_STATUSES: Final = ("pending", "queued", "submitting")
IMAGE: Final = "https://img.example.com/x.jpg"
MOCK_COUNTERS: Final = ("requests", "created", "rejected_429", "busiest_window", "limit", "window")
PROMPT: Final = "row {n}: a lighthouse on a windswept beach at dawn, slow pan"  # after a tag

# The baseline of the overhead part: what a user would write without us. Run as its own file
# (an interpreter that imports httpx and nothing else), its clock printed as JSON at the end.
SCRIPT: Final = r'''"""One process, one httpx.AsyncClient, N in flight; task_ids to a file."""
import asyncio
import json
import sys
import time

import httpx


async def main(jobs, out_path, base, key, path, concurrency, deadline_s):
    with open(jobs, encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    pending = iter(rows)
    failures = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    timeout = httpx.Timeout(60.0, connect=10.0)
    headers = {"Authorization": f"Bearer {key}"}
    with open(out_path, "a", encoding="utf-8") as out:
        async with httpx.AsyncClient(
            base_url=base, headers=headers, timeout=timeout, limits=limits
        ) as client:
            started = time.perf_counter()
            deadline = started + deadline_s

            async def work():
                for row in pending:
                    if time.perf_counter() > deadline:
                        raise TimeoutError(f"the deadline of {deadline_s} s passed")
                    payload = {k: row[k] for k in ("prompt", "model", "images")}
                    try:
                        response = await client.post(path, json=payload)
                        response.raise_for_status()
                        task_id = response.json()["task_id"]
                    except (httpx.HTTPError, ValueError, KeyError) as exc:
                        failures.append(f"{row['id']}: {exc!r}")
                        continue
                    out.write(task_id + "\n")

            await asyncio.gather(*(work() for _ in range(concurrency)))
            seconds = time.perf_counter() - started
    print(json.dumps({"rows": len(rows), "seconds": seconds, "failures": failures[:5],
                      "failed": len(failures)}))


if __name__ == "__main__":
    jobs, out, base, key, path, concurrency, deadline = sys.argv[1:8]
    asyncio.run(main(jobs, out, base, key, path, int(concurrency), float(deadline)))
'''

# The baseline of the precision part: a plain Celery task with Celery's own rate limit.
NAIVE_APP: Final = r'''"""A plain Celery task with rate_limit that POSTs one row with httpx."""
import os
import time

import httpx
from celery import Celery

app = Celery("naive", broker=os.environ["NAIVE_BROKER"])
app.conf.update(task_ignore_result=True, broker_connection_retry_on_startup=True)

_client = None
_log = None


@app.task(name="naive.submit", rate_limit="20/s")
def submit(payload):
    global _client, _log
    if _client is None:
        _client = httpx.Client(
            base_url=os.environ["NAIVE_API_BASE"],
            headers={"Authorization": "Bearer " + os.environ["NAIVE_API_KEY"]},
            timeout=httpx.Timeout(60.0, connect=10.0),
        )
        name = os.path.join(os.environ["NAIVE_OUT"], f"{os.getpid()}.log")
        _log = open(name, "a", encoding="utf-8", buffering=1)
    try:
        status = str(_client.post(os.environ["NAIVE_PATH"], json=payload).status_code)
    except httpx.HTTPError as exc:
        status = type(exc).__name__
    _log.write(f"{time.time():.6f} {status}\n")
'''


# ---------------------------------------------------------------------------------- services


def start_mock(children: Children, name: str, limit: int | None = None) -> Mock:
    """A fresh mock provider, allowing `limit` requests per WINDOW if `limit` is given."""
    options = () if limit is None else ("--limit", str(limit), "--window", str(WINDOW))
    return Mock.start(children, name, KEY, *options)


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


def fresh_database() -> dict[str, str]:
    """Drop and create `veobatch_bench2`, migrate it; the environment that points at it."""
    recreate_database(PG_NAME)
    env = base_env(VEO_DATABASE_URL=PG_URL)
    run_quietly(veo_batch("db", "upgrade"), env)
    return env


def services(exclude: int) -> dict[str, Selector]:
    """What a distributed run uses besides its own processes: PostgreSQL (every `postgres`
    process on the machine but `exclude`, this script's own backend) and Redis."""
    return {"postgres": service("postgres", exclude={exclude}), "redis": service("redis-server")}


def rate(count: int, first: float | None, last: float | None) -> float:
    """Events per second between the first and the last of `count` events."""
    if count < 2 or first is None or last is None or last <= first:
        return 0.0
    return (count - 1) / (last - first)


# ---------------------------------------------------------------------------------- CPU


def machine_jiffies() -> tuple[int, int]:
    """(busy, total) CPU time of the whole machine, all cores, from /proc/stat."""
    with open("/proc/stat") as handle:
        values = [int(v) for v in handle.readline().split()[1:9]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


@dataclass
class CpuClock:
    """CPU time and peak RSS of groups of processes, and how busy the machine was, between
    start() (entering the `with` block) and stop(). Each group is a Selector: a child's
    process tree (tree_of) or a system service (service). A group whose processes all exit
    meanwhile gets its CPU through `spent` (its rusage once reaped); one watched after the
    start has its peak RSS only. Leaving the block stops the RSS sampler in any case."""

    groups: dict[str, Selector]
    began: float = 0.0
    machine: tuple[int, int] = (0, 0)
    cpu: dict[str, float] = field(default_factory=dict)
    spent: dict[str, float] = field(default_factory=dict)
    rss: PeakRss = field(default_factory=PeakRss)

    def _now(self) -> dict[str, float]:
        snap = Snapshot.take()
        return {name: snap.cpu_seconds(select(snap)) for name, select in self.groups.items()}

    def __enter__(self) -> CpuClock:
        for name, select in self.groups.items():
            self.rss.watch(name, select)
        self.began = time.monotonic()
        self.machine = machine_jiffies()
        self.cpu = self._now()
        self.rss.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.rss.stop()

    def watch(self, name: str, select: Selector) -> None:
        self.rss.watch(name, select)

    def stop(self, rows: int) -> dict[str, Any]:
        """The figures; CPU also in ms per row of the `rows` measured (and in total)."""
        wall = time.monotonic() - self.began
        busy, total = machine_jiffies()
        used = {name: s - self.cpu[name] for name, s in self._now().items()}
        used.update(self.spent)
        peaks = self.rss.stop()
        machine = (busy - self.machine[0]) / CLK_TCK

        def per_row(seconds: float) -> float:
            return 1000 * seconds / rows

        return {
            "wall_seconds": wall,
            "cpu_seconds": used,
            "cpu_share_of_one_core": {name: s / wall for name, s in used.items()},
            "cpu_ms_per_row": {
                **{name: per_row(s) for name, s in used.items()},
                "total": per_row(sum(used.values())),
            },
            "peak_rss_mib": peaks,
            "rss_samples": self.rss.samples,
            "machine_busy": (busy - self.machine[0]) / max(total - self.machine[1], 1),
            "machine_cpu_seconds": machine,
            "machine_cpu_ms_per_row": per_row(machine),
            "cpus": os.cpu_count(),
        }


# ---------------------------------------------------------------------------------- veo-batch


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
    *,
    rate_setting: str | None,
    concurrency: int,
    timeout: float,
) -> dict[str, Any]:
    """Load `jobs` as batch `name` into a fresh database, start the workers, then the
    scheduler, and time the batch from the scheduler's start to every row having its task."""
    env = fresh_database()
    flush_redis(REDIS_URL)
    run_quietly(veo_batch("load", str(jobs), "--batch", name), env)
    # Polls would share the rate with submissions: held off, so every slot is a submission.
    env.update(
        VEO_REDIS_URL=REDIS_URL, VEO_API_BASE=mock.url, VEO_API_KEY=KEY, VEO_POLL_DELAY="3600"
    )
    if rate_setting is not None:
        env["VEO_RATE"] = rate_setting
    workers = [
        children.spawn(
            f"{name}-worker-{n}",
            veo_batch("worker", "-c", str(concurrency), "-n", f"{name}-{n}@%h"),
            env,
        )
        for n in range(1, WORKERS + 1)
    ]
    for worker in workers:
        worker.wait_for(r"@\S+ ready\.")
    # Opened before the clock starts and closed after it stops, so that its backend (this
    # script's polling) is left out of PostgreSQL's CPU time: an ended one would count.
    with psycopg.connect(PG_BENCH_DSN, autocommit=True) as conn:
        scheduler = children.spawn(f"{name}-scheduler", veo_batch("scheduler", *TICK), env)
        started, _ = scheduler.wait_for(r"scheduler running")
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


# ---------------------------------------------------------------------------------- precision


def precision_ours(children: Children, work: Path, rows: int) -> dict[str, Any]:
    rate_setting = f"{LIMIT * RATE_SHARE:g}/s"
    print(
        f"precision: veo-batch, {rows:,} rows, VEO_RATE={rate_setting}, mock limit {LIMIT}/"
        f"{WINDOW:g} s, {WORKERS} workers -c {PRECISION_CONCURRENCY} ...",
        flush=True,
    )
    mock = start_mock(children, "precision-mock", LIMIT)
    try:
        jobs = write_jobs(
            work / "precision.jsonl", rows, "precision-{n}", "precision " + PROMPT, IMAGE
        )
        result = run_distributed(
            children,
            work,
            "precision",
            jobs,
            rows,
            mock,
            rate_setting=rate_setting,
            concurrency=PRECISION_CONCURRENCY,
            timeout=60 + 3 * rows / (LIMIT * RATE_SHARE),
        )
    finally:
        children.stop(mock.child)
    target = LIMIT * RATE_SHARE
    result["rate_per_s"] = target
    result["created_share_of_rate"] = result["database"]["created_per_s"] / target
    result["mock_requests_per_s_over_run"] = result["mock"]["requests"] / result["seconds"]
    result["wrong"] = check_all_submitted(result, rows)
    return result


def precision_naive(
    children: Children, work: Path, rows: int, max_seconds: float
) -> dict[str, Any]:
    """Two plain Celery workers with rate_limit='20/s' on the task, `rows` tasks sent, watched
    until every task made its request or `max_seconds` passed (Celery's rate limit on the
    Redis transport slows to about one task per second per worker after a first burst)."""
    from celery import Celery  # noqa: PLC0415 - only this part sends Celery tasks itself

    print(
        f"precision: naive Celery, {rows:,} tasks, rate_limit={NAIVE_RATE_LIMIT!r}, "
        f"{WORKERS} workers -c {PRECISION_CONCURRENCY}, at most {max_seconds:g} s ...",
        flush=True,
    )
    home, out = work / "naive", work / "naive-out"
    home.mkdir()
    out.mkdir()
    (home / "naive_app.py").write_text(NAIVE_APP, encoding="utf-8")
    flush_redis(REDIS_URL)
    mock = start_mock(children, "naive-mock", LIMIT)
    workers: list[Child] = []
    try:
        env = base_env(
            PYTHONPATH=str(home),
            NAIVE_BROKER=REDIS_URL,
            NAIVE_API_BASE=mock.url,
            NAIVE_API_KEY=KEY,
            NAIVE_OUT=str(out),
            NAIVE_PATH=SUBMIT_PATH,
        )
        for n in range(1, WORKERS + 1):
            argv = [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "naive_app",
                "worker",
                "--loglevel=INFO",
                f"--concurrency={PRECISION_CONCURRENCY}",
                "-Q",
                "naive",
                "-n",
                f"naive-{n}@%h",
            ]
            workers.append(children.spawn(f"naive-worker-{n}", argv, env, cwd=home))
        for worker in workers:
            worker.wait_for(r"@\S+ ready\.")
        sender = Celery("naive-sender", broker=REDIS_URL)
        started = time.monotonic()
        try:
            for n in range(rows):
                payload = {"prompt": f"naive row {n}", "model": "veo3.1", "images": [IMAGE]}
                sender.send_task("naive.submit", args=[payload], queue="naive")
        finally:
            sender.close()
        sent = time.monotonic() - started
        deadline = started + max_seconds
        while (answered := len(_naive_lines(out))) < rows and time.monotonic() < deadline:
            if any(w.proc.poll() is not None for w in workers):
                raise BenchError("naive Celery: a worker exited:\n" + workers[0].tail())
            time.sleep(POLL)
        seconds = time.monotonic() - started
    finally:
        children.stop(*workers)
        try:
            stats = mock.facts(MOCK_COUNTERS) if mock.child.proc.poll() is None else {}
        finally:
            children.stop(mock.child)
    flush_redis(REDIS_URL)  # the tasks never run
    lines = sorted(_naive_lines(out))
    times = [t for t, _ in lines]
    created = [t for t, status in lines if status == "200"]
    per_second = Counter(int(t - times[0]) for t in times) if times else Counter()
    burst = sum(n for second, n in per_second.items() if second < NAIVE_BURST_SECONDS)
    late = [t for t in times if times and t - times[0] >= NAIVE_BURST_SECONDS]
    return {
        "rows": rows,
        "answered": answered,
        "finished": answered >= rows,
        "seconds": seconds,
        "send_seconds": sent,
        "rate_limit": NAIVE_RATE_LIMIT,
        "rate_per_s": 20.0,
        "mock": stats,
        "statuses": dict(Counter(status for _, status in lines)),
        "created_per_s": rate(len(created), min(created, default=None), max(created, default=None)),
        "requests_per_s": rate(len(times), min(times, default=None), max(times, default=None)),
        "burst_requests_per_s": burst / NAIVE_BURST_SECONDS,
        "later_requests_per_s": rate(len(late), min(late, default=None), max(late, default=None)),
        "requests_per_second": [per_second[s] for s in range(max(per_second, default=-1) + 1)],
        "mock_requests_per_s_over_run": stats.get("requests", 0) / seconds,
    }


def _naive_lines(out: Path) -> list[tuple[float, str]]:
    found = []
    for path in out.glob("*.log"):
        for line in path.read_text(encoding="utf-8").splitlines():
            moment, _, status = line.partition(" ")
            if status:
                found.append((float(moment), status))
    return found


# ---------------------------------------------------------------------------------- overhead


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
    cpu["rusage_peak_rss_floor_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return child, wall, cpu


def overhead_script(
    children: Children, work: Path, jobs: Path, rows: int, concurrency: int
) -> dict[str, Any]:
    print(f"overhead: asyncio script, {rows:,} rows, {concurrency} in flight ...", flush=True)
    script = work / "baseline.py"
    script.write_text(SCRIPT, encoding="utf-8")
    tasks = work / f"script-{concurrency}.task_ids"
    mock = start_mock(children, f"script-{concurrency}-mock")
    deadline = 60 + rows / 50
    try:
        argv = [
            sys.executable,
            str(script),
            str(jobs),
            str(tasks),
            mock.url,
            KEY,
            SUBMIT_PATH,
            str(concurrency),
            str(deadline),
        ]
        child, wall, cpu = run_timed(
            children, "script", argv, base_env(), mock, rows, deadline + 30
        )
        if child.proc.returncode != 0:
            raise BenchError(f"the script exited with {child.proc.returncode}:\n{child.tail()}")
        stats = mock.facts(MOCK_COUNTERS)
    finally:
        children.stop(mock.child)
    report = json.loads(child.output().strip().splitlines()[-1])
    with tasks.open(encoding="utf-8") as handle:
        written = sum(1 for _ in handle)
    wrong = []
    if report["failed"] or written != rows:
        wrong.append(
            f"{report['failed']} failed, {written:,} task_ids written: {report['failures']}"
        )
    if stats["created"] != rows:
        wrong.append(f"the mock created {stats['created']:,} tasks for {rows:,} rows")
    return {
        "rows": rows,
        "concurrency": concurrency,
        "seconds": report["seconds"],
        "wall_seconds": wall,
        "mock": stats,
        "cpu": cpu,
        "wrong": wrong,
    }


def overhead_distributed(
    children: Children, work: Path, jobs: Path, rows: int, concurrency: int
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


# ---------------------------------------------------------------------------------- report


def percent(value: float) -> str:
    return f"{100 * value:.1f}%"


def precision_targets(ours: dict[str, Any]) -> str:
    missed = []
    if ours["created_share_of_rate"] < TARGET_SHARE:
        missed.append(f"rate < {percent(TARGET_SHARE)}")
    if ours["mock"]["rejected_429"]:
        missed.append("429s")
    if ours["mock"]["busiest_window"] > LIMIT:
        missed.append(f"window > {LIMIT}")
    missed += ours["wrong"]
    return "MISSED: " + "; ".join(missed) if missed else "met"


def precision_table(ours: dict[str, Any] | None, naive: dict[str, Any] | None) -> str:
    headers = [
        "TOOL",
        "ROWS",
        "CREATED",
        "REQUESTS",
        "429s",
        "BUSIEST 1 s",
        "CREATED/S",
        "OF SET RATE",
        "REQUESTS/S",
        "TARGETS",
        "HOW",
    ]
    rows = []
    if ours is not None:
        rows.append(
            [
                "veo-batch",
                f"{ours['rows']:,}",
                f"{ours['mock']['created']:,}",
                f"{ours['mock']['requests']:,}",
                ours["mock"]["rejected_429"],
                ours["mock"]["busiest_window"],
                f"{ours['database']['created_per_s']:.2f}",
                percent(ours["created_share_of_rate"]),
                f"{ours['database']['requests_per_s']:.2f}",
                precision_targets(ours),
                f"VEO_RATE={ours['rate_setting']}, {WORKERS} workers -c {PRECISION_CONCURRENCY}, "
                f"{ours['seconds']:.1f} s",
            ]
        )
    if naive is not None:
        stats = naive["mock"]
        rows.append(
            [
                "naive Celery",
                f"{naive['rows']:,}",
                f"{stats.get('created', 0):,}",
                f"{stats.get('requests', 0):,}",
                stats.get("rejected_429", ""),
                stats.get("busiest_window", ""),
                f"{naive['created_per_s']:.2f}",
                percent(naive["created_per_s"] / naive["rate_per_s"]),
                f"{naive['requests_per_s']:.2f}",
                "",
                f"rate_limit={NAIVE_RATE_LIMIT!r}, {WORKERS} workers -c {PRECISION_CONCURRENCY}, "
                f"no retry; {naive['answered']:,} of {naive['rows']:,} tasks ran in "
                f"{naive['seconds']:.0f} s{'' if naive['finished'] else ' (stopped)'}: "
                f"{naive['burst_requests_per_s']:.1f} requests/s in the first "
                f"{NAIVE_BURST_SECONDS} s, {naive['later_requests_per_s']:.1f}/s after",
            ]
        )
    return (
        f"{table_text(headers, rows)}\n\nthe mock allows {LIMIT} requests per sliding {WINDOW:g} s "
        "window (BUSIEST 1 s: the most it saw in one). CREATED/S and REQUESTS/S: (n - 1) / "
        "(last - first) over the rows created and over every request; OF SET RATE: CREATED/S "
        f"÷ the rate the user set (VEO_RATE {LIMIT * RATE_SHARE:g}/s; Celery {NAIVE_RATE_LIMIT}, "
        "which holds per worker).\ntargets for veo-batch: at least "
        f"{percent(TARGET_SHARE)} of VEO_RATE, no 429, busiest window at most {LIMIT}."
    )


def mock_share(result: dict[str, Any]) -> str:
    return percent(result["cpu"]["cpu_share_of_one_core"]["mock"])


def overhead_table(
    scripts: Sequence[dict[str, Any]],
    distributed: Sequence[dict[str, Any]],
    embedded: dict[str, Any] | None,
    latency: dict[str, float],
) -> tuple[str, dict[str, float]]:
    """The table, and the ratios veo-batch / script (the best script for each clock)."""
    best_own = max((r["rows"] / r["seconds"] for r in scripts), default=0.0)
    best_wall = max((r["rows"] / r["wall_seconds"] for r in scripts), default=0.0)
    ratios: dict[str, float] = {}
    headers = [
        "TOOL",
        "CONC",
        "ROWS",
        "CLOCK",
        "SECONDS",
        "ROWS/S",
        "VS SCRIPT",
        "MOCK CPU",
        "MACHINE CPU",
        "CHECK",
    ]
    rows: list[list[object]] = []

    def check(result: dict[str, Any]) -> str:
        return "ok" if not result["wrong"] else "WRONG: " + "; ".join(result["wrong"])

    for r in scripts:
        for clock, seconds in (
            ("first POST → last task_id", r["seconds"]),
            ("spawn → exit", r["wall_seconds"]),
        ):
            rows.append(
                [
                    "asyncio script",
                    r["concurrency"],
                    f"{r['rows']:,}",
                    clock,
                    f"{seconds:.2f}",
                    f"{r['rows'] / seconds:,.0f}",
                    "",
                    mock_share(r),
                    percent(r["cpu"]["machine_busy"]),
                    check(r),
                ]
            )
    for r in distributed:
        speed = r["rows"] / r["seconds"]
        ratio = speed / best_own if best_own else 0.0
        ratios[f"distributed_c{r['concurrency']}"] = ratio
        rows.append(
            [
                "veo-batch workers",
                f"{WORKERS}×{r['concurrency']}",
                f"{r['rows']:,}",
                "scheduler start → all tasks",
                f"{r['seconds']:.2f}",
                f"{speed:,.0f}",
                f"×{ratio:.2f}",
                mock_share(r),
                percent(r["cpu"]["machine_busy"]),
                check(r),
            ]
        )
    if distributed:
        ratios["distributed_best"] = max(
            v for k, v in ratios.items() if k.startswith("distributed_c")
        )
    if embedded is not None:
        speed = embedded["rows"] / embedded["seconds"]
        ratio = speed / best_wall if best_wall else 0.0
        ratios["embedded"] = ratio
        rows.append(
            [
                "veo-batch run",
                embedded["concurrency"],
                f"{embedded['rows']:,}",
                "spawn → exit",
                f"{embedded['seconds']:.2f}",
                f"{speed:,.0f}",
                f"×{ratio:.2f}",
                mock_share(embedded),
                percent(embedded["cpu"]["machine_busy"]),
                check(embedded),
            ]
        )
    notes = (
        "no rate limit; the mock accepts everything. VS SCRIPT: rows/s ÷ the faster script's "
        "rows/s on the same kind of clock (workers: the script's own clock; `run`: spawn → "
        "exit, which for `run` includes loading the file into SQLite and exporting the "
        "results).\nMOCK CPU: the mock's CPU time ÷ wall time (100% = one core: the mock is "
        f"the bottleneck); MACHINE CPU: all {os.cpu_count()} cores, every process (PostgreSQL "
        "and Redis included).\n"
        f"the mock answers one request on a kept-alive connection in {latency['median_ms']:.1f} "
        f"ms (median of {LATENCY_PROBES}; p90 {latency['p90_ms']:.1f} ms)."
        + (
            " That is a stall, not work (Nagle + delayed ACK: answer headers and body in two "
            "writes): every tool is bounded by its requests in flight ÷ that time, whatever "
            "its overhead."
            if latency["median_ms"] > STALL_MS
            else ""
        )
    )
    return f"{table_text(headers, rows)}\n\n{notes}", ratios


def measured_runs(
    scripts: Sequence[dict[str, Any]],
    distributed: Sequence[dict[str, Any]],
    embedded: dict[str, Any] | None,
) -> list[tuple[str, str, dict[str, Any]]]:
    """(tool, concurrency, result) of every run of the overhead part, in the table's order."""
    return [
        *(("asyncio script", str(r["concurrency"]), r) for r in scripts),
        *(("veo-batch workers", f"{WORKERS}×{r['concurrency']}", r) for r in distributed),
        *([("veo-batch run", str(embedded["concurrency"]), embedded)] if embedded else []),
    ]


def resources_table(runs: Sequence[tuple[str, str, dict[str, Any]]]) -> str:
    """CPU ms per row and peak RSS of every process group of every run: two tables, a column
    per group (blank where a run has none)."""
    names = list(dict.fromkeys(name for _, _, r in runs for name in r["cpu"]["peak_rss_mib"]))
    columns = [name.upper() for name in names]
    cpu_rows, rss_rows = [], []
    for tool, concurrency, r in runs:
        per_row, peaks = r["cpu"]["cpu_ms_per_row"], r["cpu"]["peak_rss_mib"]
        shared = r["cpu"].get("postgres_shared_with")
        flag = {"postgres": "*"} if shared else {}
        cpu_rows.append(
            [
                tool,
                concurrency,
                *(f"{per_row[n]:.3f}{flag.get(n, '')}" if n in per_row else "" for n in names),
                f"{per_row['total']:.3f}",
                f"{r['cpu']['machine_cpu_ms_per_row']:.3f}",
            ]
        )
        rss_rows.append(
            [tool, concurrency, *(f"{peaks[n]:.0f}" if n in peaks else "" for n in names)]
        )
    cpu = table_text(["CPU MS/ROW", "CONC", *columns, "TOTAL", "MACHINE"], cpu_rows)
    rss = table_text(["PEAK RSS MiB", "CONC", *columns], rss_rows)
    notes = (
        "CPU MS/ROW: user + system CPU time over the run's clock (the script and `run`: spawn "
        "→ exit; the workers: scheduler start → all tasks) × 1000 ÷ rows, from /proc/PID/stat "
        "with the children each process reaped. A worker is its process tree (main process "
        "and prefork children); POSTGRES every `postgres` process on the machine (a backend "
        "started meanwhile counted from zero, one ended through the postmaster's reaped "
        "children) but this script's own polling backend; REDIS the redis-server process; "
        "SCRIPT and RUN from their rusage once reaped. TOTAL: the row's sum; MACHINE: the "
        f"busy time of all {os.cpu_count()} cores, every process (this script's polling "
        "too).\nPEAK RSS MiB: the largest sum of VmRSS over the group's processes, looked at "
        f"every {RSS_EVERY:g} s (MiB = 2^20 bytes). RSS counts a shared page in every process "
        "that maps it (PostgreSQL's shared buffers, what prefork children share with their "
        "parent), so a group's sum overstates its memory."
    )
    shared = [
        f"{tool} {concurrency} ({', '.join(r['cpu']['postgres_shared_with'])})"
        for tool, concurrency, r in runs
        if r["cpu"].get("postgres_shared_with")
    ]
    if shared:
        notes += (
            "\n* PostgreSQL served other databases during the run, whose work its figure "
            f"includes: {'; '.join(shared)}."
        )
    return f"{cpu}\n\n{rss}\n\n{notes}"


# ---------------------------------------------------------------------------------- main


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
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    if args.rows < 2 or args.overhead_rows < 2:
        parser.error("--rows and --overhead-rows must be at least 2")
    try:
        args.overhead_concurrency = [int(c) for c in args.overhead_concurrency.split(",") if c]
    except ValueError:
        parser.error("--overhead-concurrency takes numbers separated by commas")
    if not args.overhead_concurrency or min(args.overhead_concurrency) < 1:
        parser.error("--overhead-concurrency needs numbers of at least 1")
    return args


def run_benchmark(args: argparse.Namespace, work: Path, children: Children) -> None:
    started, code = datetime.now(UTC), git_state()
    check_services(PG_NAME, REDIS_URL)
    flush_redis(REDIS_URL)
    results: dict[str, Any] = {}
    try:
        if not args.skip_precision:
            results["precision"] = precision_ours(children, work, args.rows)
            if not args.skip_naive:
                results["naive"] = precision_naive(children, work, args.rows, args.naive_seconds)
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
                overhead_distributed(children, work, jobs, rows, c)
                for c in args.overhead_concurrency
            ]
            if not args.skip_embedded:
                results["embedded"] = overhead_embedded(children, work, jobs, rows)
    finally:
        drop_database(PG_NAME)
        flush_redis(REDIS_URL)
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
            "tick": TICK[1] if TICK else "default",
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
    if args.scheduler_tick:
        TICK[:] = ["--tick", args.scheduler_tick]
    try:
        with workspace("veobatch-submit-", args.keep) as (work, children):
            run_benchmark(args, work, children)
    except BenchError:
        return 1  # printed by workspace()
    return 0


if __name__ == "__main__":
    sys.exit(main())
