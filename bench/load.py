"""Benchmark: load a big CSV job file into the database, with veo-batch and with pandas.

What is measured, for each database (SQLite, PostgreSQL), on one generated CSV file
(bench/loading/csv_file.py; `--csv PATH` reuses a file instead):

- veo-batch: `veo-batch load FILE --batch bench` into a fresh database, migrated before the
  clock starts. Every row is checked (id, prompt, model, image count and URLs, aspect ratio,
  booleans) and all rows are stored in one transaction (bench/loading/databases.py).
- pandas, the baseline a user would write without us: `pandas.read_csv(FILE)` then
  `DataFrame.to_sql(...)` through a SQLAlchemy engine, with no validation at all
  (bench/loading/pandas_load.py; on PostgreSQL with the faster method of a short trial).

Each load runs in a child process of its own, timed from spawn to exit, with its peak RSS from
`os.wait4` and its process tree's sampled (bench/loading/runs.py says exactly how, and why no
figure can read below this script's own peak RSS, printed as the floor). After each load the
row count of the table is checked against the file's.

The CSV file and the SQLite files live in a temporary directory. Results are printed as a
table, veo-batch against pandas on the same database and next to the targets for veo-batch
(1M rows in at most 10 s, a peak RSS of at most 200 MB; bench/loading/report.py), and written
to `bench/out/load-<time>.json`.

    python bench/load.py                     # 1,000,000 rows, SQLite and PostgreSQL
    python bench/load.py --rows 100000 --databases sqlite --skip-pandas
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo root: bench.*

from bench.harness.cli import add_keep, comma_separated
from bench.harness.processes import BenchError
from bench.harness.procfs import own_peak_rss_mib
from bench.harness.results import git_state
from bench.loading.csv_file import SEED, count_csv_rows, write_csv
from bench.loading.databases import bench_postgresql, bench_sqlite
from bench.loading.pandas_load import pandas_child
from bench.loading.report import report, write_results

DEFAULT_ROWS: Final = 1_000_000
DATABASES: Final = ("sqlite", "postgresql")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Time `veo-batch load` of a big CSV file against pandas.read_csv + to_sql."
    )
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS, help="rows to generate")
    parser.add_argument("--csv", type=Path, help="load this CSV file instead of generating one")
    parser.add_argument(
        "--databases",
        default=",".join(DATABASES),
        help="comma-separated: sqlite, postgresql (default: both)",
    )
    parser.add_argument("--skip-pandas", action="store_true", help="time veo-batch only")
    add_keep(parser)
    parser.add_argument("--pandas-child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.databases = comma_separated(args.databases)
    unknown = set(args.databases) - set(DATABASES)
    if unknown:
        parser.error(f"unknown database {', '.join(sorted(unknown))}; use {', '.join(DATABASES)}")
    if args.rows < 1:
        parser.error("--rows must be at least 1")
    return args


def prepared_csv(args: argparse.Namespace, work: Path) -> tuple[Path, int]:
    if args.csv is not None:
        return args.csv.resolve(), count_csv_rows(args.csv)
    path = work / "jobs.csv"
    started = time.perf_counter()
    write_csv(path, args.rows, SEED)
    size = path.stat().st_size / 2**20
    print(f"wrote {args.rows:,} rows ({size:.0f} MB) in {time.perf_counter() - started:.1f} s")
    return path, args.rows


def run_benchmark(args: argparse.Namespace, work: Path) -> None:
    started, code = datetime.now(UTC), git_state()
    csv_path, rows = prepared_csv(args, work)
    results = []
    if "sqlite" in args.databases:
        results += bench_sqlite(csv_path, rows, work, args.skip_pandas)
    if "postgresql" in args.databases:
        results += bench_postgresql(csv_path, rows, args.skip_pandas)
    if not results:
        print("nothing was measured")
        return
    floor = own_peak_rss_mib()
    print("\n" + report(results, floor))
    print(f"\nwrote {write_results(results, csv_path, floor, started, code)}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.pandas_child:
        pandas_child(*args.pandas_child)
        return 0
    work = Path(tempfile.mkdtemp(prefix="veobatch-bench-"))
    try:
        run_benchmark(args, work)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
