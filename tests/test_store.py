"""The job store on SQLite and PostgreSQL: loads, rollbacks, reloads, export, schema drift."""

from __future__ import annotations

import csv
import json
import multiprocessing
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

from bench.loading.postgres import ROW_COLUMNS as FLOOR_COLUMNS
from tests.helpers import URL, load, row
from veobatch.catalog import DEFAULT_MODELS
from veobatch.errors import BatchStateError, DatabaseError, JobFileError
from veobatch.intake.loader import CHUNK_ROWS, load_rows
from veobatch.intake.raw_job import RawJob
from veobatch.intake.readers import open_job_file
from veobatch.lifecycle import transitions
from veobatch.service import BatchService
from veobatch.settings import Settings
from veobatch.store import database, inserts
from veobatch.store.export import CHUNK_ROWS as EXPORT_CHUNK
from veobatch.store.export import ExportText, write_export
from veobatch.store.queries import RowFilter, batch_id, batch_summaries
from veobatch.store.tables import Base, Job

EXAMPLE = Path(__file__).parent.parent / "jobs.example.yaml"


def statuses(engine: Engine, batch: str = "b") -> dict[str, int]:
    with engine.connect() as conn:
        return batch_summaries(conn, batch)[0].counts


def table_counts(engine: Engine) -> tuple[int, int]:
    with engine.connect() as conn:
        batches = conn.exec_driver_sql("SELECT count(*) FROM batches").scalar_one()
        jobs = conn.exec_driver_sql("SELECT count(*) FROM jobs").scalar_one()
    return batches, jobs


def test_migrations_and_models_do_not_drift(engine: Engine) -> None:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []
        assert database.current_revision(engine) == database.head_revision()


def test_the_migrations_are_one_line_whose_end_is_the_newest_file() -> None:
    scripts = ScriptDirectory.from_config(database.alembic_config("sqlite://"))
    files = sorted(
        (Path(__file__).parent.parent / "veobatch" / "migrations" / "versions").glob("0*.py")
    )
    chain = [scripts.get_revision(path.name.split("_", 1)[0]) for path in files]
    assert all(script is not None for script in chain), "a file's name is not its revision"
    assert [s.down_revision for s in chain] == [None, *(s.revision for s in chain[:-1])]
    assert scripts.get_heads() == [chain[-1].revision] == [database.head_revision()]
    # What a command compares the database with, read from the files without Alembic.
    assert database.newest_revision() == database.head_revision()


def test_a_database_behind_the_newest_revision_is_not_taken_for_a_current_one(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = database.create_engine(url)
    database.upgrade(engine, "0006")
    assert database.current_revision(engine) == "0006"
    with pytest.raises(DatabaseError, match=r"at revision 0006, not at the newest schema"):
        database.open_database(url, migrate=False)
    assert database.current_revision(database.open_database(url)) == database.head_revision()
    engine.dispose()


def test_load_the_example_file(engine: Engine, tmp_path: Path) -> None:
    service = BatchService(engine, Settings(data_dir=str(tmp_path)))
    with open_job_file(str(EXAMPLE)) as job_file:
        result = service.load(job_file, "example")
    assert (result.rows, result.valid, result.stored, result.created) == (6, 6, 6, True)
    assert result.local_images[0] == 5  # the photos in examples/photos/
    assert result.models["veo3.1"] == 2
    assert statuses(engine, "example") == {"pending": 6}
    with engine.connect() as conn:
        rows = {r.ref: r for r in conn.execute(RowFilter().query(batch_id(conn, "example")))}
    tea = rows["tea-garden-zh"]
    assert tea.prompt.startswith("清晨的茶园")
    assert tea.enhance_prompt is True
    assert tea.model == "veo3-fast-frames"
    assert rows["portrait-vertical"].extra == {"enable_upsample": True}
    assert rows["product-spin"].images == [
        "https://images.example.com/mug/front.jpg",
        "https://images.example.com/mug/side.jpg",
        "https://images.example.com/mug/logo.jpg",
    ]
    assert rows["sunrise-lake"].line == 19
    [lake] = rows["sunrise-lake"].images
    assert lake["path"] == str(EXAMPLE.parent / "examples" / "photos" / "lake.jpg")
    assert (lake["width"], lake["height"], lake["type"]) == (1280, 720, "image/jpeg")


def test_an_invalid_row_anywhere_leaves_the_database_unchanged(engine: Engine) -> None:
    load(engine, [row(1, "keep")], batch="earlier")
    before = table_counts(engine)
    rows = [row(n, f"r{n}") for n in range(1, 3 * CHUNK_ROWS)]  # several chunks written...
    rows.append(row(99_999, "bad", model="veo9"))  # ...before the bad row at the very end
    result = load(engine, rows, batch="big")
    assert result.rejected
    assert result.stored == 0
    assert len(result.report.problems) == 1
    assert result.report.problems[0].format("f").startswith("f:99999: model: unknown model 'veo9'")
    assert table_counts(engine) == before


def test_skip_invalid_stores_bad_rows_as_failed(engine: Engine) -> None:
    rows = [row(2, "ok"), row(3, "bad", images=["cat.png"]), row(4, "ok", prompt="dup")]
    result = load(engine, rows, skip_invalid=True)
    assert not result.rejected
    assert (result.valid, result.report.invalid_rows, result.stored) == (1, 2, 2)
    assert statuses(engine) == {"pending": 1, "failed": 1}
    with engine.connect() as conn:
        bad = conn.execute(RowFilter(refs=["bad"]).query(batch_id(conn, "b"))).one()
    assert bad.error_kind == "invalid"
    assert bad.error.startswith("line 3: images: 'cat.png' is a file path")
    assert bad.images == ["cat.png"]  # kept as given, for the person who fixes it


def test_loading_again_adds_only_new_rows_and_replaces_fixed_invalid_ones(engine: Engine) -> None:
    load(engine, [row(2, "a"), row(3, "b", model="nope")], skip_invalid=True)
    result = load(engine, [row(2, "a"), row(3, "b"), row(4, "c")])
    assert (result.created, result.stored, result.already_present) == (False, 2, 1)
    assert statuses(engine) == {"pending": 3}
    assert table_counts(engine) == (1, 3)


def test_a_cancelled_batch_takes_no_more_rows(engine: Engine) -> None:
    load(engine, [row(2, "a")])
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE batches SET state = 'cancelled'")
    with pytest.raises(BatchStateError, match="was cancelled"):
        load(engine, [row(3, "b")])


def test_rows_without_ids_are_matched_by_line_on_reload(engine: Engine) -> None:
    rows = [row(n) for n in range(2, 12)]
    assert load(engine, rows).stored == 10
    assert load(engine, rows).already_present == 10
    assert table_counts(engine) == (1, 10)


def test_export_round_trips_through_the_loader(engine: Engine, tmp_path: Path) -> None:
    rows = [
        row(2, "a", aspect_ratio="9:16", enhance_prompt=True, enable_upsample=True),
        row(3, "b", prompt='quote " and, comma\nnew line 中文', images=[URL, URL], seed=7),
    ]
    load(engine, rows)
    out = tmp_path / "out.csv"
    with engine.connect() as conn:
        text = ExportText(engine, RowFilter().query(batch_id(conn, "b")), "csv")
    write_export(str(out), text.chunks())
    assert text.rows == 2
    with out.open(newline="", encoding="utf-8") as handle:
        exported = list(csv.DictReader(handle))
    assert exported[0]["status"] == "pending"
    assert exported[0]["enable_upsample"] == "true"
    assert exported[1]["prompt"] == 'quote " and, comma\nnew line 中文'
    assert exported[1]["images"] == f"{URL}|{URL}"
    assert exported[1]["seed"] == "7"
    for name in ("task_id", "error", "error_kind", "http_status", "video_url", "created_at"):
        assert name in exported[0]
    with open_job_file(str(out)) as job_file:
        again = load(engine, list(job_file.rows()), batch="again")
    assert again.stored == 2
    assert "status" in again.ignored_fields
    with engine.connect() as conn:
        copy = {r.ref: r for r in conn.execute(RowFilter().query(batch_id(conn, "again")))}
    assert copy["b"].prompt == rows[1].prompt
    assert copy["b"].extra == {"seed": "7"}  # CSV carries text
    assert copy["a"].enhance_prompt is True


def test_export_jsonl_keeps_types(engine: Engine, tmp_path: Path) -> None:
    load(engine, [row(2, "a", enhance_prompt=False, seed=7)])
    out = tmp_path / "out.jsonl"
    with engine.connect() as conn:
        write_export(
            str(out), ExportText(engine, RowFilter().query(batch_id(conn, "b")), "jsonl").chunks()
        )
    record = json.loads(out.read_text(encoding="utf-8"))
    assert record["images"] == [URL]
    assert record["enhance_prompt"] is False
    assert record["seed"] == 7
    assert record["line"] == 2


def test_export_times_are_utc_whatever_the_sessions_zone_and_chunks_join_up(
    database_url: str, tmp_path: Path
) -> None:
    # PostgreSQL is asked for the times as text: in UTC even when the session's zone is not.
    url = database_url
    if "postgresql" in url:
        url += ("&" if "?" in url else "?") + "options=-c%20timezone%3DAsia%2FShanghai"
    engine = database.open_database(url, migrate=True)
    count = EXPORT_CHUNK + 3
    load(engine, [row(n, f"r{n}") for n in range(2, count + 2)])
    with_micros = datetime(2026, 12, 4, 1, 2, 3, 456789, tzinfo=UTC)
    whole = datetime(2026, 12, 4, 23, 59, 59, tzinfo=UTC)
    with engine.begin() as conn:
        conn.execute(sa.update(Job).values(submitted_at=with_micros, finished_at=whole))
    out = tmp_path / "out.csv"
    with engine.connect() as conn:
        text = ExportText(engine, RowFilter().query(batch_id(conn, "b")), "csv")
    write_export(str(out), text.chunks())
    engine.dispose()
    with out.open(newline="", encoding="utf-8") as handle:
        exported = list(csv.DictReader(handle))
    assert text.rows == len(exported) == count  # every chunk written, in order
    assert [r["id"] for r in exported] == [f"r{n}" for n in range(2, count + 2)]
    assert exported[-1]["submitted_at"] == "2026-12-04T01:02:03.456789+00:00"
    assert exported[-1]["finished_at"] == "2026-12-04T23:59:59+00:00"
    assert exported[0]["created_at"].endswith("+00:00")


def test_counts_per_status_use_one_query_per_call(engine: Engine) -> None:
    load(engine, [row(n, f"r{n}") for n in range(2, 7)], batch="one")
    load(engine, [row(2, "x")], batch="two")
    with engine.connect() as conn:
        summaries = batch_summaries(conn)
    assert [(s.name, s.total) for s in summaries] == [("one", 5), ("two", 1)]


def test_timestamps_come_back_in_utc(engine: Engine) -> None:
    load(engine, [row(2, "a")])
    with engine.connect() as conn:
        summary = batch_summaries(conn, "b")[0]
        created = conn.execute(sa.text("SELECT created_at FROM jobs")).scalar_one()
    assert summary.created_at.tzinfo is not None
    assert created is not None


@pytest.mark.parametrize("reader_process", [True, False], ids=["forked-reader", "in-process"])
def test_both_ways_of_loading_store_the_same_rows(
    engine: Engine, tmp_path: Path, reader_process: bool
) -> None:
    path = tmp_path / "jobs.csv"
    lines = ["id,prompt,model,images,enhance_prompt,seed"]
    lines += [f"r{n},prompt {n},veo3.1,{URL}|{URL},{n % 2 == 0},{n}" for n in range(CHUNK_ROWS + 7)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with open_job_file(str(path)) as job_file:
        result = load_rows(
            engine,
            job_file.rows(),
            batch="b",
            source=str(path),
            models=DEFAULT_MODELS,
            reader_process=reader_process,
        )
    assert (result.rows, result.valid, result.stored) == (
        CHUNK_ROWS + 7,
        CHUNK_ROWS + 7,
        CHUNK_ROWS + 7,
    )
    assert result.image_counts == {2: CHUNK_ROWS + 7}
    with engine.connect() as conn:
        last = conn.execute(RowFilter(refs=[f"r{CHUNK_ROWS + 6}"]).query(batch_id(conn, "b"))).one()
    assert last.line == CHUNK_ROWS + 8
    assert last.enhance_prompt is True
    assert last.extra == {"seed": str(CHUNK_ROWS + 6)}


@pytest.mark.parametrize("reader_process", [True, False], ids=["forked-reader", "in-process"])
def test_a_file_that_breaks_after_many_rows_stores_nothing(
    engine: Engine, tmp_path: Path, reader_process: bool
) -> None:
    path = tmp_path / "jobs.csv"
    good = "".join(f"r{n},prompt,veo3.1,{URL}\n" for n in range(3 * CHUNK_ROWS))
    path.write_bytes(f"id,prompt,model,images\n{good}bad,caf\xe9,veo3.1,{URL}\n".encode("latin-1"))
    with pytest.raises(JobFileError) as info, open_job_file(str(path)) as job_file:
        load_rows(
            engine,
            job_file.rows(),
            batch="b",
            source=str(path),
            models=DEFAULT_MODELS,
            reader_process=reader_process,
        )
    assert info.value.line == 3 * CHUNK_ROWS + 2
    assert "is not UTF-8 text (byte 0xe9 at column 8)" in str(info.value)
    assert table_counts(engine) == (0, 0)


def test_a_database_made_by_the_first_release_keeps_its_rows(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = database.create_engine(url)
    database.upgrade(engine, "0001")
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO batches (id, name, source, state) VALUES (1, 'old', 'old.csv', 'active')"
        )
        conn.exec_driver_sql(
            "INSERT INTO jobs (batch_id, ref, prompt, model, images, status, task_id) VALUES "
            "(1, 'a', 'p', 'veo3.1', '[]', 'submitted', 'veo3:1-x')"
        )
    engine.dispose()
    engine = database.open_database(url)  # SQLite migrates itself
    with engine.connect() as conn:
        row = conn.execute(sa.select(Job)).one()
        due = transitions.due_polls(conn, transitions.utcnow(), 10, timedelta(minutes=1))
    assert (row.status, row.task_id, row.polls, row.downloads) == ("submitted", "veo3:1-x", 0, 0)
    assert due == [row.id]  # its task is followed from now on
    assert database.current_revision(engine) == database.head_revision()
    engine.dispose()


def test_every_migration_goes_down_and_up_again(engine: Engine) -> None:
    config = database.alembic_config(engine.url.render_as_string(hide_password=False))
    command.downgrade(config, "base")
    assert database.current_revision(engine) is None
    command.upgrade(config, "head")
    assert database.current_revision(engine) == database.head_revision()


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".yaml"])
def test_external_id_is_the_rows_key_in_every_format(
    engine: Engine, tmp_path: Path, suffix: str
) -> None:
    texts = {
        ".csv": f"external_id,prompt,model,images\nsku-1,a,veo3.1,{URL}\nsku-2,b,veo3.1,{URL}\n",
        ".jsonl": "".join(
            json.dumps({"external_id": f"sku-{n}", "prompt": p, "model": "veo3.1", "images": [URL]})
            + "\n"
            for n, p in ((1, "a"), (2, "b"))
        ),
        ".yaml": "jobs:\n"
        + "".join(
            f"  - {{external_id: sku-{n}, prompt: {p}, model: veo3.1, images: [{URL}]}}\n"
            for n, p in ((1, "a"), (2, "b"))
        ),
    }
    path = tmp_path / f"jobs{suffix}"
    path.write_text(texts[suffix], encoding="utf-8")
    for _ in range(2):  # sent twice: one row each
        with open_job_file(str(path)) as job_file:
            load(engine, list(job_file.rows()))
    with engine.connect() as conn:
        rows = conn.execute(RowFilter().query(batch_id(conn, "b"))).all()
    assert [(r.ref, r.prompt, r.extra) for r in rows] == [
        ("sku-1", "a", None),
        ("sku-2", "b", None),
    ]


def test_id_and_external_id_must_agree(engine: Engine) -> None:
    row = RawJob.from_mapping(
        3, {"id": "a", "external_id": "b", "prompt": "p", "model": "veo3.1", "images": [URL]}
    )
    result = load(engine, [row])
    assert result.rejected
    assert result.report.lines() == ["test:3: external_id: differs from id 'a'; give one of them"]


def _open(url: str, start: Any) -> str | None:
    start.wait()
    return database.current_revision(database.open_database(url))


def test_processes_opening_a_new_sqlite_file_at_once_all_get_its_schema(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    for attempt in range(5):
        url = f"sqlite:///{tmp_path / f'new-{attempt}.db'}"
        start = context.Manager().Barrier(4)
        with context.Pool(4) as pool:
            revisions = pool.starmap(_open, [(url, start)] * 4)
        assert revisions == [database.head_revision()] * 4


NO_EXTRA_PENDING = (None, "pending", None, None)  # extra, status, error, error_kind


def test_a_new_batch_stores_each_value_of_its_rows_whichever_insert_it_takes(
    engine: Engine,
) -> None:
    """Rows of a new batch that are all pending go in by INSERTs with their shared values
    written into them (SQLite); any other chunk by the general ones. Either way every value
    is stored as given, in order, and all the load's rows have one creation time."""
    _stores_each_kind_of_row(engine)


def test_sqlite_inserts_never_hold_more_marks_than_it_allows(tmp_path: Path) -> None:
    """SQLite takes many rows an INSERT: fewer where a build allows fewer marks a statement
    (999 before 3.32), here 30."""
    sqlite = database.open_database(f"sqlite:///{tmp_path / 'marks.db'}", migrate=True)
    try:
        _stores_each_kind_of_row(sqlite, marks_allowed=30)
    finally:
        sqlite.dispose()


def _stores_each_kind_of_row(engine: Engine, marks_allowed: int | None = None) -> None:
    with engine.connect() as conn, conn.begin():
        if marks_allowed is not None:
            driver = conn.connection.driver_connection
            driver.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, marks_allowed)  # type: ignore[union-attr]
        bid, created = inserts.batch_for_load(conn, "fresh", "test", None)
        assert created
        images = json.dumps([URL])
        many = inserts.SQLITE_ROWS_PER_INSERT * 2 + 3  # some INSERTs full, one not
        pending = [
            (bid, f"r{n}", n, f"prompt {n}", "veo3.1", images, "9:16", True, *NO_EXTRA_PENDING)
            for n in range(2, 2 + many)
        ]
        failed = ("failed", "model: unknown 'veo9'", "invalid")
        mixed = [
            (bid, f"bad{n}", n, "p", "veo9", "[]", None, None, '{"seed": 1}', *failed)
            for n in range(many)
        ] + [(bid, "r-last", 7, "it's", "veo3.1", images, None, False, *NO_EXTRA_PENDING)]
        with inserts.row_writer(conn, fresh_batch=True) as write:
            assert write(pending) == len(pending)
            assert write(mixed) == len(mixed)
            assert write([]) == 0
        columns = [  # the JSON ones as the text stored
            sa.cast(column, sa.Text) if isinstance(column.type, sa.JSON) else column
            for column in (Job.__table__.c[name] for name in inserts.ROW_COLUMNS)
        ]
        stored = conn.execute(sa.select(*columns).order_by(Job.id)).all()
        times = conn.execute(sa.select(Job.created_at, Job.updated_at).distinct()).all()
    assert [tuple(row) for row in stored] == pending + mixed
    assert len(times) == 1
    assert times[0][0] == times[0][1]
    assert abs(times[0][0].replace(tzinfo=UTC) - datetime.now(UTC)) < timedelta(minutes=5)


def test_a_reload_adds_and_replaces_rows_many_an_insert(engine: Engine) -> None:
    """Loading into a batch that has rows: more rows than one INSERT takes, some new, some
    replacing rows stored as invalid, some already there and kept; the count says how many
    were added or replaced."""
    images = json.dumps([URL])
    many = inserts.SQLITE_ROWS_PER_INSERT + 7
    failed = ("failed", "model: unknown 'veo9'", "invalid")

    def rows(bid: int, status: tuple[str | None, ...], start: int) -> list[tuple[Any, ...]]:
        return [
            (bid, f"r{n}", n, f"prompt {n}", "veo3.1", images, None, None, None, *status)
            for n in range(start, start + many)
        ]

    with engine.connect() as conn, conn.begin():
        bid, _ = inserts.batch_for_load(conn, "again", "test", None)
        with inserts.row_writer(conn, fresh_batch=True) as write:
            write(rows(bid, failed, 0) + rows(bid, NO_EXTRA_PENDING[1:], many))
        bid, created = inserts.batch_for_load(conn, "again", "test", None)
        assert not created
        with inserts.row_writer(conn, fresh_batch=False) as write:
            # the invalid ones fixed, the pending ones again, and new ones
            again = rows(bid, NO_EXTRA_PENDING[1:], 0)
            assert write(again + rows(bid, NO_EXTRA_PENDING[1:], many)) == many
            assert write(rows(bid, NO_EXTRA_PENDING[1:], 2 * many)) == many
        counts = dict(
            conn.execute(sa.select(Job.status, sa.func.count()).group_by(Job.status)).all()
        )
    assert counts == {"pending": 3 * many}


def test_the_benchmarks_floor_sends_the_columns_a_load_sends() -> None:
    """bench/load.py's floor (PostgreSQL storing veo-batch's rows by itself) names the columns
    a load sends without importing veobatch: they must stay the same."""
    assert FLOOR_COLUMNS.split(", ") == list(inserts.ROW_COLUMNS)
