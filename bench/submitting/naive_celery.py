"""Baseline of the precision experiment: a plain Celery task with Celery's own rate limit, what
users get without us.

In the same run as veo-batch's precision (bench/submitting/precision.py), on a fresh mock with
the same limit (20 requests per sliding 1 s window): a plain Celery task with
`rate_limit='20/s'` that POSTs one row with httpx and nothing else (no retry), run by two
`celery worker -c 2` processes, and 1,000 tasks (`--rows`) sent to them. Each request's time
and HTTP status is appended to a file by the task; the same rates are computed from those,
next to the mock's 429s and busiest window. Celery's rate_limit holds per worker process, so
two workers send about twice the rate. On the Redis transport, Celery's rate limit also
collapses to about one task per second per worker after a first burst of a few seconds, so
the baseline is watched for at most 60 s (`--naive-seconds`): the table says how many tasks
ran, and the request rate of the first 3 s apart from the rest. Its tasks left in Redis are
flushed away, never run.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, Final

from bench.harness.processes import BenchError, Child, Children, base_env
from bench.harness.services import WORKER_READY, flush_redis
from bench.submitting.config import (
    IMAGE,
    KEY,
    LIMIT,
    MOCK_COUNTERS,
    POLL,
    PRECISION_CONCURRENCY,
    WORKERS,
    rate,
    start_mock,
)
from veobatch.provider.relay import SUBMIT_PATH

NAIVE_RATE_LIMIT: Final = "20/s"
NAIVE_SECONDS: Final = 60.0  # the longest the naive baseline is watched (--naive-seconds)
NAIVE_BURST_SECONDS: Final = 3  # its first seconds, reported apart from the rest

# Written to a file of its own and imported by the Celery workers as `naive_app`.
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


def precision_naive(
    children: Children, work: Path, rows: int, max_seconds: float, redis_url: str
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
    flush_redis(redis_url)
    mock = start_mock(children, "naive-mock", LIMIT)
    workers: list[Child] = []
    try:
        env = base_env(
            PYTHONPATH=str(home),
            NAIVE_BROKER=redis_url,
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
            worker.wait_for(WORKER_READY)
        sender = Celery("naive-sender", broker=redis_url)
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
    flush_redis(redis_url)  # the tasks never run
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
