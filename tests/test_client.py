"""The Python API on SQLite and PostgreSQL: intake with the file checks, idempotent keys,
reading back, and the batch changes; then the rows go out through the embedded runner."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tests.conftest import MOCK_KEY
from tests.helpers import job, run_embedded
from veobatch import Client, Intake, InvalidJobs
from veobatch.errors import BatchPaused, BatchStateError, ExitCode, NotFoundError, VeoBatchError
from veobatch.provider.mock import MockProvider
from veobatch.settings import Secret, Settings


@pytest.fixture
def veo(database_url: str, engine: Engine) -> Iterator[Client]:
    with Client(database_url) as client:
        yield client


def test_add_then_read_back(veo: Client) -> None:
    intake = veo.add("products", [job("sku-1"), job("sku-2", aspect_ratio="9:16")])
    assert (intake.created, intake.added, intake.already_there) == (True, 2, 0)
    assert intake.refs == ["sku-1", "sku-2"]
    status = veo.status("products")
    assert (status.state, status.counts) == ("active", {"pending": 2})
    assert [b.name for b in veo.batches()] == ["products"]
    rows = veo.jobs("products")
    assert [(r["id"], r["status"]) for r in rows] == [("sku-1", "pending"), ("sku-2", "pending")]
    assert veo.jobs("products", limit=1, offset=1)[0]["id"] == "sku-2"
    assert veo.job("products", "sku-2")["history"] == []
    one_view = veo.job("products", "sku-2")  # every field of the row's input, as the export
    assert (one_view["aspect_ratio"], one_view["enhance_prompt"]) == ("9:16", None)
    # Jobs that came as data have no line of a file (it read 0 and 1, their places).
    assert [r["line"] for r in rows] == [None, None]
    assert one_view["line"] is None


def test_the_same_external_id_never_makes_a_second_row(veo: Client) -> None:
    first = veo.add("products", [job("sku-1"), job("sku-2")])
    again = veo.add("products", [job("sku-2"), job("sku-3")])  # a retry, and one new job
    assert (again.created, again.added, again.already_there) == (False, 1, 1)
    assert first.refs[1] == again.refs[0] == "sku-2"
    assert veo.status("products").counts == {"pending": 3}


def test_jobs_without_a_key_are_new_rows_each_time(veo: Client) -> None:
    veo.add("adhoc", [job(None)])
    veo.add("adhoc", [job(None)])
    assert veo.status("adhoc").counts == {"pending": 2}


def test_invalid_jobs_are_named_by_index_and_field_and_nothing_is_stored(veo: Client) -> None:
    with pytest.raises(InvalidJobs) as caught:
        veo.add("products", [job("ok"), job("bad", model="veo4"), job("worse", images=[])])
    problems = caught.value.problems
    assert [(p["index"], p["field"]) for p in problems] == [(1, "model"), (2, "images")]
    assert "job 1: model: unknown model 'veo4'" in str(caught.value)
    with pytest.raises(NotFoundError):
        veo.status("products")  # the batch was not even made
    with pytest.raises(InvalidJobs, match="job 0: a job is a mapping of fields, not str"):
        veo.add("products", ["a fox"])  # type: ignore[list-item]


def test_pause_resume_cancel_and_rerun(veo: Client) -> None:
    veo.add("b", [job("a"), job("b")])
    veo.pause("b")
    assert veo.status("b").state == "paused"
    with pytest.raises(BatchStateError):
        veo.pause("b")
    veo.resume("b")
    assert veo.status("b").state == "active"
    again = veo.rerun("b")  # nothing failed
    assert (again.matched, again.sent_again, again.polled_again) == (0, 0, 0)
    assert veo.cancel("b") == 2
    assert veo.status("b").counts == {"cancelled": 2}


def test_rows_added_from_python_go_to_videos(
    veo: Client, engine: Engine, mock: MockProvider
) -> None:
    veo.add("b", [job("a"), job("b", prompt="[mock:fail] refused")])
    bid = veo.status("b").id
    run_embedded(engine, mock, bid)
    done = {r["id"]: r for r in veo.iter_jobs("b")}
    assert done["a"]["status"] == "succeeded"
    assert done["a"]["video_url"]
    assert (done["b"]["status"], done["b"]["error_kind"]) == ("failed", "remote")
    story = veo.job("b", "b")["history"]
    assert story[0]["action"] == "submit"
    assert story[-1]["remote_status"] == "FAILURE"
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM jobs")).scalar_one() == 2


def test_one_call_adds_at_most_its_limit(veo: Client) -> None:
    with pytest.raises(VeoBatchError, match="100,001 jobs in one call; at most 100,000"):
        veo.add("huge", [job(f"k{n}") for n in range(100_001)])
    with pytest.raises(NotFoundError):
        veo.status("huge")


def test_many_callers_making_the_same_new_batch_at_once_all_succeed(veo: Client) -> None:
    jobs = [job(f"sku-{n}") for n in range(5)]
    start = threading.Barrier(20)

    def add() -> Intake:
        start.wait()
        return veo.add("burst", jobs)

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda _: add(), range(20)))
    assert sum(answer.created for answer in answers) == 1
    assert sum(answer.added for answer in answers) == 5
    assert veo.status("burst").counts == {"pending": 5}


def test_client_run_takes_a_batch_to_its_end_as_the_cli_does(
    database_url: str, engine: Engine, mock: MockProvider, tmp_path: Path
) -> None:
    """`Client.run` is `veo-batch run --batch NAME` for Python: the rows go out, each task
    is followed to its video, the results are written, and the outcome says how it ended."""
    settings = Settings(api_base=mock.url, api_key=Secret(MOCK_KEY), poll_delay=0.05)
    results = tmp_path / "products.results.csv"
    with Client(database_url, settings=settings) as veo:
        veo.add("products", [job("sku-1"), job("sku-2"), job("bad", prompt="[mock:fail] no")])
        seen: list[int] = []
        outcome = veo.run(
            "products", results=str(results), on_progress=lambda p: seen.append(p.done)
        )
    assert outcome.batch.counts == {"succeeded": 2, "failed": 1}
    assert outcome.exit_code == ExitCode.ROWS_FAILED  # as `veo-batch run` exits
    assert outcome.unfinished == 1
    assert outcome.results == results
    assert results.read_text().count("\n") == 4  # a header and three rows
    assert seen[-1:] == [3]  # the last progress seen: every row done


def test_client_run_refuses_a_paused_batch(veo: Client) -> None:
    veo.add("products", [job("sku-1")])
    veo.pause("products", "checking the prompts")
    with pytest.raises(BatchPaused, match="checking the prompts") as paused:
        veo.run("products")
    assert paused.value.exit_code == ExitCode.PAUSED
