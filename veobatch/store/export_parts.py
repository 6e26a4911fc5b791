"""An export made in parts at once: its rows cut into ranges of ids of the same width (about the
same number of rows, as a batch's rows are loaded with consecutive ids), the first made where
the export is read, the others at the same time by workers that each write their text to a
temporary file; the parts are then handed on in order.

Making an export's text is the database's work (PostgreSQL's COPY builds the CSV) or Python's
(SQLite's rows made into cells and lines), and either keeps one core busy. A worker is:

- on PostgreSQL, a thread with a connection of its own: the database's processes do the work
  and the thread only waits on its socket, so threads run at once;
- on SQLite, a forked process with a connection of its own (Python's share of the work holds
  the GIL, so threads would take turns). A process forks only when no other thread runs in
  it (the command line, not a server): a fork copies one thread, and a lock another thread
  held would stay locked in the child forever.

Small exports are made in one part: below `MIN_PART_ROWS` rows a part saves less than a
worker costs. The temporary files together hold at most the export's size less its first
part, and are gone once read, or when the export stops early.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import tempfile
import threading
from collections.abc import Callable, Generator, Iterator
from contextlib import ExitStack, closing
from typing import IO, Any, Final

import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.engine import Engine

from veobatch.forked import Forked
from veobatch.store.tables import Job

MIN_PART_ROWS: Final = 50_000
MAX_PARTS: Final = 4
_READ_BYTES: Final = 1 << 20

# What makes a part: its rows' lines on `conn` (UTF-8), then (last) the number of rows.
PartText = Callable[[Connection, sa.Select[Any]], Generator[bytes | int, None, None]]


def parts_wanted(dialect: str) -> int:
    """How many parts an export on this database may be made in, here and now."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    wanted = min(MAX_PARTS, cores or 1)
    return wanted if dialect == "postgresql" or can_fork() else 1


def can_fork() -> bool:
    """Whether this process can fork safely: the platform can, and no other thread runs."""
    return "fork" in multiprocessing.get_all_start_methods() and threading.active_count() == 1


def split(conn: Connection, query: sa.Select[Any], parts: int) -> list[sa.Select[Any]]:
    """`query` (rows of Job, in id order) as up to `parts` queries of consecutive ids, each a
    range of at least MIN_PART_ROWS ids (one query, `query` itself, for a narrower range).

    The ranges are cut by ids, not by rows counted: the lowest and highest id come from an
    index at once, where counting a million rows just loaded (and finding the middle one)
    read them all, 0.7 s before PostgreSQL's export could start. A batch's rows are loaded
    with consecutive ids, so equal ranges of ids are parts of about equal size; a filter
    that keeps few rows over a wide range makes small parts, which cost a worker each."""
    if parts < 2:
        return [query]
    ids = query.with_only_columns(Job.id).order_by(None).subquery()
    low, high = conn.execute(sa.select(sa.func.min(ids.c.id), sa.func.max(ids.c.id))).one()
    if low is None:
        return [query]
    span = high - low + 1
    parts = min(parts, span // MIN_PART_ROWS)
    if parts < 2:
        return [query]
    bounds = [None, *(low + span * k // parts for k in range(1, parts)), None]
    return [
        query.where(*([Job.id >= start] if start is not None else [])).where(
            *([Job.id < end] if end is not None else [])
        )
        for start, end in itertools.pairwise(bounds)
    ]


class Parts:
    """The parts after the first, made by workers while the first is read (`blocks` of each
    in order, once its file is complete); `rows` counts the rows of the parts read so far.
    Processes where this one can fork and the database is SQLite, threads otherwise."""

    def __init__(self, engine: Engine, queries: list[sa.Select[Any]], make: PartText) -> None:
        self.rows = 0
        self._stack = ExitStack()
        self._workers: list[_Worker] = []
        fork = can_fork() and engine.dialect.name != "postgresql"
        for query in queries:
            file = self._stack.enter_context(tempfile.TemporaryFile())  # noqa: SIM115
            worker = (_ProcessWorker if fork else _ThreadWorker)(engine, query, make, file)
            self._stack.callback(worker.stop)
            self._workers.append(worker)

    def blocks(self) -> Iterator[bytes]:
        """Each part's UTF-8, in order, a megabyte at a time."""
        for worker in self._workers:
            self.rows += worker.wait()
            worker.file.seek(0)
            while block := worker.file.read(_READ_BYTES):
                yield block
            worker.file.close()

    def close(self) -> None:
        """Stop the workers still at work and delete every temporary file."""
        self._stack.close()

    def __enter__(self) -> Parts:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _write_part(
    engine: Engine, query: sa.Select[Any], make: PartText, file: IO[bytes], stop: Any
) -> int:
    """Write the part to `file` on a connection of its own; its rows."""
    rows = 0
    with engine.connect() as conn, closing(make(conn, query)) as texts:
        for text in texts:
            if isinstance(text, int):
                rows = text
            else:
                file.write(text)
            if stop():
                break
    file.flush()
    return rows


class _Worker:
    file: IO[bytes]

    def wait(self) -> int:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError


class _ThreadWorker(_Worker):
    def __init__(
        self, engine: Engine, query: sa.Select[Any], make: PartText, file: IO[bytes]
    ) -> None:
        self.file = file
        self._stopped = False
        self._rows = 0
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, args=(engine, query, make), name="veo-batch-export", daemon=True
        )
        self._thread.start()

    def _run(self, engine: Engine, query: sa.Select[Any], make: PartText) -> None:
        try:
            self._rows = _write_part(engine, query, make, self.file, lambda: self._stopped)
        except BaseException as exc:  # handed to the reader, which raises it
            self._error = exc

    def wait(self) -> int:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._rows

    def stop(self) -> None:
        self._stopped = True
        self._thread.join()


class _ProcessWorker(_Worker):
    def __init__(
        self, engine: Engine, query: sa.Select[Any], make: PartText, file: IO[bytes]
    ) -> None:
        self.file = file

        def produce() -> Iterator[int]:
            engine.dispose(close=False)  # the parent's connections stay the parent's
            yield _write_part(engine, query, make, file, lambda: False)

        self._child = Forked(produce, "veo-batch-export", "a process making the export")

    def wait(self) -> int:
        (rows,) = self._child.values()
        return int(rows)

    def stop(self) -> None:
        self._child.stop()
