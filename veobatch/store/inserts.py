"""Bulk insertion of job rows, the fastest way each database allows.

- A batch with no rows yet: PostgreSQL takes `COPY ... FROM STDIN` (psycopg formats rows in
  C); SQLite takes plain INSERTs of many rows each (`_SqliteRows`), run by the driver with
  no SQLAlchemy layer in the loop, and with the values a chunk's rows share written into
  them (`_pending_rows`). Refs are unique within one load (the checker guarantees it), so
  nothing can conflict.
- A batch that has rows (the same file loaded again): an upsert, `ON CONFLICT (batch_id,
  ref)`, which adds only the rows the batch does not have and replaces rows that an earlier
  load stored as invalid (and that are now fixed); on PostgreSQL an executemany, on SQLite
  the same INSERTs of many rows.

`batch_for_load` finds or makes the batch a load writes into, in the same transaction.
"""

from __future__ import annotations

import itertools
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
_INSERT: Final = f"INSERT INTO jobs ({_COLUMN_LIST}) VALUES "
# Insert, or replace a row that an earlier load stored as invalid; keep every other row as is.
_ON_CONFLICT: Final = (
    " ON CONFLICT (batch_id, ref) DO UPDATE SET "
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


# Rows one SQLite INSERT takes. An INSERT a row (executemany) sets up the table's and its
# eight indexes' cursors for every row: 100 rows a statement took a third off SQLite's
# share of a million-row load (8.8 to 5.6 s of CPU; 25, 50, 200 and 500 rows were slower).
SQLITE_ROWS_PER_INSERT: Final = 100


class _SqliteRows:
    """Stores rows in SQLite by INSERTs of up to SQLITE_ROWS_PER_INSERT rows each: `head`,
    then `values` (one row's marks, and any values written in) once per row, then `tail`;
    `pick` takes a row's bound values out of it. Returns how many rows were inserted or
    replaced, as the database counts them."""

    def __init__(
        self,
        cursor: sqlite3.Cursor,
        head: str,
        values: str,
        tail: str = "",
        pick: Callable[[tuple[Any, ...]], Sequence[Any]] | None = None,
    ) -> None:
        self.cursor, self.head, self.values, self.tail, self.pick = cursor, head, values, tail, pick
        # Never more marks than this SQLite allows in one statement (999 before 3.32).
        limit = cursor.connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        self.per_insert = max(1, min(SQLITE_ROWS_PER_INSERT, limit // values.count("?")))
        self.statements: dict[int, str] = {}

    def statement(self, rows: int) -> str:
        if rows not in self.statements:
            self.statements[rows] = self.head + ", ".join([self.values] * rows) + self.tail
        return self.statements[rows]

    def __call__(self, rows: Sequence[tuple[Any, ...]]) -> int:
        stored = 0
        for start in range(0, len(rows), self.per_insert):
            part = rows[start : start + self.per_insert]
            picked = part if self.pick is None else map(self.pick, part)
            self.cursor.execute(
                self.statement(len(part)), list(itertools.chain.from_iterable(picked))
            )
            stored += self.cursor.rowcount
        return stored


def _pending_rows(cursor: sqlite3.Cursor, batch_id: int, now: str) -> _SqliteRows:
    """The INSERTs of SQLite rows of batch `batch_id` that are all pending, without an error
    (`_FIXED`): those values, and the time the load began, written into the statement; only
    the others bound. Binding four values fewer a row, and no CURRENT_TIMESTAMP made twice a
    row, took a tenth off SQLite's share of a load."""
    columns = ", ".join((*_SHARED_COLUMNS, "created_at", "updated_at", *_OWN_COLUMNS))
    shared = f"{int(batch_id)}, '{_PENDING}', NULL, NULL, '{now}', '{now}'"
    marks = ", ".join("?" * len(_OWN_COLUMNS))
    return _SqliteRows(
        cursor, f"INSERT INTO jobs ({columns}) VALUES ", f"({shared}, {marks})", pick=_VARYING
    )


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
    if postgres:  # an upsert: psycopg sends the executemany's rows in one pipeline
        with driver.cursor() as cursor:

            def upsert_rows(rows: Sequence[tuple[Any, ...]]) -> int:
                cursor.executemany(f"{_INSERT}({marks}){_ON_CONFLICT}", rows)
                return int(cursor.rowcount)

            yield upsert_rows
        return
    cursor = driver.cursor()
    # A bigger page cache saves SQLite re-reading index pages it spilled.
    (cache_size,) = cursor.execute("PRAGMA cache_size").fetchone()
    cursor.execute(f"PRAGMA cache_size=-{SQLITE_LOAD_CACHE_KIB}")
    # Every row of a new batch gets the time the load began, as on PostgreSQL, whose now()
    # is the transaction's start (CURRENT_TIMESTAMP, as SQLite writes it, would change
    # during the load). Rows added to a batch that has some get it from the database.
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
    if fresh_batch:
        head = f"INSERT INTO jobs ({_COLUMN_LIST}, created_at, updated_at) VALUES "
        any_rows = _SqliteRows(cursor, head, f"({marks}, '{now}', '{now}')")
    else:
        any_rows = _SqliteRows(cursor, _INSERT, f"({marks})", _ON_CONFLICT)
    pending: dict[int, _SqliteRows] = {}  # by batch
    try:

        def insert_rows(rows: Sequence[tuple[Any, ...]]) -> int:
            if fresh_batch and rows:
                fixed = set(map(_FIXED, rows))
                batch_id, status, error, kind = next(iter(fixed))
                if len(fixed) == 1 and (status, error, kind) == (_PENDING, None, None):
                    if batch_id not in pending:
                        pending[batch_id] = _pending_rows(cursor, batch_id, now)
                    return pending[batch_id](rows)
            return any_rows(rows)

        yield insert_rows
    finally:
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
