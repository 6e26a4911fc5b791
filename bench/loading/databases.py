"""The steps of bench/load.py on each database, in this order:

1. veo-batch's load, `veo-batch load FILE --batch bench`, into a fresh database (a new SQLite
   file, or the new PostgreSQL database `veobatch_bench`), migrated with `veo-batch db
   upgrade` before the clock starts: every row is checked and all rows are stored in one
   transaction; then the rows of `jobs` are counted;
2. the exports of what it stored (bench/loading/exports.py): `veo-batch export`, then the
   anchor, `sqlite3 -csv` or `psql \\copy ... to`; on PostgreSQL the table is first
   `VACUUM (ANALYZE)`d, not timed, so that neither export pays for the other's first read;
3. on PostgreSQL, the COPY anchor of the load, `psql \\copy copy_anchor FROM FILE` into a
   table of text columns in the same database (bench/loading/postgres.py); then the floors:
   `psql \\copy` of the rows veo-batch stored, as its load sends them, into a table like
   `jobs` with its indexes, the time PostgreSQL itself takes to store them; then into one
   with only the primary key and the unique (batch_id, ref), the least a load needs; then
   into one with no index;
4. pandas, `read_csv` + `to_sql`, into a fresh SQLite file or a table `jobs_pandas` of the
   same PostgreSQL database (bench/loading/pandas_load.py). On PostgreSQL the faster of
   pandas' `method=None` and `method="multi"` is picked by a short trial first ("multi"
   sends chunks of 10,922 rows: PostgreSQL binds at most 65,535 parameters in one
   statement).

Each PostgreSQL step but the first starts after a CHECKPOINT, not timed: none pays for the
pages an earlier one left dirty. PostgreSQL is skipped when `psql` cannot reach the server at
127.0.0.1:5432, and its database is dropped however the steps end. Each step's rows are
counted after it, and a wrong count is reported (the CHECK column) without stopping the
others."""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Final

from bench.harness.processes import veo_batch
from bench.loading.exports import export_psql, export_sqlite3, export_veobatch
from bench.loading.pandas_load import PANDAS_TABLE, load_pandas, pandas_command, pandas_settings
from bench.loading.postgres import (
    PG_URL,
    checkpoint,
    drop_database,
    load_copy,
    load_floors,
    pg_count,
    pg_unreachable,
    recreate_database,
    settle,
)
from bench.loading.runs import Result, measured, run_measured, with_database

TRIAL_ROWS: Final = 20_000  # rows of the trial that picks pandas' method on PostgreSQL


@dataclass(frozen=True)
class Plan:
    """Which steps to run besides veo-batch's load."""

    export: bool  # veo-batch's export and its anchor
    copy: bool  # the COPY anchor of the load (PostgreSQL)
    pandas: bool  # the pandas anchor of the load
    keep: bool  # keep the exported files


def load_veobatch(
    database: str, url: str, csv_path: Path, rows: int, count: Callable[[], int]
) -> Result:
    """Migrate the fresh database (not timed), then load into it."""
    run_measured(veo_batch("db", "upgrade"), with_database(url))
    argv = veo_batch("load", str(csv_path), "--batch", "bench")
    how = "veo-batch load FILE --batch bench: checked, one transaction"
    return measured("load", database, "veo-batch", how, argv, with_database(url), rows, count)


def sqlite_count(path: Path, table: str = "jobs") -> Callable[[], int]:
    def count() -> int:
        with closing(sqlite3.connect(path)) as conn:
            (value,) = conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()
            return int(value)

    return count


def bench_sqlite(csv_path: Path, rows: int, work: Path, plan: Plan) -> list[Result]:
    ours, theirs = work / "veobatch.db", work / "pandas.db"
    url = f"sqlite:///{ours}"
    results = [load_veobatch("sqlite", url, csv_path, rows, sqlite_count(ours))]
    if plan.export:
        results.append(export_veobatch("sqlite", url, rows, work, plan.keep))
        if shutil.which("sqlite3") is None:
            print("sqlite: export: the anchor is skipped, sqlite3 is not installed")
        else:
            results.append(export_sqlite3(ours, rows, work, plan.keep))
    if plan.pandas:
        count = sqlite_count(theirs, PANDAS_TABLE)
        results.append(load_pandas("sqlite", f"sqlite:///{theirs}", csv_path, "none", rows, count))
    return results


def bench_postgresql(csv_path: Path, rows: int, work: Path, plan: Plan) -> list[Result]:
    problem = pg_unreachable()
    if problem is not None:
        print(f"postgresql: skipped, the server at 127.0.0.1:5432 cannot be reached: {problem}")
        return []
    recreate_database()
    try:
        results = [load_veobatch("postgresql", PG_URL, csv_path, rows, partial(pg_count, "jobs"))]
        if plan.export:
            settle("jobs")
            results.append(export_veobatch("postgresql", PG_URL, rows, work, plan.keep))
            results.append(export_psql(rows, work, plan.keep))
        if plan.copy:
            results.append(load_copy(csv_path, rows))
            results.extend(load_floors(work, rows))
        if plan.pandas:
            results.append(pandas_postgresql(csv_path, rows))
        return results
    finally:
        drop_database()


def pandas_postgresql(csv_path: Path, rows: int) -> Result:
    method, trial = pg_pandas_method(csv_path)
    checkpoint()
    count = partial(pg_count, PANDAS_TABLE)
    result = load_pandas("postgresql", PG_URL, csv_path, method, rows, count)
    result.extra["method_trial_seconds"] = trial
    return result


def pg_pandas_method(csv_path: Path) -> tuple[str, dict[str, float]]:
    """The faster `to_sql` method on PostgreSQL, timed on the file's first rows."""
    trial = {
        method: run_measured(
            pandas_command(csv_path, PG_URL, method, TRIAL_ROWS), dict(os.environ)
        ).seconds
        for method in ("none", "multi")
    }
    method = min(trial, key=trial.__getitem__)
    print(
        f"postgresql: pandas method trial on {TRIAL_ROWS:,} rows: "
        + ", ".join(f"{pandas_settings(m)}: {s:.2f} s" for m, s in trial.items())
        + f"; using {pandas_settings(method)}"
    )
    return method, trial
