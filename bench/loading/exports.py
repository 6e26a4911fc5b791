"""The exports of bench/load.py, each run after veo-batch's load into the same database, so
that they read the rows veo-batch stored (batch `bench`, table `jobs`):

- veo-batch: `veo-batch export bench -o FILE.csv` (each row's input fields and its outcome,
  written to a file next to FILE and renamed into place);
- on SQLite, the anchor `sqlite3 -csv -header DB "select * from jobs"`, its standard output
  sent to a file as `> FILE` would;
- on PostgreSQL, the anchor `psql -c "\\copy (select * from jobs) to 'FILE' csv header"`
  (`COPY ... TO STDOUT`, psql writing the file).

Each is timed as a child process of its own (bench/loading/runs.py), then the CSV records of
its file are counted (read as CSV, the header left out) against the rows of the loaded file,
and the file is deleted (kept with `--keep`). The anchors write every column of `jobs` as
the database stores it; veo-batch writes the columns of its export format."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

from bench.harness.processes import veo_batch
from bench.loading.csv_file import count_csv_rows
from bench.loading.postgres import PG_NAME, psql_argv, psql_env, quoted_path
from bench.loading.runs import Result, measured, with_database

ANCHOR_QUERY: Final = "select * from jobs"


def counted_export(
    database: str,
    tool: str,
    how: str,
    argv: list[str],
    env: dict[str, str],
    out: Path,
    rows: int,
    keep: bool,
    *,
    to_stdout: bool = False,
) -> Result:
    """Run one export writing `out` (its standard output when `to_stdout`), count the
    records of `out`, then delete it unless `keep`."""
    result = measured(
        "export",
        database,
        tool,
        how,
        argv,
        env,
        rows,
        lambda: count_csv_rows(out),
        stdout=out if to_stdout else None,
    )
    result.extra["file_mb"] = round(out.stat().st_size / 2**20, 1)
    if not keep:
        out.unlink()
    return result


def export_path(work: Path, database: str, tool: str) -> Path:
    return work / f"export-{database}-{tool}.csv"


def export_veobatch(database: str, url: str, rows: int, work: Path, keep: bool) -> Result:
    out = export_path(work, database, "veo-batch")
    argv = veo_batch("export", "bench", "-o", str(out))
    how = "veo-batch export bench -o FILE.csv"
    return counted_export(database, "veo-batch", how, argv, with_database(url), out, rows, keep)


def export_sqlite3(db: Path, rows: int, work: Path, keep: bool) -> Result:
    out = export_path(work, "sqlite", "sqlite3")
    argv = ["sqlite3", "-csv", "-header", str(db), ANCHOR_QUERY]
    how = f'sqlite3 -csv -header DB "{ANCHOR_QUERY}" > FILE'
    env = dict(os.environ)
    return counted_export("sqlite", "sqlite3", how, argv, env, out, rows, keep, to_stdout=True)


def export_psql(rows: int, work: Path, keep: bool) -> Result:
    out = export_path(work, "postgresql", "psql")
    argv = psql_argv(PG_NAME, f"\\copy ({ANCHOR_QUERY}) to {quoted_path(out)} csv header")
    how = f"psql \\copy ({ANCHOR_QUERY}) to FILE csv header"
    return counted_export("postgresql", "psql", how, argv, psql_env(), out, rows, keep)
