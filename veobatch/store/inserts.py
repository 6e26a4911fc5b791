"""Bulk insertion of job rows, the fastest way each database allows.

- A batch with no rows yet: PostgreSQL takes `COPY ... FROM STDIN` (psycopg formats rows in
  C); SQLite takes a plain INSERT run by the driver's own executemany, with no SQLAlchemy
  layer in the loop, and with the values a chunk's rows share written into it
  (`_pending_insert`). Refs are unique within one load (the checker guarantees it), so nothing
  can conflict.
- A batch that has rows (the same file loaded again): an executemany upsert, `ON CONFLICT
  (batch_id, ref)`, which adds only the rows the batch does not have and replaces rows that an
  earlier load stored as invalid (and that are now fixed).

`batch_for_load` finds or makes the batch a load writes into, in the same transaction.
"""

from __future__ import annotations

import operator
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy import Connection

from veobatch.errors import BatchStateError
from veobatch.states import BatchState, JobStatus
from veobatch.store.tables import Batch
from veobatch.store.upsert import insert_for

# A stored row: the values of `ROW_COLUMNS`, in that order, ready for executemany or COPY.
ROW_COLUMNS: Final[tuple[str, ...]] = (
    "batch_id",
    "ref",
    "line",
    "prompt",
    "model",
    "images",
    "aspect_ratio",
    "enhance_prompt",
    "extra",
    "status",
    "error",
    "error_kind",
)
_COLUMN_LIST: Final = ", ".join(ROW_COLUMNS)
_REPLACEABLE: Final = [c for c in ROW_COLUMNS if c not in ("batch_id", "ref")]
_INSERT: Final = f"INSERT INTO jobs ({_COLUMN_LIST}) VALUES ({{marks}})"
# Insert, or replace a row that an earlier load stored as invalid; keep every other row as is.
_UPSERT: Final = (
    _INSERT
    + " ON CONFLICT (batch_id, ref) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _REPLACEABLE)
    + ", attempts = 0, updated_at = CURRENT_TIMESTAMP "
    "WHERE jobs.status = 'failed' AND jobs.error_kind = 'invalid'"
)

# SQLite's page cache while a load writes (its default is 2 MB). 32 MB was 3 to 6% faster
# on a million rows, and held the load 15 MB over its memory target of 100 MB.
SQLITE_LOAD_CACHE_KIB: Final = 16 * 1024

# The sqlite3 driver adapts a bool by looking for a conversion protocol on every row before
# storing it as an integer; registering the conversion skips that search.
sqlite3.register_adapter(bool, int)

Writer = Callable[[Sequence[tuple[Any, ...]]], int]
_UNIQUE_REF: Final = "uq_jobs_batch_id_ref"
_PENDING: Final = JobStatus.PENDING.value


# A checked row to submit: the values every row of a chunk of them shares (its batch, status
# pending, no error), and the others, picked out of a row by their names in ROW_COLUMNS.
_SHARED_COLUMNS: Final = ("batch_id", "status", "error", "error_kind")
_OWN_COLUMNS: Final = tuple(c for c in ROW_COLUMNS if c not in _SHARED_COLUMNS)
_FIXED: Final = operator.itemgetter(*map(ROW_COLUMNS.index, _SHARED_COLUMNS))
_VARYING: Final = operator.itemgetter(*map(ROW_COLUMNS.index, _OWN_COLUMNS))


def _pending_insert() -> Callable[[int], str]:
    """The INSERT of a chunk of SQLite rows of one batch that are all pending, without an
    error (`_FIXED`): those values, and the time the load began, written into the statement;
    only the others bound, row by row. Binding four values fewer a row, and no
    CURRENT_TIMESTAMP made twice a row, took a tenth off SQLite's share of a load. (Every row
    of a load then has the same created_at, as on PostgreSQL, whose now() is the
    transaction's start.)"""
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")  # as CURRENT_TIMESTAMP writes it
    columns = ", ".join((*_SHARED_COLUMNS, "created_at", "updated_at", *_OWN_COLUMNS))
    marks = ", ".join("?" * len(_OWN_COLUMNS))

    def insert(batch_id: int) -> str:
        shared = f"{int(batch_id)}, '{_PENDING}', NULL, NULL, '{now}', '{now}'"
        return f"INSERT INTO jobs ({columns}) VALUES ({shared}, {marks})"

    return insert


class DuplicateRef(Exception):
    """A row's id is taken in its batch: the database's unique index refused it (a load
    into a new batch that leaves finding duplicates to the database)."""


def _is_duplicate_ref(exc: BaseException) -> bool:
    """Whether the driver's error is the unique index on (batch_id, ref) refusing a row."""
    if isinstance(exc, sqlite3.IntegrityError):
        return "UNIQUE constraint failed: jobs.batch_id, jobs.ref" in str(exc)
    diag = getattr(exc, "diag", None)  # psycopg's errors
    return getattr(exc, "sqlstate", None) == "23505" and (
        getattr(diag, "constraint_name", None) == _UNIQUE_REF
    )


@contextmanager
def row_writer(conn: Connection, *, fresh_batch: bool) -> Iterator[Writer]:
    """A function that stores a chunk of rows (tuples in `ROW_COLUMNS` order) in the open
    transaction of `conn`, and returns how many were inserted or replaced. In a new batch,
    a row whose id an earlier row has raises DuplicateRef (then or when the block ends)."""
    try:
        with _writer(conn, fresh_batch) as write:
            yield write
    except Exception as exc:
        if fresh_batch and _is_duplicate_ref(exc):
            raise DuplicateRef(str(exc)) from exc
        raise


@contextmanager
def _writer(conn: Connection, fresh_batch: bool) -> Iterator[Writer]:
    driver = conn.connection.driver_connection
    assert driver is not None
    postgres = conn.dialect.name == "postgresql"
    marks = ", ".join(["%s" if postgres else "?"] * len(ROW_COLUMNS))
    if fresh_batch and postgres:
        with (
            driver.cursor() as cursor,
            cursor.copy(f"COPY jobs ({_COLUMN_LIST}) FROM STDIN") as copy,
        ):

            def copy_rows(rows: Sequence[tuple[Any, ...]]) -> int:
                for row in rows:
                    copy.write_row(row)
                return len(rows)

            yield copy_rows
        return
    statement = (_INSERT if fresh_batch else _UPSERT).format(marks=marks)
    cursor = driver.cursor()
    pending = None
    if not postgres:  # a bigger page cache saves SQLite re-reading index pages it spilled
        (cache_size,) = cursor.execute("PRAGMA cache_size").fetchone()
        cursor.execute(f"PRAGMA cache_size=-{SQLITE_LOAD_CACHE_KIB}")
        if fresh_batch:
            pending = _pending_insert()
    try:

        def execute_many(rows: Sequence[tuple[Any, ...]]) -> int:
            if pending is not None and rows:
                fixed = set(map(_FIXED, rows))
                batch_id, status, error, kind = next(iter(fixed))
                if len(fixed) == 1 and (status, error, kind) == (_PENDING, None, None):
                    cursor.executemany(pending(batch_id), map(_VARYING, rows))
                    return int(cursor.rowcount)
            cursor.executemany(statement, rows)
            return int(cursor.rowcount)

        yield execute_many
    finally:
        if not postgres:
            cursor.execute(f"PRAGMA cache_size={int(cache_size)}")
        cursor.close()


def batch_for_load(
    conn: Connection, name: str, source: str, budget: int | None
) -> tuple[int, bool]:
    """The id of batch `name`, created if needed; True when this call created it. Safe when
    many callers make the same new batch at once: the insert gives way to the one that
    committed first (ON CONFLICT DO NOTHING), and the batch is read back. A `budget` is set
    in the same transaction, before the rows: no claim can come before it."""
    insert = insert_for(conn)
    created = conn.execute(
        insert(Batch)
        .values(name=name, source=source, state=BatchState.ACTIVE.value)
        .on_conflict_do_nothing(index_elements=[Batch.name])
        .returning(Batch.id)
    ).scalar()
    if created is None:
        found = conn.execute(sa.select(Batch.id, Batch.state).where(Batch.name == name)).one()
        if found.state == BatchState.CANCELLED:
            raise BatchStateError(
                f"batch {name!r} was cancelled; load into a new batch with --batch NAME",
                found.state,
            )
    bid = created if created is not None else found.id
    if budget is not None:
        conn.execute(sa.update(Batch).where(Batch.id == bid).values(budget_micros=budget))
    return bid, created is not None
