"""The table of the polling experiments (bench/poll.py), and veo-batch's polls per task and
requests as ratios to the baseline measured in the same run."""

from __future__ import annotations

import argparse
import textwrap
from collections.abc import Sequence
from typing import Any

from bench.harness.results import check_cell, times
from bench.polling.config import bounds
from veobatch.cli.output import table_text


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def histogram(polls_per_row: dict[str, int]) -> str:
    """`{"2": 4998, "3": 2}` → `2:4,998 3:2`."""
    return " ".join(f"{k}:{v:,}" for k, v in polls_per_row.items())


def table(results: Sequence[dict[str, Any]], args: argparse.Namespace) -> str:
    headers = [
        "TOOL",
        "CREATED",
        "OK/FAILED",
        "POLLS",
        "POLLS/TASK",
        "REQUESTS",
        "LEAST",
        "VS LEAST",
        "PEAK/CAP",
        "CAP USE",
        "WALL s",
        "VS BOUND",
        "LAG p50/p90 s",
        "CPU s",
        "CHECK",
    ]
    rows = []
    for r in results:
        statuses = r["statuses"]
        lag = r["lag_seconds"]
        rows.append(
            [
                r["tool"],
                f"{r['mock']['created']:,}",
                f"{statuses.get('succeeded', 0):,}/{statuses.get('failed', 0):,}",
                f"{r['mock']['polls']:,}",
                _number(r["polls_per_finished_task"]),
                f"{r['requests']:,}",
                f"{r['least_requests']:,}",
                times(r["requests_over_least"]),
                f"{r['peak_running']:,}/{r['cap']:,}",
                "" if r["cap_use"] is None else f"{100 * r['cap_use']:.0f}%",
                f"{r['wall_seconds']:.1f}",
                times(r["wall_over_bound"]),
                f"{_seconds(lag['median'])}/{_seconds(lag['p90'])}",
                f"{r['cpu_seconds']:.1f}",
                check_cell(r["wrong"]),
            ]
        )
    found = bounds(args)
    notes = [
        f"{args.rows:,} rows, tasks of {args.task_seconds:g} s at the mock, at most "
        f"{args.cap:,} in flight, VEO_RATE={args.rate} (veo-batch only).",
        "POLLS and REQUESTS: as the mock counted them; POLLS/TASK: polls ÷ tasks finished; LEAST: "
        "one submit + one poll per task created; PEAK/CAP: the most tasks generating at once "
        "by the mock's clock; CAP USE: created × task seconds ÷ (first submission → last task "
        "seen finished) ÷ the cap.",
        f"WALL: veo-batch from spawning `run` to its exit (loading and exporting included), the "
        f"baseline on its own clock; BOUND: ceil(rows ÷ cap) × task seconds = "
        f"{found['waves']:g} × {args.task_seconds:g} = {found['waves_seconds']:.0f} s (and "
        f"the least requests ÷ VEO_RATE: {found['rate_seconds']:.0f} s). LAG: finished_at - "
        "submitted_at - task seconds, how long a finished task waited for the poll that saw "
        "it. CPU: the poller's processes.",
        "polls per row: "
        + "; ".join(f"{r['tool']}: {histogram(r['polls_per_row'])}" for r in results),
    ]
    for r in results:
        notes += [f"note: {r['tool']}: {note}" for note in r["notes"]]
    return table_text(headers, rows) + "\n\n" + "\n".join(textwrap.fill(n, 100) for n in notes)


def comparison(results: Sequence[dict[str, Any]]) -> dict[str, float]:
    """veo-batch's polls per task and requests ÷ the baseline's."""
    by_tool = {r["tool"].split(" ")[0]: r for r in results}
    base = by_tool.get("httpx")
    ratios: dict[str, float] = {}
    if base is None:
        return ratios
    for r in results:
        if r is base or not base["polls_per_finished_task"]:
            continue
        key = "embedded" if r["tool"] == "veo-batch run" else "distributed"
        ratios[f"{key}_polls_per_task"] = (
            r["polls_per_finished_task"] / base["polls_per_finished_task"]
        )
        ratios[f"{key}_requests"] = r["requests"] / base["requests"]
    return ratios
