"""Spend safety: prices, estimates, budgets per batch and a daily cap, exact and held in the
claim's transaction; over real SQLite and PostgreSQL and the mock provider. (The race of four
workers in two processes is in test_distributed.py.)"""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tests.conftest import Cli
from tests.helpers import URL, run_embedded
from veobatch.errors import ConfigError, VeoBatchError
from veobatch.intake.readers import open_job_file
from veobatch.lifecycle import spending, transitions
from veobatch.lifecycle.poll_rules import Pacing
from veobatch.lifecycle.spend_rules import Spending, expected_polls
from veobatch.pricing import amount, decimal_text, money, parse_prices
from veobatch.provider.mock import MockProvider
from veobatch.python_api import Client
from veobatch.service import BatchService
from veobatch.settings import Settings
from veobatch.store.tables import Batch, Delivery, Job, SpendDay

PRICES = {"veo3.1": 250_000, "veo3-fast-frames": 150_000}  # 0.25 and 0.15


def service(engine: Engine | None, **values: str) -> BatchService:
    return BatchService(engine, Settings.from_values({"prices": "veo3.1=0.25", **values}))


def add(engine: Engine, prompts: list[str], batch: str = "b", **options: Any) -> int:
    jobs = [
        {"id": f"r{n}", "prompt": p, "model": "veo3.1", "images": ["https://x.io/a.jpg"]}
        for n, p in enumerate(prompts)
    ]
    service(engine).add(batch, jobs, **options)
    with engine.connect() as conn:
        return int(conn.execute(sa.select(Batch.id).where(Batch.name == batch)).scalar_one())


def money_of(engine: Engine, batch: str = "b") -> tuple[int, int, int]:
    """The batch's (committed, sum of row costs, sum of holds)."""
    with engine.connect() as conn:
        committed = conn.execute(
            sa.select(Batch.committed_micros).where(Batch.name == batch)
        ).scalar_one()
        bid = conn.execute(sa.select(Batch.id).where(Batch.name == batch)).scalar_one()
        cost, held = conn.execute(
            sa.select(sa.func.sum(Job.cost_micros), sa.func.sum(Job.held_micros)).where(
                Job.batch_id == bid
            )
        ).one()
    return int(committed), int(cost or 0), int(held or 0)


# ------------------------------------------------------------------------------- pure parts


def test_amounts_are_exact_and_refused_when_they_are_not_amounts() -> None:
    assert amount("0.15") * 3 == amount("0.45") == 450_000
    assert amount(120) == 120_000_000
    assert money(450_000, "USD") == "USD 0.45"
    assert money(15_000, "EUR") == "EUR 0.015"
    assert money(None, "USD") == "unpriced"
    assert decimal_text(2_500_000) == "2.5"
    for bad in ("-1", "abc", "1e400", "0.0000001", "nan", True):
        with pytest.raises(ValueError, match=r"amount|decimals"):
            amount(bad)


def test_prices_come_inline_or_from_a_toml_or_yaml_file(tmp_path: Path) -> None:
    assert parse_prices("veo3.1=0.25, veo3-fast-frames=0.15") == PRICES
    toml = tmp_path / "prices.toml"
    toml.write_text('[prices]\n"veo3.1" = 0.25\nveo3-fast-frames = "0.15"\n')
    assert parse_prices(str(toml)) == PRICES
    yaml_file = tmp_path / "prices.yaml"
    yaml_file.write_text("veo3.1: 0.25\nveo3-fast-frames: 0.15\n")
    assert parse_prices(str(yaml_file)) == PRICES
    with pytest.raises(ConfigError, match=re.escape("VEO_PRICES: 'veo3.1' is not MODEL=PRICE")):
        parse_prices("veo3.1")
    with pytest.raises(ConfigError, match=re.escape("VEO_PRICES: veo3.1: 'cheap' is not an")):
        parse_prices("veo3.1=cheap")
    with pytest.raises(ConfigError, match="cannot be read"):
        parse_prices(str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match="VEO_DAILY_BUDGET: '-5' is not an amount"):
        Settings.from_values({"daily_budget": "-5"})


def test_an_estimate_counts_the_polls_the_pacing_makes() -> None:
    pacing = Pacing(delay=10, shortest=5, longest=30, deadline=1800)
    assert 2 <= expected_polls(pacing) <= 6
    assert expected_polls(pacing, seconds=5) == 1  # done before the first poll


# ------------------------------------------------------------------------------- estimates


def test_the_dry_run_total_is_the_sum_of_the_rows_prices(tmp_path: Path) -> None:
    jobs = tmp_path / "jobs.csv"
    models = ["veo3.1"] * 7 + ["veo3-fast-frames"] * 3 + ["veo2-fast-frames"] * 2
    jobs.write_text(
        "prompt,model,images\n"
        + "".join(f"p{n},{model},https://x.io/a.jpg\n" for n, model in enumerate(models))
    )
    veo = BatchService(None, Settings(prices=PRICES))
    with open_job_file(str(jobs)) as job_file:
        result = veo.load(job_file, "b", dry_run=True)
    estimate = veo.estimate_rows(result.models)
    assert estimate.priced_total == sum(PRICES.get(m, 0) for m in models) == 2_200_000
    assert estimate.total is None  # veo2-fast-frames is unpriced, not free
    assert estimate.unpriced == ["veo2-fast-frames"]
    assert estimate.requests == 12 * (1 + estimate.polls_per_task)


def test_an_unpriced_model_with_a_budget_is_refused_at_load(engine: Engine, tmp_path: Path) -> None:
    jobs = tmp_path / "jobs.csv"
    jobs.write_text(
        "prompt,model,images\na,veo3.1,https://x.io/a.jpg\nb,veo3-pro-frames,https://x.io/b.jpg\n"
    )
    with open_job_file(str(jobs)) as job_file:
        result = service(engine).load(job_file, "b", budget="10")
    assert result.rejected
    assert result.report.lines() == [
        f"{jobs}:3: model: veo3-pro-frames has no price in VEO_PRICES, and a budget (or "
        "VEO_DAILY_BUDGET) cannot count a row it cannot price: add veo3-pro-frames=PRICE to "
        "VEO_PRICES"
    ]
    with open_job_file(str(jobs)) as job_file:  # without a budget: stored, shown unpriced
        assert not service(engine).load(job_file, "b").rejected
    with pytest.raises(VeoBatchError, match="veo3-pro-frames has no price"):
        service(engine).set_budget("b", "10")


# ------------------------------------------------------------------------------- budgets


def test_a_budget_that_fits_n_rows_makes_n_tasks_then_pauses_then_goes_on(
    engine: Engine, mock: MockProvider
) -> None:
    hook = "https://hooks.example.com/veo"
    batch = add(engine, [f"row {n}" for n in range(12)], budget="1.75", webhook_url=hook)
    spending = Spending(PRICES)
    progress = run_embedded(engine, mock, batch, spending=spending, wait_for_videos=False)
    assert mock.stats()["created"] == 7
    summary = service(engine).status("b")
    assert summary.state == "paused"
    assert summary.pause_reason == (
        "budget: the next row (USD 0.25) does not fit: USD 1.75 of the budget of USD 1.75 is "
        "spent or being spent; raise it with `veo-batch budget b AMOUNT`, then resume"
    )
    assert (summary.spent, summary.held, summary.left) == (1_750_000, 0, 0)
    assert progress.counts == {"submitted": 7, "pending": 5}
    assert money_of(engine) == (1_750_000, 1_750_000, 0)
    with engine.connect() as conn:  # the webhook is told, with the figures
        [told] = conn.execute(sa.select(Delivery.payload)).scalars()
    told_body = json.loads(told)
    assert (told_body["event"], told_body["committed"], told_body["budget"]) == (
        "batch.paused",
        "1.75",
        "1.75",
    )
    assert told_body["pause_reason"] == summary.pause_reason

    service(engine).set_budget("b", "3")
    service(engine).resume("b")
    run_embedded(engine, mock, batch, spending=spending)
    assert mock.stats()["created"] == 12
    assert service(engine).status("b").state == "finished"
    assert money_of(engine) == (3_000_000, 3_000_000, 0)
    assert service(engine).estimate("b").rows == 0


def test_rows_in_doubt_count_as_spent_and_refused_requests_do_not(
    engine: Engine, mock: MockProvider
) -> None:
    prompts = ["[mock:drop-after] lost answer", "[mock:status=400] refused", "fine"]
    batch = add(engine, prompts, budget="10")
    run_embedded(engine, mock, batch, spending=Spending(PRICES))
    with engine.connect() as conn:
        rows = {r.prompt: r for r in conn.execute(sa.select(Job))}
    assert rows["[mock:drop-after] lost answer"].status == "in_doubt"
    assert rows["[mock:drop-after] lost answer"].cost_micros == 250_000  # it may be billed
    assert rows["[mock:status=400] refused"].cost_micros == 0  # no task was made
    assert rows["fine"].cost_micros == 250_000
    assert money_of(engine) == (500_000, 500_000, 0)


def test_retried_errors_give_the_held_price_back_each_time(
    engine: Engine, mock: MockProvider
) -> None:
    batch = add(engine, ["[mock:status=502] flaky"], budget="0.25")  # room for one claim
    run_embedded(engine, mock, batch, spending=Spending(PRICES), max_attempts=3)
    with engine.connect() as conn:
        job = conn.execute(sa.select(Job)).one()
    assert (job.status, job.attempts) == ("failed", 3)  # three claims fit, one at a time
    assert money_of(engine) == (0, 0, 0)


def test_a_lease_that_runs_out_keeps_the_held_price_as_spent(engine: Engine) -> None:
    add(engine, ["a"], budget="1")
    with engine.begin() as conn:
        transitions.release(conn, transitions.utcnow(), 10)
        job_id = conn.execute(sa.select(Job.id)).scalar_one()
        claimed = transitions.claim(conn, job_id, transitions.utcnow(), -timedelta(seconds=1))
        assert claimed is not None
        assert spending.reserve(conn, claimed, transitions.utcnow(), Spending(PRICES)) is None
    assert money_of(engine) == (250_000, 0, 250_000)  # held while the request is out
    with engine.begin() as conn:
        assert transitions.expire_leases(conn, transitions.utcnow()) == 1
    assert money_of(engine) == (250_000, 250_000, 0)  # in doubt: counted as spent


def test_a_daily_cap_holds_across_two_batches(engine: Engine, mock: MockProvider) -> None:
    first = add(engine, [f"a{n}" for n in range(4)], batch="first")
    second = add(engine, [f"b{n}" for n in range(4)], batch="second")
    capped = Spending(PRICES, daily_cap=1_500_000)  # six rows at 0.25
    run_embedded(engine, mock, first, spending=capped, wait_for_videos=False)
    run_embedded(engine, mock, second, spending=capped, wait_for_videos=False)
    assert mock.stats()["created"] == 6
    veo = service(engine, daily_budget="1.5")
    assert veo.status("first").state != "paused"
    paused = veo.status("second")
    assert paused.state == "paused"
    assert (paused.pause_reason or "").startswith(
        "daily budget: the next row (USD 0.25) does not fit: USD 1.50 of "
        "VEO_DAILY_BUDGET=USD 1.50 is spent or being spent on"
    )
    with engine.connect() as conn:
        assert conn.execute(sa.select(SpendDay.committed_micros)).scalar_one() == 1_500_000
    assert money_of(engine, "first")[0] + money_of(engine, "second")[0] == 1_500_000


def test_an_unpriced_model_with_a_daily_cap_pauses_before_anything_is_sent(
    engine: Engine, mock: MockProvider
) -> None:
    batch = add(engine, ["a"])
    run_embedded(engine, mock, batch, spending=Spending({}, daily_cap=1_000_000))
    assert mock.stats()["created"] == 0
    reason = service(engine).status("b").pause_reason or ""
    assert reason.startswith("veo3.1 has no price in VEO_PRICES")


def test_a_reruns_dry_run_says_what_it_adds(engine: Engine, mock: MockProvider) -> None:
    batch = add(engine, ["[mock:fail] a", "[mock:fail] b", "fine"])
    run_embedded(engine, mock, batch, spending=Spending(PRICES))
    look = service(engine).rerun("b", ["failed"], dry_run=True)
    assert (look.matched, look.adds, look.unpriced) == (2, 500_000, [])
    assert money_of(engine)[1] == 750_000  # the failed tasks were paid for too


# ------------------------------------------------------------------------------- prompts


def test_a_prompt_not_in_latin_script_is_a_warning_or_with_strict_an_error(
    tmp_path: Path,
) -> None:
    jobs = tmp_path / "jobs.csv"
    jobs.write_text(
        "prompt,model,images,enhance_prompt\n"
        "清晨的茶园，薄雾缓缓散开,veo3.1,https://x.io/a.jpg,\n"
        "清晨的茶园,veo3.1,https://x.io/a.jpg,true\n"
        "Кошка прыгает в снег,veo3.1,https://x.io/a.jpg,false\n"
        "Crème brûlée on a table,veo3.1,https://x.io/a.jpg,\n"
    )
    veo = BatchService(None, Settings())
    with open_job_file(str(jobs)) as job_file:
        result = veo.load(job_file, "b", dry_run=True)
    assert not result.rejected
    assert [w.split(": ", 3)[1:3] for w in result.report.warning_lines()] == [
        [f"{jobs}:2", "prompt"],
        [f"{jobs}:4", "prompt"],
    ]
    assert "mostly in Chinese script" in result.report.warning_lines()[0]
    assert "mostly in Cyrillic script" in result.report.warning_lines()[1]
    with open_job_file(str(jobs)) as job_file:
        strict = veo.load(job_file, "b", dry_run=True, strict=True)
    assert strict.rejected
    assert [p.line for p in strict.report.problems] == [2, 4]


# ------------------------------------------------------------------------------- the CLI


def test_the_cli_shows_cost_before_and_spend_after(
    sqlite_run: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VEO_PRICES", "veo3.1=0.25")
    jobs = tmp_path / "shop.csv"
    jobs.write_text(
        "prompt,model,images\n" + "".join(f"p{n},veo3.1,https://x.io/a.jpg\n" for n in range(6))
    )
    dry = sqlite_run("run", str(jobs), "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "veo3.1  6     USD 0.25  USD 1.50" in dry.stdout
    assert "total: USD 1.50 for 6 rows" in dry.stdout
    assert "no batches yet" in sqlite_run("status").stdout  # nothing stored

    paused = sqlite_run("run", str(jobs), "--mock", "--no-wait", "--budget", "1")
    assert paused.exit_code == 9
    assert "spent USD 1.00; budget USD 1.00, left USD 0.00" in paused.stdout
    assert "left USD 0.00" in sqlite_run("status", "shop").stdout
    estimate = sqlite_run("estimate", "shop")
    assert "veo3.1  2     USD 0.25  USD 0.50" in estimate.stdout
    raised = sqlite_run("budget", "shop", "2")
    assert raised.exit_code == 0, raised.output
    assert "left USD 1.00" in raised.stdout
    assert sqlite_run("resume", "shop").exit_code == 0
    done = sqlite_run("run", "--batch", "shop", "--mock", "--no-wait")
    assert done.exit_code == 0, done.output
    assert "spent USD 1.50; budget USD 2.00, left USD 0.50" in done.stdout
    again = sqlite_run("rerun", "shop", "--status", "submitted", "--dry-run")
    assert "6 rows match; sending them again adds USD 1.50; nothing changed" in again.stdout
    bad = sqlite_run("budget", "shop", "lots")
    assert bad.exit_code == 2
    assert "'lots' is not an amount such as 0.25 or 120; or `none` for no cap" in bad.output


def test_the_python_api_takes_a_budget_and_estimates(database_url: str) -> None:
    settings = Settings.from_values({"database_url": database_url, "prices": "veo3.1=0.25"})
    with Client(settings=settings) as client:
        job = {"prompt": "p", "model": "veo3.1", "images": ["https://x.io/a.jpg"]}
        client.add("py", [job, {**job, "prompt": "q"}], budget="0.30")
        assert client.status("py").budget == 300_000
        found = client.estimate("py")
        assert (found.rows, found.total, found.left) == (2, 500_000, 300_000)
        assert client.set_budget("py", None).budget is None


def test_a_row_whose_model_has_no_price_shows_no_cost_not_zero(
    engine: Engine, mock: MockProvider
) -> None:
    """Unpriced is never free: such a row's cost is empty in the export and null in its view,
    while a priced row shows what it counted."""
    veo = service(engine)  # veo3.1 costs 0.25; veo2-fast-frames has no price
    jobs = [
        {"id": "priced", "prompt": "a", "model": "veo3.1", "images": [URL]},
        {"id": "free?", "prompt": "b", "model": "veo2-fast-frames", "images": [URL]},
    ]
    veo.add("b", jobs)
    run_embedded(engine, mock, veo.status("b").id, spending=Spending({"veo3.1": 250_000}))
    assert (veo.job("b", "priced")["cost"], veo.job("b", "free?")["cost"]) == ("0.25", None)
    exported = csv.DictReader(io.StringIO("".join(veo.export("b", "csv"))))
    costs = {row["id"]: row["cost"] for row in exported}
    assert costs == {"priced": "0.25", "free?": ""}
