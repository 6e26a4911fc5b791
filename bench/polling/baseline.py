"""Baseline of the polling experiments: a relay-client-style poller in this process.

One `httpx.AsyncClient`, at most 8 requests at once (`--concurrency`) and at most `--cap`
tasks in flight (an asyncio semaphore each); each row is POSTed, then its task is polled every
5 s (`--interval`, counted from the last answer; the first poll 5 s after the submission)
until SUCCESS or FAILURE. No rate limit, no retry of a submission; a poll that fails is simply
made again 5 s later. Timed on its own clock, from its start to the last task seen finished;
its CPU time is this process's. With 30 s tasks, a multiple of 5 s, its sixth poll comes just
after the end: the best case of a fixed interval for wall time (a task of another length waits
half an interval on average for the poll that sees it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from bench.harness.processes import BenchError, Children
from bench.harness.procfs import own_cpu
from bench.polling.config import KEY, MOCK_COUNTERS, deadline_of, start_mock
from bench.polling.figures import RowRecord, row_facts, summarize
from veobatch.provider.relay import SUBMIT_PATH


async def _baseline(
    url: str, jobs: Path, cap: int, concurrency: int, interval: float
) -> tuple[list[RowRecord], float, int]:
    """Submit every row and poll its task every `interval` seconds until it ends, at most
    `cap` tasks in flight and `concurrency` requests at once: the rows, the seconds from the
    start to the last task seen finished, and the requests that failed."""
    with jobs.open(encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    tasks = asyncio.Semaphore(cap)
    requests = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    timeout = httpx.Timeout(60.0, connect=10.0, pool=None)
    headers = {"Authorization": f"Bearer {KEY}"}
    errors = 0
    started = time.monotonic()

    async with httpx.AsyncClient(
        base_url=url, headers=headers, timeout=timeout, limits=limits
    ) as client:

        async def follow(row: dict[str, Any]) -> RowRecord:
            nonlocal errors
            payload = {k: row[k] for k in ("prompt", "model", "images")}
            async with tasks:
                try:
                    async with requests:
                        response = await client.post(SUBMIT_PATH, json=payload)
                    response.raise_for_status()
                    task_id = str(response.json()["task_id"])
                except (httpx.HTTPError, ValueError, KeyError):
                    errors += 1
                    return RowRecord("unsent", 0, None, None)  # never resent: it may exist
                submitted, polls = time.monotonic() - started, 0
                path = f"{SUBMIT_PATH}/{quote(task_id, safe='')}"
                while True:
                    await asyncio.sleep(interval)
                    polls += 1
                    try:
                        async with requests:
                            response = await client.get(path)
                        response.raise_for_status()
                        status = response.json().get("status")
                    except (httpx.HTTPError, ValueError):
                        errors += 1
                        continue
                    if status in ("SUCCESS", "FAILURE"):
                        done = "succeeded" if status == "SUCCESS" else "failed"
                        return RowRecord(done, polls, submitted, time.monotonic() - started)

        records = await asyncio.gather(*(follow(row) for row in rows))
    last = max((r.finished for r in records if r.finished is not None), default=0.0)
    return list(records), last, errors


def baseline(args: argparse.Namespace, children: Children, jobs: Path) -> dict[str, Any]:
    print(
        f"baseline: httpx poller every {args.interval:g} s, {args.rows:,} rows, cap "
        f"{args.cap:,}, {args.concurrency} requests at once ...",
        flush=True,
    )
    mock = start_mock(children, "baseline-mock", args)
    try:
        before = own_cpu()
        follow = _baseline(mock.url, jobs, args.cap, args.concurrency, args.interval)
        try:
            records, wall, errors = asyncio.run(asyncio.wait_for(follow, timeout=deadline_of(args)))
        except TimeoutError as exc:
            raise BenchError(f"the baseline did not end in {deadline_of(args):.0f} s") from exc
        cpu = own_cpu() - before
        stats = mock.facts(MOCK_COUNTERS)
    finally:
        children.stop(mock.child)
    rows = row_facts(records, args.task_seconds)
    result = summarize(args, f"httpx every {args.interval:g} s", wall, stats, rows, cpu)
    result["interval"] = args.interval
    result["concurrency"] = args.concurrency
    result["request_errors"] = errors
    if errors:
        result["notes"].append(f"{errors:,} of its requests failed")
    return result
