"""What the submission experiments (bench/submit.py) share: their settings, the services a run
uses, the mock provider as they start it, and how a rate is computed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from bench.harness.processes import Children
from bench.harness.services import Mock

LIMIT: Final = 20  # the mock's requests per window in the precision part
WINDOW: Final = 1.0  # seconds
RATE_SHARE: Final = 0.95  # VEO_RATE as a share of the mock's limit
TARGET_SHARE: Final = 0.97  # achieved rate as a share of VEO_RATE
WORKERS: Final = 2  # worker processes (`veo-batch worker` / `celery worker`)
PRECISION_CONCURRENCY: Final = 2  # -c of each worker in the precision part
KEY: Final = "bench-key"
REDIS_URL: Final = "redis://127.0.0.1:6379/12"  # the default of --redis-url
PG_NAME: Final = "veobatch_bench2"
PG_BENCH_DSN: Final = f"host=127.0.0.1 port=5432 user=postgres dbname={PG_NAME} connect_timeout=5"
PG_URL: Final = f"postgresql://postgres@127.0.0.1:5432/{PG_NAME}"
POLL: Final = 0.05  # seconds between looks at the database or a log
IMAGE: Final = "https://img.example.com/x.jpg"
MOCK_COUNTERS: Final = ("requests", "created", "rejected_429", "busiest_window", "limit", "window")
PROMPT: Final = "row {n}: a lighthouse on a windswept beach at dawn, slow pan"  # after a tag


@dataclass(frozen=True)
class Setup:
    """What a run takes from the command line besides its sizes: the Redis database it uses
    (and flushes), and the scheduler's options (its defaults unless --scheduler-tick)."""

    redis_url: str = REDIS_URL
    tick: tuple[str, ...] = ()


def start_mock(children: Children, name: str, limit: int | None = None) -> Mock:
    """A fresh mock provider, allowing `limit` requests per WINDOW if `limit` is given."""
    options = () if limit is None else ("--limit", str(limit), "--window", str(WINDOW))
    return Mock.start(children, name, KEY, *options)


def rate(count: int, first: float | None, last: float | None) -> float:
    """Events per second between the first and the last of `count` events."""
    if count < 2 or first is None or last is None or last <= first:
        return 0.0
    return (count - 1) / (last - first)
