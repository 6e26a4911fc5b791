"""An anchor of the load in bench/load.py, the code a user would write without us:
`pandas.read_csv(FILE)` then `DataFrame.to_sql("jobs_pandas", ..., chunksize=50_000)` through a
SQLAlchemy engine, with no validation at all. It runs as `bench/load.py --pandas-child ...`,
in a child process of its own: only that child imports pandas and SQLAlchemy."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Final

from bench.loading.csv_file import HEADER
from bench.loading.runs import Result, measured

PANDAS_TABLE: Final = "jobs_pandas"
PANDAS_CHUNKSIZE: Final = 50_000
PG_MAX_PARAMS: Final = 65_535  # bind parameters in one PostgreSQL statement
LOAD_SCRIPT: Final = Path(__file__).resolve().parent.parent / "load.py"


def pandas_chunksize(method: str) -> int:
    """Rows per `to_sql` chunk: one multi-row INSERT may bind at most 65,535 parameters."""
    return PANDAS_CHUNKSIZE if method == "none" else PG_MAX_PARAMS // len(HEADER)


def pandas_command(csv_path: Path, url: str, method: str, rows: int) -> list[str]:
    """bench/load.py as the child that loads with pandas (`rows` 0: the whole file)."""
    return [
        sys.executable,
        str(LOAD_SCRIPT),
        "--pandas-child",
        str(csv_path),
        url,
        method,
        str(rows),
    ]


def pandas_settings(method: str) -> str:
    shown = "None" if method == "none" else repr(method)
    return f"method={shown}, chunksize={pandas_chunksize(method):,}"


def pandas_child(csv_path: str, url: str, method: str, rows: str) -> None:
    """Load with pandas: the code a user would write. Imported here, never in the parent."""
    import pandas as pd  # noqa: PLC0415 - only this child pays for pandas
    import sqlalchemy as sa  # noqa: PLC0415

    frame = pd.read_csv(csv_path, nrows=int(rows) or None)
    engine = sa.create_engine(url)
    frame.to_sql(
        PANDAS_TABLE,
        engine,
        if_exists="replace",
        index=False,
        chunksize=pandas_chunksize(method),
        method=None if method == "none" else method,
    )
    engine.dispose()


def load_pandas(
    database: str, url: str, csv_path: Path, method: str, rows: int, count: Callable[[], int]
) -> Result:
    command = pandas_command(csv_path, url, method, 0)
    how = "read_csv + to_sql, checks nothing, " + pandas_settings(method)
    return measured("load", database, "pandas", how, command, dict(os.environ), rows, count)
