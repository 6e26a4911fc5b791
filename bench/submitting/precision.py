"""Experiment: precision of veo-batch's rate limit, and its table next to the naive baseline
(bench/submitting/naive_celery.py).

The mock allows 20 requests per sliding 1 s window (a 21st is answered 429); VEO_RATE is 95%
of that, `19/s`. 1,000 rows (`--rows`) are loaded with `veo-batch load`, two `veo-batch
worker -c 2` processes are started and waited for (`ready.`), then `veo-batch scheduler` with
its default settings (`--scheduler-tick` to try another): a distributed run as
bench/submitting/distributed.py makes it, on a fresh mock. Measured:

- achieved rate: (rows created - 1) / (last `submitted_at` - first `submitted_at`), from the
  database (`submitted_at` is taken when the answer is recorded), as a % of VEO_RATE (target:
  at least 97%); the request rate the same way from every submit attempt, and the mock's
  request count over the whole run (scheduler start to every row having its task);
- 429s the mock sent (target 0) and its busiest 1 s window (target at most 20);
- rows created twice (must be 0).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.harness.processes import Children
from bench.harness.results import percent, targets_cell
from bench.harness.services import write_jobs
from bench.submitting.config import (
    IMAGE,
    LIMIT,
    PRECISION_CONCURRENCY,
    PROMPT,
    RATE_SHARE,
    TARGET_SHARE,
    WINDOW,
    WORKERS,
    Setup,
    start_mock,
)
from bench.submitting.distributed import check_all_submitted, run_distributed
from bench.submitting.naive_celery import NAIVE_BURST_SECONDS, NAIVE_RATE_LIMIT
from veobatch.cli.output import table_text


def precision_ours(children: Children, work: Path, rows: int, setup: Setup) -> dict[str, Any]:
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
            setup,
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


def precision_targets(ours: dict[str, Any]) -> str:
    missed = []
    if ours["created_share_of_rate"] < TARGET_SHARE:
        missed.append(f"rate < {percent(TARGET_SHARE)}")
    if ours["mock"]["rejected_429"]:
        missed.append("429s")
    if ours["mock"]["busiest_window"] > LIMIT:
        missed.append(f"window > {LIMIT}")
    missed += ours["wrong"]
    return targets_cell(missed)


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
