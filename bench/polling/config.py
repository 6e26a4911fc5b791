"""What the polling experiments (bench/poll.py) share: their settings, the mock provider as they
start it, and the bounds a run is compared with."""

from __future__ import annotations

import argparse
import math
import re
from typing import Final

from bench.harness.processes import NOT_A_PROBLEM, Children
from bench.harness.services import Mock

DEFAULT_ROWS: Final = 5_000
DEFAULT_TASK_SECONDS: Final = 30.0
DEFAULT_CAP: Final = 1_000
DEFAULT_RATE: Final = "300/s"
DEFAULT_CONCURRENCY: Final = 8  # `veo-batch run -c`, and the baseline's requests at once
DEFAULT_INTERVAL: Final = 5.0  # the baseline's seconds between polls of a task
WORKERS: Final = 2  # `veo-batch worker` processes in the distributed run
WORKER_CONCURRENCY: Final = 2  # -c of each
KEY: Final = "mock-key"
REDIS_URL: Final = "redis://127.0.0.1:6379/13"  # the default of --redis-url
PG_NAME: Final = "veobatch_bench3"
PG_BENCH_DSN: Final = f"host=127.0.0.1 port=5432 user=postgres dbname={PG_NAME} connect_timeout=5"
PG_URL: Final = f"postgresql://postgres@127.0.0.1:5432/{PG_NAME}"
STALL_SECONDS: Final = 60.0  # no request reaches the mock for this long: the run is stuck
LOOK_SECONDS: Final = 5.0  # seconds between looks at the mock's counters while a run goes on
FINISHED: Final = ("succeeded", "failed")
NOT_A_PROBLEM_OR_REMOTE_ERROR: Final = re.compile(
    NOT_A_PROBLEM.pattern
    + r"|^errors: remote ×\d"  # `run`'s summary of tasks the mock failed (--failure-rate)
)
IMAGE: Final = "https://img.example.com/1.jpg"
MOCK_COUNTERS: Final = (
    "requests",
    "created",
    "polls",
    "peak_running",
    "rejected_429",
    "video_requests",
)
PROMPT: Final = "row {n}: a fox in snow at dusk, slow dolly in"


def start_mock(children: Children, name: str, args: argparse.Namespace) -> Mock:
    """A fresh mock provider whose tasks take --task-seconds and fail at --failure-rate."""
    return Mock.start(
        children,
        name,
        KEY,
        "--task-seconds",
        f"{args.task_seconds:g}",
        "--failure-rate",
        f"{args.failure_rate:g}",
    )


def bounds(args: argparse.Namespace) -> dict[str, float]:
    """The least wall time of any poller under the cap, and the least requests ÷ the rate."""
    waves = math.ceil(args.rows / args.cap)
    return {
        "waves": waves,
        "waves_seconds": waves * args.task_seconds,
        "rate_seconds": 2 * args.rows / args.rate_per_second,
    }


def deadline_of(args: argparse.Namespace) -> float:
    """Seconds a run may take before the benchmark gives up on it."""
    found = bounds(args)
    return 300 + 4 * (found["waves_seconds"] + found["rate_seconds"])
