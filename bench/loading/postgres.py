"""PostgreSQL for bench/load.py, through `psql` only (psycopg in this script would raise its
peak RSS, the floor of every child's, by some 20 MB): the server at 127.0.0.1:5432 as user
`postgres`, the database `veobatch_bench` it creates and drops, row counts, and the COPY
anchor of the load.

The COPY anchor, the fastest a file gets into PostgreSQL: a table `copy_anchor` with one
`text` column per column of the CSV file's header (made before the clock starts), then

    psql -c "\\copy copy_anchor FROM 'FILE' WITH (FORMAT csv, HEADER true)"

timed: `\\copy` is `COPY ... FROM STDIN`, psql streaming the raw file to the server, which
parses it and checks nothing but the number of columns."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Final

from bench.harness.processes import BenchError, run_quietly
from bench.loading.csv_file import csv_header
from bench.loading.runs import Result, measured

HOST: Final = "127.0.0.1"
PORT: Final = "5432"
USER: Final = "postgres"
PG_NAME: Final = "veobatch_bench"
PG_URL: Final = f"postgresql+psycopg://{USER}@{HOST}:{PORT}/{PG_NAME}"
COPY_TABLE: Final = "copy_anchor"


def psql_argv(database: str, *commands: str) -> list[str]:
    """`psql` running each of `commands` in turn (each on its own, outside a transaction
    block) on `database`, unaligned and without headers, stopping at the first error."""
    argv = ["psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1"]
    argv += ["-h", HOST, "-p", PORT, "-U", USER, "-d", database]
    for command in commands:
        argv += ["-c", command]
    return argv


def psql_env() -> dict[str, str]:
    return {**os.environ, "PGCONNECT_TIMEOUT": "5"}


def psql(database: str, *commands: str) -> str:
    """Run `commands` on `database` (not timed); what psql printed."""
    return run_quietly(psql_argv(database, *commands), psql_env()).strip()


def identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quoted_path(path: Path) -> str:
    """`path` as psql's `\\copy` reads a file name."""
    text = str(path)
    if "'" in text:
        raise BenchError(f"{path}: psql's \\copy cannot be given a path with a quote in it")
    return f"'{text}'"


def pg_unreachable() -> str | None:
    """Why PostgreSQL cannot be used, or None when it can."""
    if shutil.which("psql") is None:
        return "psql is not installed"
    try:
        psql("postgres", "SELECT 1")
    except BenchError as exc:
        return str(exc).strip()
    return None


def recreate_database() -> None:
    drop_database()
    psql("postgres", f"CREATE DATABASE {PG_NAME}")


def drop_database() -> None:
    psql("postgres", f"DROP DATABASE IF EXISTS {PG_NAME} WITH (FORCE)")


def pg_count(table: str) -> int:
    return int(psql(PG_NAME, f"SELECT count(*) FROM {identifier(table)}"))


def settle(table: str) -> None:
    """`VACUUM (ANALYZE)` the freshly loaded `table` (not timed), so that both exports read
    a settled table: the first reader of new rows otherwise writes their hint bits; then a
    CHECKPOINT, see `checkpoint`."""
    psql(PG_NAME, f"VACUUM (ANALYZE) {identifier(table)}")
    checkpoint()


def checkpoint() -> None:
    """A CHECKPOINT (not timed) before a step, so that no step pays for writing out the pages
    the one before it left dirty (a load leaves hundreds of megabytes)."""
    psql(PG_NAME, "CHECKPOINT")


def load_copy(csv_path: Path, rows: int) -> Result:
    """The COPY anchor (see the module's docstring), checked by counting the table."""
    columns = ", ".join(f"{identifier(name)} text" for name in csv_header(csv_path))
    psql(PG_NAME, f"CREATE TABLE {COPY_TABLE} ({columns})")
    checkpoint()
    command = f"\\copy {COPY_TABLE} FROM {quoted_path(csv_path)} WITH (FORMAT csv, HEADER true)"
    how = "psql \\copy FROM (COPY FROM STDIN), text columns, checks nothing"
    argv = psql_argv(PG_NAME, command)
    count = partial(pg_count, COPY_TABLE)
    return measured("load", "postgresql", "copy", how, argv, psql_env(), rows, count)


# The columns veo-batch's load sends for each row: veobatch.store.inserts.ROW_COLUMNS, written
# out because this script imports no veobatch (a test holds the two equal); the database fills
# in the rest (id, times, counters).
ROW_COLUMNS: Final = (
    "batch_id, ref, line, prompt, model, images, aspect_ratio, enhance_prompt, extra, status, "
    "error, error_kind"
)
FLOOR_TABLE: Final = "jobs_floor"


@dataclass(frozen=True)
class Floor:
    """A table made `LIKE jobs` with `indexes` (SQL run on it, `{table}` its name), into which
    the rows veo-batch's load stored are copied: PostgreSQL's own time to take them."""

    tool: str
    how: str
    like: str
    indexes: tuple[str, ...] = ()


FLOORS: Final = (
    # The floor: jobs as veo-batch made it, every index.
    Floor("floor", "its indexes too", "INCLUDING ALL"),
    # The least a load needs: the primary key, and the unique (batch_id, ref) that makes a
    # file loaded again add nothing twice.
    Floor(
        "floor-keys",
        "only the primary key and the unique (batch_id, ref)",
        "INCLUDING DEFAULTS INCLUDING CONSTRAINTS",
        (
            "ALTER TABLE {table} ADD PRIMARY KEY (id)",
            "ALTER TABLE {table} ADD UNIQUE (batch_id, ref)",
        ),
    ),
    Floor("floor-table", "no index", "INCLUDING DEFAULTS INCLUDING CONSTRAINTS"),
)


def load_floors(work: Path, rows: int) -> list[Result]:
    """The server's floors: `psql \\copy` of the rows veo-batch's load stored, in its COPY
    text (written out before the clock starts), into a table made `LIKE jobs` with each of
    FLOORS' sets of indexes (the same columns, defaults and constraints). The first is the
    time PostgreSQL itself needs to take those rows in this schema, whatever the client does:
    no load of it can be faster; the others show what the indexes cost."""
    copy_file = work / "rows.copy"
    psql(
        PG_NAME, f"\\copy (SELECT {ROW_COLUMNS} FROM jobs ORDER BY id) TO {quoted_path(copy_file)}"
    )
    try:
        return [_load_floor(floor, copy_file, rows) for floor in FLOORS]
    finally:
        copy_file.unlink(missing_ok=True)


def _load_floor(floor: Floor, copy_file: Path, rows: int) -> Result:
    psql(PG_NAME, f"CREATE TABLE {FLOOR_TABLE} (LIKE jobs {floor.like})")
    for statement in floor.indexes:
        psql(PG_NAME, statement.format(table=FLOOR_TABLE))
    checkpoint()
    command = f"\\copy {FLOOR_TABLE} ({ROW_COLUMNS}) FROM {quoted_path(copy_file)}"
    how = f"psql \\copy FROM of the rows veo-batch stored into a table LIKE jobs, {floor.how}"
    try:
        return measured(
            "load",
            "postgresql",
            floor.tool,
            how,
            psql_argv(PG_NAME, command),
            psql_env(),
            rows,
            partial(pg_count, FLOOR_TABLE),
        )
    finally:
        psql(PG_NAME, f"DROP TABLE {FLOOR_TABLE}")
