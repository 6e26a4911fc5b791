"""Baseline of the overhead experiment: what a user would write without us.

One process, one `httpx.AsyncClient`, 4 and then 8 requests in flight, POSTs each row and
appends its task_id to a file; no database, no checks. It runs as its own file (an
interpreter that imports httpx and nothing else), its clock printed as JSON at the end. Timed
two ways: from its first POST to its last task_id (its own clock) and from spawning it to its
exit (interpreter start-up included).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Final

from bench.harness.processes import BenchError, Children, base_env
from bench.submitting.config import KEY, MOCK_COUNTERS, start_mock
from bench.submitting.overhead import run_timed
from veobatch.provider.relay import SUBMIT_PATH

SCRIPT_CONCURRENCY: Final = (4, 8)

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
