"""A database with no room left is a full disk (exit 11), named with what to free, not a
database that cannot be reached (exit 4). SQLite's file is kept small for real with
`PRAGMA max_page_count` on every connection; PostgreSQL answers SQLSTATE 53100 (disk_full)
from a trigger, as it does when it cannot extend a file."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tests.conftest import Cli
from tests.helpers import ROOT, URL
from veobatch.errors import ExitCode
from veobatch.store import database

EXAMPLE = str(ROOT / "jobs.example.yaml")


@pytest.fixture
def room_for(tmp_path: Path) -> Iterator[list[int]]:
    """Every SQLite connection opened while the test runs may grow its file to at most the
    number of pages put in the list (none yet: no limit)."""
    pages: list[int] = []

    def limit(dbapi_connection: Any, _record: Any) -> None:
        if pages and isinstance(dbapi_connection, sqlite3.Connection):
            dbapi_connection.execute(f"PRAGMA max_page_count = {pages[0]}")

    sa.event.listen(Engine, "connect", limit)
    yield pages
    sa.event.remove(Engine, "connect", limit)


def test_a_sqlite_file_that_fills_during_a_run_is_a_full_disk(
    sqlite_run: Cli, tmp_path: Path, room_for: list[int]
) -> None:
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(
        "".join(
            f'{{"prompt": "row {n}", "model": "veo3.1", "images": ["{URL}"]}}\n' for n in range(200)
        ),
        encoding="utf-8",
    )
    assert sqlite_run("load", str(jobs), "--batch", "full").exit_code == 0
    path = tmp_path / "veo-batch.db"
    with sqlite3.connect(path) as conn:
        room_for.append(conn.execute("PRAGMA page_count").fetchone()[0])  # not a page more
    result = sqlite_run("run", "--batch", "full", "--mock", "-o", str(tmp_path / "out.csv"))
    assert result.exit_code == ExitCode.CANNOT_WRITE, result.output
    assert f"the database {path} is full" in result.stderr
    assert "free space on the disk that holds it" in result.stderr
    assert "Traceback" not in result.output


@pytest.fixture
def postgres_full(postgres_url: str) -> Iterator[str]:
    """The test database, answering every new row of `jobs` with disk_full (53100)."""
    engine = database.create_engine(postgres_url)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE FUNCTION no_room() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "RAISE EXCEPTION 'could not extend file \"base/1/2\": No space left on device' "
            "USING ERRCODE = 'disk_full'; END $$"
        )
        conn.exec_driver_sql(
            "CREATE TRIGGER no_room BEFORE INSERT ON jobs FOR EACH STATEMENT "
            "EXECUTE FUNCTION no_room()"
        )
    try:
        yield postgres_url
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP TRIGGER no_room ON jobs")
            conn.exec_driver_sql("DROP FUNCTION no_room()")
            conn.exec_driver_sql("DELETE FROM batches")
        engine.dispose()


def test_a_postgresql_disk_full_is_a_full_disk(postgres_full: str) -> None:
    result = Cli(postgres_full)("load", EXAMPLE, "--batch", "full")
    assert result.exit_code == ExitCode.CANNOT_WRITE, result.output
    assert f"the database {database.safe_url(postgres_full)} is full" in result.stderr
    assert "No space left on device" in result.stderr
    assert "free space on the disk that holds it" in result.stderr
