"""A load into a new batch leaves finding duplicate ids to the database's unique index, and
holds no id in memory; a duplicate makes it load again from the start with ids remembered, so
the report still names every duplicate by its line. Both databases, with and without the
process that reads the file."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tests.helpers import row
from veobatch.catalog import DEFAULT_MODELS
from veobatch.intake import job_checker
from veobatch.intake.loader import CHUNK_ROWS, LoadResult, load_rows
from veobatch.intake.raw_job import RawJob
from veobatch.store.tables import Job


class Rows:
    """A job file's rows that can be read again, counting how often they were read."""

    def __init__(self, rows: Sequence[RawJob]) -> None:
        self.rows, self.reads = rows, 0

    def read(self) -> Iterable[RawJob]:
        self.reads += 1
        return iter(self.rows)


def loaded(engine: Engine, rows: Rows, *, reader: bool, skip_invalid: bool = False) -> LoadResult:
    return load_rows(
        engine,
        rows.read(),
        batch="b",
        source="jobs.csv",
        models=DEFAULT_MODELS,
        reader_process=reader,
        again=rows.read,
        skip_invalid=skip_invalid,
    )


def stored(engine: Engine) -> list[tuple[str, int, str]]:
    with engine.connect() as conn:
        query = sa.select(Job.ref, Job.line, Job.status).order_by(Job.id)
        return [tuple(r) for r in conn.execute(query)]  # type: ignore[misc]


def messages(result: LoadResult) -> list[str]:
    return [f"{p.line}: {p.field}: {p.message}" for p in result.report.problems]


@pytest.mark.parametrize("reader", [True, False], ids=["reader-process", "one-process"])
def test_a_file_without_duplicates_is_read_once_and_no_id_is_remembered(
    engine: Engine, reader: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    remembered: list[int] = []  # the hashes of the ids remembered, row by row or many at once
    keep, keep_many = job_checker.JobChecker._remember, job_checker.JobChecker._remember_hashes

    def spy(self: job_checker.JobChecker, ref: str, line: int) -> None:
        remembered.append(hash(ref))
        keep(self, ref, line)

    def spy_many(self: job_checker.JobChecker, hashes: Sequence[int], lines: Sequence[int]) -> None:
        remembered.extend(hashes)
        keep_many(self, hashes, lines)

    monkeypatch.setattr(job_checker.JobChecker, "_remember", spy)
    monkeypatch.setattr(job_checker.JobChecker, "_remember_hashes", spy_many)
    rows = Rows([row(n, f"r{n}") for n in range(2, CHUNK_ROWS + 9)])
    result = loaded(engine, rows, reader=reader)
    assert (result.stored, result.created, rows.reads) == (CHUNK_ROWS + 7, True, 1)
    again = loaded(engine, Rows(rows.rows), reader=False)  # the batch exists: ids remembered
    assert (again.stored, again.already_present) == (0, CHUNK_ROWS + 7)
    # Remembered once, by the second load (in this process); in one process, that also shows
    # that the first remembered none.
    assert remembered == [hash(f"r{n}") for n in range(2, CHUNK_ROWS + 9)]


@pytest.mark.parametrize("reader", [True, False], ids=["reader-process", "one-process"])
def test_a_duplicate_id_is_found_by_the_database_and_named_by_its_first_line(
    engine: Engine, reader: bool
) -> None:
    rows = Rows([row(n, f"r{n}") for n in range(2, CHUNK_ROWS + 9)])
    rows.rows = [*rows.rows[:-1], row(CHUNK_ROWS + 9, "r3")]  # last row takes line 3's id
    result = loaded(engine, rows, reader=reader)
    assert result.rejected
    assert rows.reads == 2
    assert messages(result) == [f"{CHUNK_ROWS + 9}: id: duplicate id 'r3': line 3 has the same id"]
    assert (result.stored, stored(engine)) == (0, [])
    kept = loaded(engine, Rows(rows.rows), reader=reader, skip_invalid=True)
    assert kept.stored == CHUNK_ROWS + 6
    assert kept.created
    assert [ref for ref, _, _ in stored(engine)].count("r3") == 1


@pytest.mark.parametrize("reader", [True, False], ids=["reader-process", "one-process"])
def test_a_rejected_file_still_names_the_duplicates_after_its_first_invalid_row(
    engine: Engine, reader: bool
) -> None:
    rows = Rows(
        [
            row(2, "a"),
            row(3, "b", model="veo9"),  # invalid: from here nothing would be kept
            row(4, "c"),
            row(5, "c"),  # a duplicate after it
        ]
    )
    result = loaded(engine, rows, reader=reader)
    assert result.rejected
    assert rows.reads == 2
    problems = messages(result)
    assert problems[0].startswith("3: model:")
    assert problems[1:] == ["5: id: duplicate id 'c': line 4 has the same id"]
    assert stored(engine) == []


@pytest.mark.parametrize("skip_invalid", [False, True], ids=["rejected", "skip-invalid"])
def test_an_invalid_row_that_goes_on_to_the_database_fits_its_columns(
    engine: Engine, skip_invalid: bool
) -> None:
    """A rejected file's rows go on to the database (for its index to see their ids): an
    unknown model longer than the column holds must not stop the load with a database error."""
    long_model = "veo3.1-" + "x" * 80
    rows = Rows([row(2, "a"), row(3, "b", model=long_model), row(4, "c")])
    result = loaded(engine, rows, reader=False, skip_invalid=skip_invalid)
    assert messages(result)[0].startswith("3: model: unknown model")
    assert result.rejected is not skip_invalid
    if skip_invalid:
        assert [(ref, status) for ref, _, status in stored(engine)] == [
            ("a", "pending"),
            ("b", "failed"),
            ("c", "pending"),
        ]
    else:
        assert stored(engine) == []
