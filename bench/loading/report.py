"""The tables of bench/load.py and its JSON file.

The first table has every step measured: its rows, wall time, rows/s, peak RSS, the peak
RSS and PSS of its process tree, and whether its rows were all there (CHECK). The second is
the comparison asked for, each veo-batch step beside its anchor on the same database in the
same run:

| step                   | anchor                                   | target   |
|------------------------|------------------------------------------|----------|
| load into SQLite       | pandas `read_csv` + `to_sql`             | ≥ x1.0   |
| load into PostgreSQL   | pandas `read_csv` + `to_sql`             | none     |
| load into PostgreSQL   | `psql \\copy ... FROM` (COPY FROM STDIN)  | ≥ x0.5   |
| load into PostgreSQL   | `psql \\copy` of the rows it stored       | none     |
| load into PostgreSQL   | the same, key and unique only            | none     |
| load into PostgreSQL   | the same, no index                       | none     |
| export from SQLite     | `sqlite3 -csv -header`                   | ≥ x0.5   |
| export from PostgreSQL | `psql \\copy (select ...) to`             | ≥ x0.5   |

RATIO is the anchor's wall time ÷ veo-batch's (above 1: veo-batch is faster). Every veo-batch
step has a memory target too: at most 100 MB, checked against the larger of its PEAK RSS and
TREE PSS (1 MB = 2^20 bytes). Each target reads PASS or MISS."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from bench.harness.results import (
    check_cell,
    machine_facts,
    note_code_change,
    times,
    write_json,
)
from bench.loading.csv_file import SEED
from bench.loading.runs import Result

TARGET_RSS_MB: Final = 100


@dataclass(frozen=True)
class Comparison:
    """One line of the comparison: veo-batch's `step` on `database` beside `anchor`."""

    step: str
    database: str
    anchor: str  # the anchor's tool in its Result
    label: str
    anchor_label: str
    target: float | None  # the least ratio wanted, None for none


COMPARISONS: Final = (
    Comparison("load", "sqlite", "pandas", "load into SQLite", "pandas read_csv + to_sql", 1.0),
    Comparison(
        "load", "postgresql", "pandas", "load into PostgreSQL", "pandas read_csv + to_sql", None
    ),
    Comparison(
        "load",
        "postgresql",
        "copy",
        "load into PostgreSQL",
        "psql \\copy FROM (COPY FROM STDIN)",
        0.5,
    ),
    Comparison(
        "load",
        "postgresql",
        "floor",
        "load into PostgreSQL",
        "psql \\copy of its rows into jobs",
        None,
    ),
    Comparison(
        "load",
        "postgresql",
        "floor-keys",
        "load into PostgreSQL",
        "the same, key and unique only",
        None,
    ),
    Comparison(
        "load", "postgresql", "floor-table", "load into PostgreSQL", "the same, no index", None
    ),
    Comparison("export", "sqlite", "sqlite3", "export from SQLite", "sqlite3 -csv -header", 0.5),
    Comparison(
        "export", "postgresql", "psql", "export from PostgreSQL", "psql \\copy (select) to", 0.5
    ),
)


@dataclass(frozen=True)
class Compared:
    comparison: Comparison
    ours: Result
    anchor: Result | None

    @property
    def ratio(self) -> float | None:
        return None if self.anchor is None else self.anchor.seconds / self.ours.seconds

    @property
    def speed(self) -> str:
        """PASS or MISS against the target, blank without a target or an anchor."""
        target, ratio = self.comparison.target, self.ratio
        if target is None or ratio is None:
            return ""
        return "PASS" if ratio >= target else "MISS"

    @property
    def memory(self) -> str:
        return "PASS" if self.ours.memory_mb <= TARGET_RSS_MB else "MISS"

    def as_json(self) -> dict[str, Any]:
        ratio = self.ratio
        return {
            "step": self.comparison.label,
            "anchor": self.comparison.anchor_label,
            "anchor_seconds": None if self.anchor is None else round(self.anchor.seconds, 3),
            "veo_batch_seconds": round(self.ours.seconds, 3),
            "ratio": None if ratio is None else round(ratio, 3),
            "target_ratio": self.comparison.target,
            "speed": self.speed or None,
            "veo_batch_memory_mb": round(self.ours.memory_mb, 1),
            "target_memory_mb": TARGET_RSS_MB,
            "memory": self.memory,
        }


def compared(results: Sequence[Result]) -> list[Compared]:
    """Each comparison whose veo-batch step was measured, with its anchor if it was."""
    found = {(r.step, r.database, r.tool): r for r in results}
    lines = []
    for comparison in COMPARISONS:
        ours = found.get((comparison.step, comparison.database, "veo-batch"))
        if ours is not None:
            anchor = found.get((comparison.step, comparison.database, comparison.anchor))
            lines.append(Compared(comparison, ours, anchor))
    return lines


def text_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns left-aligned, two spaces apart (veo-batch's own table code is not imported:
    it would raise this script's peak RSS, the floor of every child's)."""
    widths = [max(len(cell) for cell in column) for column in zip(headers, *rows, strict=True)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in [headers, *rows]
    )


def steps_table(results: Sequence[Result]) -> str:
    headers = ["STEP", "DATABASE", "TOOL", "ROWS", "SECONDS", "ROWS/S", "PEAK RSS MB"]
    headers += ["TREE RSS", "TREE PSS", "CHECK", "HOW"]
    rows = [
        [
            r.step,
            r.database,
            r.tool,
            f"{r.rows:,}",
            f"{r.seconds:.2f}",
            f"{r.rows_per_s:,.0f}",
            f"{r.peak_rss_mb:.0f}",
            f"{r.tree_rss_mb:.0f}",
            f"{r.tree_pss_mb:.0f}",
            check_cell([] if r.counted_right else [f"the file has {r.expected:,} rows"]),
            r.how,
        ]
        for r in results
    ]
    return text_table(headers, rows)


def comparison_table(lines: Sequence[Compared]) -> str:
    headers = ["STEP", "ANCHOR", "ANCHOR S", "VEO-BATCH S", "RATIO", "TARGET", "SPEED"]
    headers += ["VEO-BATCH MB", f"≤ {TARGET_RSS_MB} MB"]
    rows = []
    for line in lines:
        target = line.comparison.target
        rows.append(
            [
                line.comparison.label,
                line.comparison.anchor_label,
                "not run" if line.anchor is None else f"{line.anchor.seconds:.2f}",
                f"{line.ours.seconds:.2f}",
                times(line.ratio),
                "none" if target is None else f"≥ ×{target:.1f}",
                line.speed,
                f"{line.ours.memory_mb:.0f}",
                line.memory,
            ]
        )
    return text_table(headers, rows)


def server_alone(results: Sequence[Result]) -> str:
    """The COPY anchor's time ÷ each floor's: the ratio to COPY that a load into that table
    would reach if its client cost nothing (x0.5 is the target), or "" without them."""
    found = {r.tool: r for r in results if r.step == "load" and r.database == "postgresql"}
    copy = found.get("copy")
    floors = [
        (tool, found[tool]) for tool in ("floor", "floor-keys", "floor-table") if tool in found
    ]
    if copy is None or not floors:
        return ""
    ratios = ", ".join(f"{times(copy.seconds / floor.seconds)} {tool}" for tool, floor in floors)
    return (
        f"PostgreSQL alone, no client: the COPY anchor's time ÷ each floor's, {ratios}: the "
        "most a load into that table can reach of the COPY anchor.\n"
    )


def report(results: Sequence[Result], floor_mb: float) -> str:
    return (
        f"{steps_table(results)}\n\n{comparison_table(compared(results))}\n\n"
        + server_alone(results)
        + "RATIO: the anchor's wall time ÷ veo-batch's, on the same database in the same run "
        "(above ×1: veo-batch is faster). pandas and COPY check nothing; the export anchors "
        "write `select * from jobs` as stored. `psql \\copy of its rows into jobs` is the "
        "server's floor: PostgreSQL storing the rows veo-batch stored, in a table like jobs "
        "with its indexes, from a file made before the clock started (then with only the "
        "primary key and the unique (batch_id, ref), then with no index).\n"
        f"targets: load ≥ ×1.0 of pandas into SQLite, ≥ ×0.5 of COPY into PostgreSQL; export "
        f"≥ ×0.5 of sqlite3 -csv and of psql \\copy; every veo-batch step at most "
        f"{TARGET_RSS_MB} MB.\n"
        "VEO-BATCH MB: the larger of its PEAK RSS (the largest single process, from wait4) and "
        "TREE PSS (its processes together, sampled every 250 ms, pages a forked child shares "
        "with its parent counted once; TREE RSS counts them in each). 1 MB = 2^20 bytes.\n"
        f"peak RSS cannot read below this script's own peak, {floor_mb:.0f} MB. PostgreSQL's "
        "server processes count in no memory figure, in every wall time."
    )


def load_average() -> str:
    """The machine's load average over 1, 5 and 15 minutes."""
    return ", ".join(f"{value:.2f}" for value in os.getloadavg())


def failed_checks(results: Sequence[Result]) -> list[str]:
    return [f"{r.step} {r.database} {r.tool}" for r in results if not r.counted_right]


def write_results(
    results: Sequence[Result],
    csv_path: Path,
    floor_mb: float,
    started: datetime,
    facts: dict[str, Any],
) -> Path:
    """bench/out/load-<started>.json. `facts` has `code`, the working tree at the start: a
    warning is printed, and `code_at_end` added, when it changed during the run."""
    document = {
        "started": started.isoformat(),
        "finished": datetime.now(UTC).isoformat(),
        "csv": {"path": str(csv_path), "bytes": csv_path.stat().st_size, "seed": SEED},
        "machine": {**machine_facts(), "load_average_at_end": load_average()},
        **facts,
        "targets": {
            **{c.label + " vs " + c.anchor_label: c.target for c in COMPARISONS},
            "peak_rss_mb": TARGET_RSS_MB,
        },
        "rss_floor_mb": round(floor_mb, 1),
        "comparisons": [line.as_json() for line in compared(results)],
        "results": [
            {**asdict(r), "rows_per_s": r.rows_per_s, "memory_mb": r.memory_mb} for r in results
        ],
    }
    note_code_change(document)
    return write_json("load", started, document)
