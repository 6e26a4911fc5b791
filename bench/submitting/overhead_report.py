"""The tables of the overhead experiment (bench/submitting/overhead.py): rows per second as
ratios to the script measured in the same run, then, for each run and each process group in
it, the CPU time per row and the peak memory, over the run's own clock (the script and `run`:
spawn → exit; the workers: scheduler start → all tasks, their start-up left out). The groups:
the mock; the script or `veo-batch run`; each `veo-batch worker` (its whole process tree, the
prefork children too) and the scheduler; and for the distributed runs the services they use,
PostgreSQL (every `postgres` process on the machine) and Redis (redis-server).

- CPU ms/row: user + system CPU seconds * 1000 / rows. From /proc/PID/stat (utime + stime,
  plus cutime + cstime, the children a process reaped) summed over the group's processes at
  the start and at the end: the difference. A process started meanwhile (a new PostgreSQL
  backend) counts from zero; one that ended was reaped by a process still there (the
  postmaster, a worker), so its time is in that one's cutime. The script and `run` exit
  first: their CPU is the rusage `os.wait4` gives once reaped. The benchmark's own polling
  connection is opened before the clock starts and closed after it stops, and its backend is
  left out of PostgreSQL. When other databases of the server had transactions meanwhile
  (tests run against the same server, say), PostgreSQL's figure includes their work: it is
  flagged `*` and the JSON names them (`postgres_shared_with`). TOTAL is the sum over the
  groups; MACHINE is the busy time of all cores from /proc/stat (this script and whatever
  else runs on the machine included): MACHINE - TOTAL is what the groups leave out.
- Peak RSS MiB: a thread looks at every process every 0.2 s (one pass over /proc/PID/stat,
  whose field 24 is VmRSS in pages) and keeps each group's largest sum. RSS counts a shared
  page in every process that maps it, so a sum overstates a group's memory (PostgreSQL's
  shared buffers, the pages prefork children share with their parent).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from bench.harness.resources import RSS_EVERY
from bench.harness.results import check_cell, percent, times
from bench.submitting.config import WORKERS
from bench.submitting.overhead import LATENCY_PROBES, STALL_MS
from veobatch.cli.output import table_text


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
                    check_cell(r["wrong"]),
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
                times(ratio),
                mock_share(r),
                percent(r["cpu"]["machine_busy"]),
                check_cell(r["wrong"]),
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
                times(ratio),
                mock_share(embedded),
                percent(embedded["cpu"]["machine_busy"]),
                check_cell(embedded["wrong"]),
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
