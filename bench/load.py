"""Benchmark: both ends of a big batch, load and export, veo-batch beside anchors, on one
generated CSV file (bench/loading/csv_file.py; `--csv PATH` reuses a file instead), in one
run, for SQLite and PostgreSQL. Each step, veo-batch's then its anchors':

- load into SQLite: `veo-batch load FILE --batch bench`, against pandas,
  `pandas.read_csv(FILE)` then `DataFrame.to_sql(...)`, which checks nothing;
- load into PostgreSQL: `veo-batch load FILE --batch bench`, against pandas and against
  `psql -c "\\copy copy_anchor FROM 'FILE' WITH (FORMAT csv, HEADER true)"`, COPY FROM STDIN
  of the raw file into a table of one text column per header column; and beside the floor,
  `psql \\copy` of the rows it stored into a table like jobs (PostgreSQL's own time to store
  them), and into tables like it with only the primary key and the unique (batch_id, ref),
  and with no index;
- export from SQLite: `veo-batch export bench -o FILE.csv`, against
  `sqlite3 -csv -header DB "select * from jobs" > FILE`;
- export from PostgreSQL: `veo-batch export bench -o FILE.csv`, against
  `psql -c "\\copy (select * from jobs) to 'FILE' csv header"`.

veo-batch's load goes into a fresh database, migrated before the clock starts; the exports
run after it and read the rows it stored (bench/loading/databases.py gives the order of the
steps). Every step runs in a child process of its own, timed from spawn to exit, with its peak
RSS from `os.wait4` and its process tree's sampled (bench/loading/runs.py says exactly how,
and why no figure can read below this script's own peak RSS, printed as the floor). After
each step the rows it stored (a table's count) or wrote (the CSV records of its file) are
counted against the file's.

Printed: every step's wall time, rows/s, peak RSS and check; then each veo-batch step beside
its anchor, the ratio anchor time ÷ veo-batch time (above x1: veo-batch is faster) and PASS
or MISS against the targets: load ≥ x1.0 of pandas into SQLite and ≥ x0.5 of COPY into
PostgreSQL, export ≥ x0.5 of `sqlite3 -csv` and of `psql \\copy`, every veo-batch step at most
100 MB (bench/loading/report.py). The JSON goes to `bench/out/load-<time>.json`. Exits 1 when
a step's row count is wrong.

    python bench/load.py                     # 1,000,000 rows, SQLite and PostgreSQL
    python bench/load.py --rows 20000 --databases sqlite --skip-pandas
"""

from __future__ import annotations

import argparse
import os
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
from bench.loading.databases import Plan, bench_postgresql, bench_sqlite
from bench.loading.pandas_load import pandas_child
from bench.loading.report import failed_checks, load_average, report, write_results
from bench.loading.runs import Result

DEFAULT_ROWS: Final = 1_000_000
DATABASES: Final = ("sqlite", "postgresql")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Time `veo-batch load` and `veo-batch export` of a big CSV file against "
        "pandas, COPY, sqlite3 -csv and psql \\copy."
    )
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS, help="rows to generate")
    parser.add_argument("--csv", type=Path, help="load this CSV file instead of generating one")
    parser.add_argument(
        "--databases",
        default=",".join(DATABASES),
        help="comma-separated: sqlite, postgresql (default: both)",
    )
    parser.add_argument("--skip-pandas", action="store_true", help="no pandas anchor")
    parser.add_argument(
        "--skip-load-anchors", action="store_true", help="no load anchor: pandas, COPY, floor"
    )
    parser.add_argument(
        "--skip-export", action="store_true", help="no export, veo-batch's or the anchors'"
    )
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


def plan_of(args: argparse.Namespace) -> Plan:
    return Plan(
        export=not args.skip_export,
        copy=not args.skip_load_anchors,
        pandas=not (args.skip_pandas or args.skip_load_anchors),
        keep=args.keep,
    )


def prepared_csv(args: argparse.Namespace, work: Path) -> tuple[Path, int]:
    if args.csv is not None:
        return args.csv.resolve(), count_csv_rows(args.csv)
    path = work / "jobs.csv"
    started = time.perf_counter()
    write_csv(path, args.rows, SEED)
    size = path.stat().st_size / 2**20
    print(f"wrote {args.rows:,} rows ({size:.0f} MB) in {time.perf_counter() - started:.1f} s")
    return path, args.rows


def measure(args: argparse.Namespace, csv_path: Path, rows: int, work: Path) -> list[Result]:
    plan = plan_of(args)
    results = []
    if "sqlite" in args.databases:
        results += bench_sqlite(csv_path, rows, work, plan)
    if "postgresql" in args.databases:
        results += bench_postgresql(csv_path, rows, work, plan)
    return results


def run_benchmark(args: argparse.Namespace, work: Path) -> bool:
    """Measure and report; False when a step's row count is wrong."""
    started, code, busy = datetime.now(UTC), git_state(), load_average()
    print(f"load average at the start: {busy} ({os.cpu_count()} CPUs)")
    csv_path, rows = prepared_csv(args, work)
    results = measure(args, csv_path, rows, work)
    if not results:
        print("nothing was measured")
        return True
    floor = own_peak_rss_mib()
    print("\n" + report(results, floor))
    print(f"load average at the end: {load_average()}")
    facts = {"code": code, "load_average_at_start": busy}
    print(f"\nwrote {write_results(results, csv_path, floor, started, facts)}")
    wrong = failed_checks(results)
    if wrong:
        print(f"error: wrong row count: {'; '.join(wrong)}", file=sys.stderr)
    return not wrong


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.pandas_child:
        pandas_child(*args.pandas_child)
        return 0
    work = Path(tempfile.mkdtemp(prefix="veobatch-bench-"))
    try:
        passed = run_benchmark(args, work)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
