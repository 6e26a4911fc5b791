"""The table of bench/load.py: each load's figures, veo-batch's rows per second as a ratio to
pandas' on the same database in the same run, and the targets for veo-batch (1M rows in at
most 10 s, i.e. at least 100,000 rows/s, with a peak RSS of at most 200 MB); and the JSON
file of results."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from bench.harness.results import machine_facts, targets_cell, times, write_json
from bench.loading.csv_file import SEED
from bench.loading.runs import Result
from veobatch.cli.output import table_text

TARGET_ROWS_PER_S: Final = 100_000
TARGET_RSS_MB: Final = 200


def targets_met(result: Result) -> str:
    if result.tool != "veo-batch":
        return ""
    missed = []
    if result.rows_per_s < TARGET_ROWS_PER_S:
        missed.append(f"rows/s < {TARGET_ROWS_PER_S:,}")
    if max(result.peak_rss_mb, result.tree_rss_mb) > TARGET_RSS_MB:
        missed.append(f"RSS > {TARGET_RSS_MB} MB")
    return targets_cell(missed, ", ")


def ratios(results: Sequence[Result]) -> dict[str, float]:
    """Per database: veo-batch rows/s divided by pandas rows/s."""
    speed = {(r.database, r.tool): r.rows_per_s for r in results}
    return {
        database: speed[database, "veo-batch"] / speed[database, "pandas"]
        for database, tool in speed
        if tool == "veo-batch" and (database, "pandas") in speed
    }


def report(results: Sequence[Result], floor_mb: float) -> str:
    by_database = ratios(results)
    headers = [
        "DATABASE",
        "TOOL",
        "ROWS",
        "SECONDS",
        "ROWS/S",
        "PEAK RSS MB",
        "TREE RSS",
        "TREE PSS",
        "VS PANDAS",
    ]
    rows = [
        [
            r.database,
            r.tool,
            f"{r.rows:,}",
            f"{r.seconds:.2f}",
            f"{r.rows_per_s:,.0f}",
            f"{r.peak_rss_mb:.0f}",
            f"{r.tree_rss_mb:.0f}",
            f"{r.tree_pss_mb:.0f}",
            times(by_database[r.database])
            if r.tool == "veo-batch" and r.database in by_database
            else "",
            targets_met(r),
            r.how,
        ]
        for r in results
    ]
    table = table_text([*headers, "TARGETS", "HOW"], rows)
    return (
        f"{table}\n\ntargets for veo-batch: at least {TARGET_ROWS_PER_S:,} rows/s "
        f"(1M rows in at most 10 s) and a peak RSS of at most {TARGET_RSS_MB} MB (1 MB = 2^20 "
        "bytes)\nVS PANDAS: veo-batch rows/s ÷ pandas rows/s on the same database; pandas "
        f"checks nothing.\npeak RSS cannot read below this script's own peak, {floor_mb:.0f} MB."
        "\nTREE RSS / TREE PSS: the load's processes together (veo-batch reads in a forked "
        "child), sampled every 20 ms; RSS counts shared pages in each process, PSS once. "
        "The memory target is checked against the larger of PEAK RSS and TREE RSS."
    )


def write_results(
    results: Sequence[Result],
    csv_path: Path,
    floor_mb: float,
    started: datetime,
    code: dict[str, Any],
) -> Path:
    document = {
        "started": started.isoformat(),
        "csv": {"path": str(csv_path), "bytes": csv_path.stat().st_size, "seed": SEED},
        "machine": machine_facts(),
        "code": code,
        "targets": {"rows_per_s": TARGET_ROWS_PER_S, "peak_rss_mb": TARGET_RSS_MB},
        "rss_floor_mb": round(floor_mb, 1),
        "veo_batch_vs_pandas": ratios(results),
        "results": [{**asdict(r), "rows_per_s": r.rows_per_s} for r in results],
    }
    return write_json("load", started, document)
