"""Bulk insertion of job rows, the fastest way each database allows.

- PostgreSQL, new batch: `COPY ... FROM STDIN` (psycopg 3 formats rows in C).
- Everything else: one prepared INSERT executed for a whole chunk (executemany), with
  `ON CONFLICT (batch_id, ref)` so that loading the same file into a batch again adds only the
  rows it does not have yet, and replaces rows that were stored invalid (and are now fixed).

Rows must have unique refs within one load (the checker guarantees it), which is what makes
COPY safe for a batch that had no rows before.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Final

from sqlalchemy import Connection

from veobatch.jobspec import ROW_COLUMNS

COLUMNS: Final = ROW_COLUMNS
_REPLACEABLE: Final = [c for c in COLUMNS if c not in ("batch_id", "ref")]

# Insert, or replace a row that an earlier load stored as invalid; keep every other row as is.
_UPSERT: Final = (
    f"INSERT INTO jobs ({', '.join(COLUMNS)}) VALUES ({{marks}}) "
    "ON CONFLICT (batch_id, ref) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _REPLACEABLE)
    + ", attempts = 0, updated_at = CURRENT_TIMESTAMP "
    "WHERE jobs.status = 'failed' AND jobs.error_kind = 'invalid'"
)

Writer = Callable[[Sequence[tuple[Any, ...]]], int]


@contextmanager
def row_writer(conn: Connection, *, fresh_batch: bool) -> Iterator[Writer]:
    """A function that stores a chunk of rows (tuples in `COLUMNS` order) and returns how
    many were inserted or replaced."""
    if conn.dialect.name == "postgresql" and fresh_batch:
        with _copy_writer(conn) as write:
            yield write
        return
    marks = ", ".join(["?" if conn.dialect.paramstyle == "qmark" else "%s"] * len(COLUMNS))
    statement = _UPSERT.format(marks=marks)

    def upsert(rows: Sequence[tuple[Any, ...]]) -> int:
        return int(conn.exec_driver_sql(statement, list(rows)).rowcount)

    yield upsert


@contextmanager
def _copy_writer(conn: Connection) -> Iterator[Writer]:
    driver = conn.connection.driver_connection
    assert driver is not None
    with (
        driver.cursor() as cursor,
        cursor.copy(f"COPY jobs ({', '.join(COLUMNS)}) FROM STDIN") as copy,
    ):

        def write(rows: Sequence[tuple[Any, ...]]) -> int:
            for row in rows:
                copy.write_row(row)
            return len(rows)

        yield write
