"""Reviewing videos: approved or rejected, kept on the row, exported, filtered, and rerun."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import Engine

from tests.conftest import Cli
from tests.helpers import TOKEN, Served, load_prompts, run_embedded
from veobatch.errors import UnconfirmedRerun, VeoBatchError
from veobatch.provider.mock import MockProvider
from veobatch.service import BatchService
from veobatch.settings import Settings


def test_a_review_is_kept_filtered_exported_and_rerun(engine: Engine, mock: MockProvider) -> None:
    batch = load_prompts(engine, ["a red fox", "a blue bird", "a green frog", "a fox cub"])
    run_embedded(engine, mock, batch)
    veo = BatchService(engine, Settings())
    assert veo.review("b", ["r2", "r5"], "rejected") == 2
    assert veo.review("b", ["r3"], "approved") == 1
    assert [j["id"] for j in veo.jobs("b", reviews=["rejected"])] == ["r2", "r5"]
    assert [j["id"] for j in veo.jobs("b", reviews=["none"])] == ["r4"]
    assert [j["id"] for j in veo.jobs("b", text="fox")] == ["r2", "r5"]
    assert [j["id"] for j in veo.jobs("b", text="R3")] == ["r3"]  # ids too, any case
    assert veo.jobs("b", text="100%") == []  # % is a character, not a wildcard
    exported = "".join(veo.export("b", "csv"))
    assert exported.splitlines()[0].count("review") == 1
    assert exported.count(",rejected,") == 2

    look = veo.rerun("b", ["succeeded"], reviews=["rejected"], dry_run=True)
    assert (look.matched, look.paid_rows) == (2, 2)
    with pytest.raises(UnconfirmedRerun) as refused:  # their videos were paid for
        veo.rerun("b", ["succeeded"], reviews=["rejected"])
    assert (refused.value.matched, refused.value.paid_rows) == (2, 2)
    assert veo.status("b").counts == {"succeeded": 4}  # nothing changed
    done = veo.rerun("b", ["succeeded"], reviews=["rejected"], confirm_paid=True)
    assert done.sent_again == 2
    run_embedded(engine, mock, batch)
    created = mock.stats()["created_by_prompt"]
    assert (created["a red fox"], created["a fox cub"], created["a blue bird"]) == (2, 2, 1)
    assert veo.jobs("b", reviews=["rejected"]) == []  # a new video is not reviewed yet
    with pytest.raises(VeoBatchError, match="is not approved, rejected or none"):
        veo.review("b", ["r2"], "meh")


def test_reviews_over_http(engine: Engine, database_url: str, mock: MockProvider) -> None:
    batch = load_prompts(engine, ["one", "two"])
    run_embedded(engine, mock, batch)
    with (
        Served(engine, database_url) as served,
        httpx.Client(base_url=served.url, headers={"Authorization": f"Bearer {TOKEN}"}) as api,
    ):
        marked = api.post("/batches/b/review", json={"ids": ["r2"], "review": "rejected"})
        assert marked.json()["rows"] == 1
        page = api.get("/batches/b/jobs", params={"review": "rejected"}).json()
        assert [j["id"] for j in page["jobs"]] == ["r2"]
        assert page["jobs"][0]["review"] == "rejected"
        assert api.get("/batches/b/jobs", params={"q": "two"}).json()["total"] == 1
        rerun = api.post(
            "/batches/b/rerun",
            json={"statuses": ["succeeded"], "reviews": ["rejected"], "dry_run": True},
        ).json()
        assert rerun["matched"] == 1
        bad = api.post("/batches/b/review", json={"ids": ["r2"], "review": "meh"})
        assert bad.status_code == 422


def test_reviews_from_the_command_line(sqlite_run: Cli, tmp_path: Path) -> None:
    jobs = tmp_path / "shop.csv"
    jobs.write_text(
        "id,prompt,model,images\na,p,veo3.1,https://x.io/a.jpg\nb,q,veo3.1,https://x.io/b.jpg\n"
    )
    assert sqlite_run("run", str(jobs), "--mock").exit_code == 0
    marked = sqlite_run("review", "shop", "--id", "a,b", "--reject")
    assert "2 rows marked rejected" in marked.stdout
    look = sqlite_run("rerun", "shop", "--status", "succeeded", "--review", "rejected", "--dry-run")
    assert "2 rows match; nothing changed" in look.stdout
    assert sqlite_run("review", "shop", "--id", "a").exit_code == 2  # which verdict?


def test_a_rerun_resends_the_rows_its_dry_run_counted(engine: Engine, mock: MockProvider) -> None:
    """The dry run and the rerun choose rows with one filter: "none" (not reviewed) means
    the same to both."""
    batch = load_prompts(engine, ["one", "two", "three"])
    run_embedded(engine, mock, batch)
    veo = BatchService(engine, Settings())
    veo.review("b", ["r2"], "rejected")
    marks = ["none", "rejected"]
    look = veo.rerun("b", ["succeeded"], reviews=marks, dry_run=True)
    done = veo.rerun("b", ["succeeded"], reviews=marks, confirm_paid=True)
    assert look.matched == done.sent_again == 3


def test_a_rerun_that_matches_nothing_leaves_a_finished_batch_finished(
    engine: Engine, mock: MockProvider
) -> None:
    batch = load_prompts(engine, ["one"])
    run_embedded(engine, mock, batch)
    veo = BatchService(engine, Settings())
    assert veo.status("b").state == "finished"
    done = veo.rerun("b")  # no row failed
    assert (done.matched, done.state) == (0, "finished")
    assert veo.status("b").state == "finished"
