"""The loads of bench/load.py on each database: `veo-batch load FILE --batch bench` into a
fresh database (a new SQLite file, or a new PostgreSQL database `veobatch_bench`, either
migrated with `veo-batch db upgrade` before the clock starts: every row is checked and all
rows are stored in one transaction), then pandas into a fresh SQLite file or the same
PostgreSQL database. On PostgreSQL the faster of pandas' `method=None` and `method="multi"`
is picked by a short trial first ("multi" sends chunks of 10,922 rows: PostgreSQL binds at
most 65,535 parameters in one statement). PostgreSQL is skipped when the server at
127.0.0.1:5432 cannot be reached."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Final

import psycopg
from psycopg import sql

from bench.harness.processes import veo_batch
from bench.harness.services import drop_database, pg_admin, recreate_database
from bench.loading.pandas_load import PANDAS_TABLE, load_pandas, pandas_command, pandas_settings
from bench.loading.runs import Result, measured_load, run_measured, with_database

TRIAL_ROWS: Final = 20_000  # rows of the trial that picks pandas' method on PostgreSQL
PG_NAME: Final = "veobatch_bench"
PG_BENCH_DSN: Final = f"host=127.0.0.1 port=5432 user=postgres dbname={PG_NAME}"
PG_URL: Final = f"postgresql+psycopg://postgres@127.0.0.1:5432/{PG_NAME}"


def load_veobatch(
    database: str, url: str, csv_path: Path, rows: int, stored: Callable[[], int]
) -> Result:
    """Migrate the fresh database (not timed), then load into it."""
    run_measured(veo_batch("db", "upgrade"), with_database(url))
    command = veo_batch("load", str(csv_path), "--batch", "bench")
    how = "validated, one transaction"
    return measured_load(database, "veo-batch", how, command, with_database(url), rows, stored)


def sqlite_count(path: Path, table: str = "jobs") -> Callable[[], int]:
    def count() -> int:
        with closing(sqlite3.connect(path)) as conn:
            (value,) = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
            return int(value)

    return count


def pg_count(table: str = "jobs") -> Callable[[], int]:
    def count() -> int:
        with psycopg.connect(PG_BENCH_DSN) as conn:
            row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
            (value,) = row.fetchone() or (0,)
            return int(value)

    return count


def bench_sqlite(csv_path: Path, rows: int, work: Path, skip_pandas: bool) -> list[Result]:
    ours, theirs = work / "veobatch.db", work / "pandas.db"
    results = [load_veobatch("sqlite", f"sqlite:///{ours}", csv_path, rows, sqlite_count(ours))]
    if not skip_pandas:
        stored = sqlite_count(theirs, PANDAS_TABLE)
        results.append(load_pandas("sqlite", f"sqlite:///{theirs}", csv_path, "none", rows, stored))
    return results


def pg_unreachable() -> str | None:
    """Why PostgreSQL cannot be used, or None when it can."""
    try:
        pg_admin("SELECT 1", PG_NAME)
    except psycopg.OperationalError as exc:
        return str(exc).strip()
    return None


def bench_postgresql(csv_path: Path, rows: int, skip_pandas: bool) -> list[Result]:
    problem = pg_unreachable()
    if problem is not None:
        print(f"postgresql: skipped, the server at 127.0.0.1:5432 cannot be reached: {problem}")
        return []
    recreate_database(PG_NAME)
    try:
        results = [load_veobatch("postgresql", PG_URL, csv_path, rows, pg_count())]
        if not skip_pandas:
            method, trial = pg_pandas_method(csv_path)
            stored = pg_count(PANDAS_TABLE)
            result = load_pandas("postgresql", PG_URL, csv_path, method, rows, stored)
            result.extra["method_trial_seconds"] = trial
            results.append(result)
        return results
    finally:
        drop_database(PG_NAME)


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
