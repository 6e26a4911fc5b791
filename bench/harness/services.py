"""What the benchmarks run against: the mock provider (`veo-batch mock-api`, a fresh child for
each measurement so that its counters start at zero) and the job files it is sent; scratch
PostgreSQL databases and Redis databases; and veo-batch's distributed processes, the workers
and the scheduler, started and waited for until they are ready."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, LiteralString

import httpx
import psycopg
from psycopg import sql

from bench.harness.processes import (
    BenchError,
    Child,
    Children,
    base_env,
    run_quietly,
    veo_batch,
)

PG_ADMIN_DSN: Final = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=5"
WORKER_READY: Final = r"@\S+ ready\."  # what a Celery worker logs once it takes tasks
SCHEDULER_RUNNING: Final = r"scheduler running"


@dataclass
class Mock:
    """A mock provider (`veo-batch mock-api`) running as `child`, answering at `url`."""

    child: Child
    url: str

    @classmethod
    def start(cls, children: Children, name: str, key: str, *options: str) -> Mock:
        """A fresh mock provider in a subprocess, on a port the system picks."""
        argv = veo_batch("mock-api", "--port", "0", "--key", key, *options)
        child = children.spawn(name, argv, base_env())
        _, match = child.wait_for(r"mock provider on (http://\S+)")
        return cls(child, match[1])

    def stats(self) -> dict[str, Any]:
        response = httpx.get(f"{self.url}/_mock/stats", timeout=30)
        response.raise_for_status()
        stats: dict[str, Any] = response.json()
        return stats

    def facts(self, counters: Sequence[str]) -> dict[str, Any]:
        """The mock's `counters`, with the prompts created more than once counted, not listed."""
        stats = self.stats()
        created = stats.get("created_by_prompt", {})
        return {
            **{name: stats[name] for name in counters},
            "prompts_created_twice": sum(1 for n in created.values() if n > 1),
        }


def write_jobs(path: Path, rows: int, row_id: str, prompt: str, image: str) -> Path:
    """A JSON Lines job file whose prompts are all different (the mock counts per prompt):
    `row_id` and `prompt` are formats of the row's number `n`."""
    with path.open("w", encoding="utf-8") as out:
        for n in range(rows):
            row = {
                "id": row_id.format(n=n),
                "prompt": prompt.format(n=n),
                "model": "veo3.1",
                "images": [image],
            }
            out.write(json.dumps(row) + "\n")
    return path


# ---------------------------------------------------------------------------------- PostgreSQL


def pg_admin(statement: LiteralString, database: str) -> None:
    """Run `statement` ({} for the name `database`) on the server's `postgres` database."""
    query = sql.SQL(statement).format(sql.Identifier(database))
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(query)


def recreate_database(database: str) -> None:
    """Drop `database` if it exists (closing its connections) and create it empty."""
    drop_database(database)
    pg_admin("CREATE DATABASE {}", database)


def drop_database(database: str) -> None:
    pg_admin("DROP DATABASE IF EXISTS {} WITH (FORCE)", database)


def fresh_database(database: str, url: str) -> dict[str, str]:
    """Drop and create `database`, migrate it (`veo-batch db upgrade` at `url`); the
    environment that points veo-batch at it."""
    recreate_database(database)
    env = base_env(VEO_DATABASE_URL=url)
    run_quietly(veo_batch("db", "upgrade"), env)
    return env


# ---------------------------------------------------------------------------------- Redis

# Redis is imported where it is used: load.py needs none, and every module it imports raises
# its own peak RSS, the floor of the peak RSS it measures in its children.


def flush_redis(url: str) -> None:
    import redis  # noqa: PLC0415 - see above

    client = redis.Redis.from_url(url, socket_timeout=10)
    try:
        client.flushdb()
    finally:
        client.close()


def check_services(database: str, redis_url: str) -> None:
    """Fail unless PostgreSQL (its `postgres` database) and Redis at `redis_url` answer."""
    import redis  # noqa: PLC0415 - see above

    try:
        pg_admin("SELECT 1", database)
    except psycopg.OperationalError as exc:
        raise BenchError(f"PostgreSQL at 127.0.0.1:5432 cannot be reached: {exc}") from exc
    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise BenchError(f"Redis at {redis_url} cannot be reached: {exc}") from exc
    finally:
        client.close()


# ---------------------------------------------------------------------------------- veo-batch


def start_workers(
    children: Children,
    env: dict[str, str],
    *,
    count: int,
    concurrency: int,
    log_prefix: str,
    node_prefix: str,
) -> list[Child]:
    """`count` `veo-batch worker -c CONCURRENCY` processes, logging to LOG_PREFIXworker-N and
    named NODE_PREFIX-N@host, each waited for until it is ready."""
    workers = [
        children.spawn(
            f"{log_prefix}worker-{n}",
            veo_batch("worker", "-c", str(concurrency), "-n", f"{node_prefix}-{n}@%h"),
            env,
        )
        for n in range(1, count + 1)
    ]
    for worker in workers:
        worker.wait_for(WORKER_READY)
    return workers


def start_scheduler(
    children: Children, name: str, env: dict[str, str], *options: str
) -> tuple[Child, float]:
    """`veo-batch scheduler OPTIONS`, and the moment it said it runs (time.monotonic())."""
    scheduler = children.spawn(name, veo_batch("scheduler", *options), env)
    started, _ = scheduler.wait_for(SCHEDULER_RUNNING)
    return scheduler, started
