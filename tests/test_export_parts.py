"""A big export is made in parts at once (veobatch/store/export_parts.py): forked processes on
SQLite, threads on PostgreSQL. Parts must give the same bytes as one part, in order, and a
part that fails must fail the export, with no worker or file left behind."""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.engine import Engine

from tests.helpers import load, row
from veobatch.errors import VeoBatchError
from veobatch.store import export_parts
from veobatch.store.export import ExportText, extra_keys, extra_texts
from veobatch.store.export_parts import Parts, split
from veobatch.store.queries import RowFilter, batch_id
from veobatch.store.tables import Job

ROWS = 50


@pytest.fixture
def stored(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Engine:
    """`ROWS` rows, a few of them failed, parts of at least 7 rows."""
    monkeypatch.setattr(export_parts, "MIN_PART_ROWS", 7)
    load(engine, [row(n, f"r{n}", prompt=f'"{n}", with a comma') for n in range(2, ROWS + 2)])
    with engine.begin() as conn:
        conn.execute(sa.update(Job).where(Job.id % 4 == 0).values(status="failed", error="x"))
    return engine


def exported(engine: Engine, format: str, parts: int, **filters: Any) -> tuple[str, int]:
    with engine.connect() as conn:
        query = RowFilter(**filters).query(batch_id(conn, "b"))
    text = ExportText(engine, query, format, priced={"veo3.1"}, parts=parts)
    return "".join(text), text.rows


@pytest.mark.parametrize("format", ["csv", "jsonl"])
def test_an_export_in_parts_is_the_same_text_as_in_one(stored: Engine, format: str) -> None:
    whole, rows = exported(stored, format, parts=1)
    assert rows == ROWS
    for parts in (2, 3, 4):
        assert exported(stored, format, parts=parts) == (whole, ROWS)
    failed, rows = exported(stored, format, parts=3, statuses=["failed"])
    assert rows == ROWS // 4 == len(failed.splitlines()) - (format == "csv")


def test_rows_are_cut_into_ranges_of_ids_that_cover_each_row_once(
    stored: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    def cut(conn: Connection, **filters: Any) -> list[list[int]]:
        queries = split(conn, RowFilter(**filters).query(batch_id(conn, "b")), 4)
        return [list(conn.scalars(q.with_only_columns(Job.id))) for q in queries]

    with stored.connect() as conn:
        ids = cut(conn)
        failed = cut(conn, statuses=["failed"])  # ids 4, 8, ... 48: a range of 45 ids
        monkeypatch.setattr(export_parts, "MIN_PART_ROWS", 23)
        narrow = cut(conn, statuses=["failed"])  # 45 ids: too few for two parts of 23
    assert len(ids) == 4
    assert [i for part in ids for i in part] == list(range(1, ROWS + 1))
    assert sorted(map(len, ids)) == [12, 12, 13, 13]  # 50 ids in 4 ranges
    assert [i for part in failed for i in part] == list(range(4, ROWS + 1, 4))
    assert len(failed) == 4
    assert narrow == [list(range(4, ROWS + 1, 4))]


def _failing(conn: Connection, query: sa.Select[Any]) -> Generator[bytes | int, None, None]:
    yield b"a line\n"
    raise VeoBatchError("the part broke")


def test_a_part_that_fails_fails_the_export_and_leaves_nothing(stored: Engine) -> None:
    with stored.connect() as conn:
        queries = split(conn, RowFilter().query(batch_id(conn, "b")), 3)
    with Parts(stored, queries[1:], _failing) as parts:
        workers = list(parts._workers)
        with pytest.raises(VeoBatchError, match="the part broke"):
            list(parts.blocks())
    assert all(worker.file.closed for worker in workers)
    _assert_stopped(workers)


def _endless(conn: Connection, query: sa.Select[Any]) -> Generator[bytes | int, None, None]:
    while True:
        yield b"x" * 1000


def test_an_export_stopped_early_stops_its_workers(stored: Engine) -> None:
    with stored.connect() as conn:
        queries = split(conn, RowFilter().query(batch_id(conn, "b")), 3)
    parts = Parts(stored, queries[1:], _endless)  # (the export's reader went away)
    workers = list(parts._workers)
    assert all(_running(worker) for worker in workers)
    parts.close()
    assert all(worker.file.closed for worker in workers)
    _assert_stopped(workers)


def _running(worker: Any) -> bool:
    if isinstance(worker, export_parts._ProcessWorker):
        return bool(worker._child.is_alive())
    return bool(worker._thread.is_alive())


def _assert_stopped(workers: list[Any]) -> None:
    for worker in workers:
        if isinstance(worker, export_parts._ProcessWorker):
            process = worker._child
            assert not process.is_alive()
            assert process.pid is not None
            with pytest.raises(ProcessLookupError):
                os.kill(process.pid, 0)
        else:
            assert not worker._thread.is_alive()


def test_the_pass_through_columns_are_found_from_the_rows_that_have_some(engine: Engine) -> None:
    """An export's pass-through columns come from the rows with an `extra`, in first-seen
    order, read through `ix_jobs_extra` (only those rows), not the whole batch."""
    load(engine, [row(2, "a"), row(3, "b", seed=7), row(4, "c"), row(5, "d", note="x", seed=1)])
    with engine.connect() as conn:
        query = RowFilter().query(batch_id(conn, "b"))
        assert extra_keys(conn, query) == ["seed", "note"]
        texts = extra_texts(query).compile(conn, compile_kwargs={"literal_binds": True})
        if engine.dialect.name == "sqlite":
            plan = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {texts}").fetchall()
        else:
            conn.exec_driver_sql("SET enable_seqscan = off")  # a tiny table: the plan, not cost
            plan = conn.exec_driver_sql(f"EXPLAIN {texts}").fetchall()
    assert "ix_jobs_extra" in str(plan), plan
