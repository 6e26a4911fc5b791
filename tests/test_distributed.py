"""The distributed mode for real: Celery worker processes on Redis, PostgreSQL, the scheduler,
and the mock provider over HTTP. Each test drives a batch until it is done (or polls a
condition with a deadline); none sleeps to "wait enough"."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from collections import Counter
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import redis
import sqlalchemy as sa
from click.testing import CliRunner

from tests import helpers
from tests.conftest import REDIS_URL
from tests.helpers import URL, job, veo_batch_server, wait_until
from tests.stack import KEY, Stack
from veobatch.accounts.routing import BREAKER
from veobatch.catalog import DEFAULT_MODELS
from veobatch.cli import cli
from veobatch.concurrency import REQUESTS_AT_ONCE
from veobatch.errors import ExitCode
from veobatch.intake.loader import load_rows
from veobatch.intake.readers import open_job_file
from veobatch.provider.mock import MockConfig, MockProvider
from veobatch.service import BatchService
from veobatch.settings import Settings
from veobatch.store.tables import Attempt, Batch, Job, RelayAccount
from veobatch.worker.app import make_app


def test_two_worker_processes_send_every_row_exactly_once(stack: Stack) -> None:
    stack.load([f"row {n}" for n in range(80)])
    stack.start_worker()
    stack.start_worker()
    stack.start_scheduler()
    wait_until(lambda: stack.batch_state() == "finished", what="the batch to finish")
    stats = stack.mock.stats()
    assert stats["created"] == 80
    assert set(stats["created_by_prompt"].values()) == {1}
    assert set(stack.statuses().values()) == {"succeeded"}


@pytest.mark.timing  # what it counts depends on timing: run alone (see the Makefile)
def test_the_rate_holds_across_worker_processes(stack: Stack) -> None:
    # A limit measured to the millisecond needs a mock with a clock of its own: inside the test
    # process, a pause of its threads (its garbage collector after hundreds of tests) would
    # bunch up arrivals that the workers had spaced out.
    mock_api = ["mock-api", "--key", KEY, "--limit", "10", "--window", "1"]
    with veo_batch_server(mock_api, "/_mock/stats") as mock:
        stack.load([f"row {n}" for n in range(30)])
        stack.start_worker(VEO_RATE="9/s", VEO_API_BASE=mock)
        stack.start_worker(VEO_RATE="9/s", VEO_API_BASE=mock)
        stack.start_scheduler()
        wait_until(lambda: stack.batch_state() == "finished", what="the batch to finish")
        stats = httpx.get(f"{mock}/_mock/stats", timeout=10).json()
    assert (stats["rejected_429"], stats["created"]) == (0, 30)
    assert stats["busiest_window"] <= 10


def test_a_worker_killed_mid_group_leaves_what_it_sent_in_doubt_and_sends_the_rest(
    stack: Stack,
) -> None:
    """One message of two waves (a worker process sends REQUESTS_AT_ONCE rows at a time): the
    worker dies while its first wave waits for a slow answer. That wave's rows were sent
    (their tasks exist, their answers are lost): `in_doubt`, never sent again. The second
    wave was never claimed: back to pending once its hold runs out, and another worker
    sends it."""
    slow = "[mock:slow=30] slow"
    wave = REQUESTS_AT_ONCE
    group = min(2 * wave, 20)  # (the test scheduler keeps 20 rows queued: a group fits in it)
    quick = [f"quick {n}" for n in range(group - 1)]
    stack.load([slow, *quick])
    worker = stack.start_worker(concurrency=1, VEO_LEASE="2")
    stack.start_scheduler(submit_group=group)
    created = stack.mock.state.created_by_prompt
    first_wave, second_wave = [slow, *quick[: wave - 1]], quick[wave - 1 :]
    wait_until(lambda: all(created[p] for p in first_wave), what="the first wave to arrive")
    os.killpg(worker.pid, signal.SIGKILL)  # the tasks exist; the slow answer never comes
    worker.wait()
    stack.start_worker(concurrency=1, VEO_LEASE="2")
    wait_until(lambda: stack.batch_state() == "finished", what="the batch to finish")
    statuses = stack.statuses()
    assert {statuses[p] for p in first_wave} == {"in_doubt"}
    assert {statuses[p] for p in second_wave} == {"succeeded"}
    assert all(created[p] == 1 for p in first_wave + second_wave)  # none ever sent twice


def test_a_flushed_redis_loses_no_row(stack: Stack, redis_client: redis.Redis) -> None:
    stack.load([f"[mock:slow=0.1] row {n}" for n in range(30)])
    stack.start_worker(concurrency=1)
    # Lost poll messages are found by their claim running out (two minutes by default).
    stack.start_scheduler(grace=0.5, poll_claim=timedelta(seconds=2))
    wait_until(lambda: stack.mock.stats()["created"] >= 5, what="five rows sent")
    redis_client.flushdb()  # every queued message is gone, submissions and polls
    wait_until(lambda: stack.batch_state() == "finished", what="the batch to finish")
    assert set(stack.statuses().values()) == {"succeeded"}
    assert set(stack.mock.stats()["created_by_prompt"].values()) == {1}


def test_a_wrong_key_pauses_the_batch_after_the_requests_in_flight(stack: Stack) -> None:
    stack.load([f"row {n}" for n in range(200)])
    stack.start_worker(VEO_API_KEY="wrong")
    stack.start_worker(VEO_API_KEY="wrong")
    stack.start_scheduler()
    wait_until(lambda: stack.batch_state() == "paused", what="the batch to pause")
    wait_until(
        lambda: "submitting" not in stack.statuses().values(), what="requests in flight to end"
    )
    # Two workers, two processes each, each with a wave of its group in flight at most.
    assert stack.mock.stats()["requests"] <= 2 * 2 * REQUESTS_AT_ONCE
    assert set(stack.statuses().values()) <= {"pending", "queued"}


def test_run_hands_the_rows_to_the_workers_and_reports(stack: Stack, tmp_path: Path) -> None:
    path = tmp_path / "jobs.jsonl"
    path.write_text(
        "".join(f'{{"prompt": "p{n}", "model": "veo3.1", "images": ["{URL}"]}}\n' for n in range(8))
        + f'{{"prompt": "[mock:status=400] bad", "model": "veo3.1", "images": ["{URL}"]}}\n',
        encoding="utf-8",
    )
    stack.start_worker()
    stack.start_scheduler()
    result = CliRunner().invoke(
        cli,
        ["run", str(path), "-o", str(tmp_path / "out.csv")],
        env=stack.env(),
        catch_exceptions=False,
    )
    assert result.exit_code == ExitCode.ROWS_FAILED, result.output
    assert "the rows go to the workers" in result.stderr
    assert "succeeded  8" in result.stdout
    assert "failed     1" in result.stdout
    assert stack.mock.stats()["created"] == 8


@pytest.mark.timing  # what it counts depends on timing: run alone (see the Makefile)
def test_the_in_flight_cap_holds_across_worker_processes(stack: Stack) -> None:
    stack.mock.state.config.task_seconds = 1.0
    stack.mock.state.config.failure_rate = 0.5
    stack.load([f"row {n}" for n in range(24)])
    stack.start_worker()
    stack.start_worker()
    stack.start_scheduler(max_in_flight=4)
    wait_until(lambda: stack.batch_state() == "finished", timeout=90, what="the batch to finish")
    stats = stack.mock.stats()
    assert stats["created"] == 24
    assert 2 <= stats["peak_running"] <= 4  # generating at once, as the provider counts them
    rows = stack.rows()
    assert {r.status for r in rows} == {"succeeded", "failed"}
    for row in rows:  # every row ends with its video or the provider's reason
        if row.status == "succeeded":
            assert row.video_url
            assert row.remote_status == "SUCCESS"
        else:
            assert (row.error_kind, row.remote_status) == ("remote", "FAILURE")
            assert row.error == "视频生成失败：上游服务异常"


def test_workers_download_every_video_and_resume_a_cut_one(stack: Stack, tmp_path: Path) -> None:
    stack.load(["[mock:cut-video] cut", "whole"])
    stack.start_worker(VEO_DOWNLOAD_DIR=str(tmp_path))
    stack.start_scheduler(downloads=True)
    wait_until(lambda: all(r.video_sha256 for r in stack.rows()), timeout=90, what="both videos")
    size = stack.mock.state.config.video_bytes
    for row in stack.rows():
        video = Path(row.video_path)
        assert video.parent == tmp_path / "b"
        assert (video.stat().st_size, row.video_bytes) == (size, size)
        assert hashlib.sha256(video.read_bytes()).hexdigest() == row.video_sha256
        assert row.status == "succeeded"
    cut = next(r for r in stack.rows() if r.prompt.startswith("[mock:cut-video]"))
    assert cut.downloads == 2
    assert cut.download_error is None
    # The second try asked only for the missing half: each video was sent exactly once.
    assert stack.mock.stats()["video_bytes_sent"] == 2 * size


def test_a_small_batch_is_not_stuck_behind_a_big_one(stack: Stack) -> None:
    stack.load([f"big {n}" for n in range(60)], batch="big")
    stack.load([f"small {n}" for n in range(5)], batch="small")
    # One worker process: it sends the groups one after another, in the order they were
    # released, so the answers' order is the release order. (Two processes' groups race: on
    # a busy machine a third group's answers came before the second's last.)
    stack.start_worker(1, VEO_RATE="20/s")
    stack.start_scheduler()
    wait_until(lambda: stack.batch_state() == "finished", timeout=90, what="both batches")
    with stack.engine.connect() as conn:
        order = (
            conn.execute(
                sa.select(Job.prompt)
                .join(Attempt, Attempt.job_id == Job.id)
                .where(Attempt.action == "submit")
                .order_by(Attempt.at, Attempt.id)
            )
            .scalars()
            .all()
        )
    assert len(order) == 65
    last_small = max(n for n, prompt in enumerate(order) if prompt.startswith("small"))
    # The scheduler's rounds share each release between the batches: the five small rows are
    # among the first ten released, so in the first two groups of 8 (whichever goes first).
    assert last_small < 2 * 8, order


def test_any_celery_client_can_queue_jobs_and_a_resend_adds_nothing(stack: Stack) -> None:
    stack.start_worker()
    stack.start_scheduler()
    # A separate process that has Celery and nothing of ours (checked at the end).
    script = f"""
import json, sys
from celery import Celery
app = Celery(broker={REDIS_URL!r}, backend={REDIS_URL!r})
jobs = [{{"external_id": "sku-1", "prompt": "a fox", "model": "veo3.1", "images": ["{URL}"]}},
        {{"external_id": "sku-2", "prompt": "a cat", "model": "veo3.1", "images": ["{URL}"]}}]
first = app.send_task("veobatch.enqueue", args=["from-celery", jobs]).get(timeout=60)
again = app.send_task("veobatch.enqueue", args=["from-celery", jobs]).get(timeout=60)
bad = app.send_task("veobatch.enqueue", args=["from-celery", [{{"prompt": "x", "model": "veo4",
                    "images": ["{URL}"]}}]]).get(timeout=60)
assert not [name for name in sys.modules if name.split(".")[0] in ("veobatch", "worker")]
print(json.dumps([first, again, bad]))
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    first, again, bad = json.loads(done.stdout)
    assert (first["ok"], first["created"], first["added"]) == (True, True, 2)
    assert first["refs"] == ["sku-1", "sku-2"]
    assert (again["ok"], again["added"], again["already_there"]) == (True, 0, 2)
    assert bad["ok"] is False
    assert bad["problems"][0]["index"] == 0
    assert bad["problems"][0]["field"] == "model"
    wait_until(lambda: stack.batch_state() == "finished", what="the batch to finish")
    assert sorted(stack.statuses().values()) == ["succeeded", "succeeded"]
    assert stack.mock.stats()["created"] == 2


def test_a_worker_without_the_provider_key_still_stores_jobs(stack: Stack) -> None:
    stack.start_worker(concurrency=1, VEO_API_KEY="", VEO_API_BASE="")  # blank: not set
    app = make_app(Settings.from_values({"redis_url": REDIS_URL}))
    answer = app.send_task("veobatch.enqueue", args=["keyless", [job("a")]]).get(timeout=60)
    assert (answer["ok"], answer["added"]) == (True, 1)
    assert stack.statuses() == {"a fox": "pending"}


def publish_raw(body: object, task: str, task_id: str, **route: str) -> None:
    """A message put on the broker by hand, as a careless or hostile client would."""
    app = make_app(Settings.from_values({"redis_url": REDIS_URL}))
    with app.connection_for_write() as conn:
        conn.Producer(serializer="json").publish(
            body,
            headers={"task": task, "id": task_id, "lang": "py"},
            exchange=route.get("exchange", "celery"),
            routing_key=route.get("routing_key", "celery"),
            declare=[],
        )


def test_no_message_stops_the_worker_and_other_batches_go_on(stack: Stack) -> None:
    worker = stack.start_worker(concurrency=1)
    stack.start_scheduler()
    app = make_app(Settings.from_values({"redis_url": REDIS_URL}))
    deep: dict[str, object] = {}
    for _ in range(500):
        deep = {"x": deep}
    hostile = [job("a", extra_field=deep)]
    answer = app.send_task("veobatch.enqueue", args=["deep", hostile]).get(timeout=60)
    assert answer["ok"] is False
    assert "nested more than" in answer["error"]
    publish_raw({"a": 1}, "veobatch.submit", "raw-1")  # not a task message at all
    publish_raw([["not an id"], {}, {}], "veobatch.submit", "raw-2")
    publish_raw([[[1, "x"]], {}, {}], "veobatch.poll", "raw-3")
    publish_raw([["b", "not a list"], {}, {}], "veobatch.enqueue", "raw-4")
    publish_raw([[1], {}, {}], "veobatch.no-such-task", "raw-5")
    too_deep = app.send_task("veobatch.enqueue", args=["deep", [job("b", extra_field={"a": {}})]])
    assert too_deep.get(timeout=60)["ok"] is True  # a shallow extra is fine
    stack.load([f"row {n}" for n in range(6)], batch="others")
    wait_until(lambda: stack.batch_state() == "finished", what="every batch to finish")
    assert worker.poll() is None  # the same worker process served them all
    assert stack.mock.stats()["created"] == 7
    assert stack.statuses()["a fox"] == "succeeded"


def test_a_budget_holds_to_the_cent_with_four_workers_in_two_processes(stack: Stack) -> None:
    """40 rows at 0.25 and a budget of 2.50: exactly ten tasks, however the four racing
    workers interleave; the batch pauses with reason budget, and a raised budget finishes it."""
    prompts = [f"[mock:slow=0.2] row {n}" for n in range(40)]
    rows = [helpers.row(n, f"r{n}", prompt=p) for n, p in enumerate(prompts, 2)]
    load_rows(stack.engine, rows, batch="b", source="t", models=DEFAULT_MODELS, budget=2_500_000)
    stack.start_worker(VEO_PRICES="veo3.1=0.25")
    stack.start_worker(VEO_PRICES="veo3.1=0.25")
    stack.start_scheduler()
    wait_until(lambda: stack.batch_state() == "paused", what="the batch to pause")
    wait_until(
        lambda: "submitting" not in stack.statuses().values(), what="requests in flight to end"
    )
    assert stack.mock.stats()["created"] == 10
    service = BatchService(stack.engine, Settings.from_values({"prices": "veo3.1=0.25"}))
    summary = service.status("b")
    assert (summary.spent, summary.held, summary.budget) == (2_500_000, 0, 2_500_000)
    assert (summary.pause_reason or "").startswith("budget: the next row (USD 0.25) does not fit")
    with stack.engine.connect() as conn:
        committed = conn.execute(sa.select(Batch.committed_micros)).scalar_one()
    assert committed == 2_500_000

    service.set_budget("b", "10")
    service.resume("b")
    wait_until(lambda: stack.batch_state() == "finished", what="the batch to finish")
    assert stack.mock.stats()["created"] == 40
    assert set(stack.mock.stats()["created_by_prompt"].values()) == {1}
    assert service.status("b").spent == 10_000_000


def test_a_killed_workers_row_counts_against_the_budget(stack: Stack) -> None:
    """Budget for two rows; the first row's worker dies mid-request (its task exists): that
    row is in doubt and counted, so only one more row is sent and the batch pauses."""
    prompts = ["[mock:slow=30] slow", "quick one", "quick two"]
    rows = [helpers.row(n, f"r{n}", prompt=p) for n, p in enumerate(prompts, 2)]
    load_rows(stack.engine, rows, batch="b", source="t", models=DEFAULT_MODELS, budget=500_000)
    worker = stack.start_worker(concurrency=1, VEO_LEASE="2", VEO_PRICES="veo3.1=0.25")
    stack.start_scheduler()
    created = stack.mock.state.created_by_prompt
    wait_until(  # both of the wave's requests (sent at once, in either order) have arrived
        lambda: created["[mock:slow=30] slow"] == 1 and sum(created.values()) == 2,
        what="the wave's two requests to arrive",
    )
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait()
    stack.start_worker(concurrency=1, VEO_LEASE="2", VEO_PRICES="veo3.1=0.25")
    wait_until(lambda: stack.batch_state() == "paused", what="the batch to pause")
    wait_until(
        lambda: stack.statuses()["[mock:slow=30] slow"] == "in_doubt", what="the lease to expire"
    )
    statuses = stack.statuses()
    assert stack.mock.stats()["created"] == 2
    unsent = [p for p in prompts[1:] if statuses[p] in ("pending", "queued")]
    assert len(unsent) == 1  # one quick row was sent; the other did not fit
    summary = BatchService(stack.engine, Settings()).status("b")
    assert (summary.spent, summary.held) == (500_000, 0)
    assert (summary.pause_reason or "").startswith("budget:")


def test_three_accounts_one_empty_one_down_one_healthy_send_every_row_once(
    stack: Stack, tmp_path: Path
) -> None:
    empty = MockProvider(MockConfig(api_key="key-empty", balance=20))
    down = MockProvider(MockConfig(api_key="key-down", down=503))
    accounts = tmp_path / "accounts.toml"
    accounts.write_text(
        f'[accounts.empty]\nbase = "{empty.url}"\nkey_env = "EMPTY_KEY"\n'
        f'[accounts.down]\nbase = "{down.url}"\nkey_env = "DOWN_KEY"\n'
        f'[accounts.ok]\nbase = "{stack.mock.url}"\nkey_env = "OK_KEY"\n'
    )
    keys = {"EMPTY_KEY": "key-empty", "DOWN_KEY": "key-down", "OK_KEY": KEY}
    prompts = [f"row {n}" for n in range(100)]
    with empty, down:
        stack.load(prompts)
        for _ in range(2):
            stack.start_worker(
                VEO_ACCOUNTS=str(accounts),
                EMPTY_KEY=keys["EMPTY_KEY"],
                DOWN_KEY=keys["DOWN_KEY"],
                OK_KEY=keys["OK_KEY"],
            )
        stack.start_scheduler()
        wait_until(lambda: stack.batch_state() == "finished", what="the batch to finish")
        stats = [relay.stats() for relay in (empty, down, stack.mock)]
    made: Counter[str] = Counter()
    for each in stats:
        made.update(each["created_by_prompt"])
    assert made == Counter(dict.fromkeys(prompts, 1))  # none twice, across the relays
    assert set(stack.statuses().values()) == {"succeeded"}
    assert stats[0]["created"] == 20
    # The empty one is asked at most a wave per worker process past its balance.
    assert stats[0]["requests"] - stats[0]["created"] - stats[0]["polls"] <= 2 * 2 * 16
    assert [each["recalled"] for each in stats] == [0, 0, 0]  # each poll to its task's relay
    with stack.engine.connect() as conn:
        states = {row.name: row for row in conn.execute(sa.select(RelayAccount))}
        by_account = Counter(conn.execute(sa.select(Job.account)).scalars())
    assert by_account == Counter({"empty": 20, "ok": 80})
    assert states["empty"].state == "paused"
    assert states["down"].strikes >= BREAKER


def test_a_batch_of_local_photos_split_between_a_relay_and_google_each_row_on_one(
    stack: Stack, tmp_path: Path
) -> None:
    from PIL import Image  # noqa: PLC0415 - only here

    for name, color in (("a.png", (200, 20, 20)), ("b.jpg", (20, 20, 200))):
        Image.new("RGB", (160, 90), color).save(tmp_path / name)
    first = hashlib.sha256((tmp_path / "a.png").read_bytes()).hexdigest()
    last = hashlib.sha256((tmp_path / "b.jpg").read_bytes()).hexdigest()
    jobs = tmp_path / "jobs.csv"
    jobs.write_text(
        "prompt,model,images\n"
        + "".join(f"row {n},veo3.1,a.png|b.jpg\n" for n in range(40))
        + "blocked [mock:filtered],veo3.1,a.png\n"
        + "first only,veo3.1-components,a.png\n"
        + "three refs,veo3.1-components,b.jpg|a.png|b.jpg\n",
        encoding="utf-8",
    )
    google = MockProvider(MockConfig(api_key="google-key", task_seconds=0.2))
    accounts = tmp_path / "accounts.toml"
    accounts.write_text(
        f'[accounts.google]\ndialect = "gemini"\nbase = "{google.url}"\nkey_env = "G_KEY"\n'
        'models = { "veo3.1" = "veo-3.1-generate-preview", '
        '"veo3.1-components" = "veo-3.1-generate-preview" }\nmax_in_flight = 4\n'
        f'[accounts.relay]\nbase = "{stack.mock.url}"\nkey_env = "R_KEY"\nmax_in_flight = 4\n'
        'models = ["veo3.1"]\n'  # (components go to Google only)
    )
    keys = {"G_KEY": "google-key", "R_KEY": KEY}
    with google:
        settings = Settings(accounts=str(accounts))
        with pytest.MonkeyPatch.context() as patch:
            for name, value in keys.items():
                patch.setenv(name, value)
            with open_job_file(str(jobs)) as job_file:
                loaded = BatchService(stack.engine, settings).load(job_file, "b")
        assert not loaded.rejected, loaded.report.problems
        videos = tmp_path / "videos"
        for _ in range(2):
            stack.start_worker(
                VEO_ACCOUNTS=str(accounts),
                G_KEY=keys["G_KEY"],
                R_KEY=KEY,
                VEO_DOWNLOAD_DIR=str(videos),
            )
        stack.start_scheduler(downloads=True)
        wait_until(lambda: stack.batch_state() == "finished", what="the batch to finish")
        wait_until(
            lambda: all(row.video_path for row in stack.rows() if row.status == "succeeded"),
            what="every video on disk",
        )
        stats = [google.stats(), stack.mock.stats()]
    rows = stack.rows()
    by_account = Counter(row.account for row in rows)
    assert set(by_account) == {"google", "relay"}  # both took rows
    assert sum(by_account.values()) == 43
    made: Counter[str] = Counter()
    for each in stats:
        made.update(each["created_by_prompt"])
    assert made == Counter({row.prompt: 1 for row in rows})  # each row once, on one account
    assert stats[0]["created"] == by_account["google"]
    sent = stats[0]["gemini_images_by_prompt"]
    for row in rows:
        if row.account == "google" and row.prompt.startswith("row"):
            assert sent[row.prompt] == {"image": first, "lastFrame": last, "referenceImages": []}
    assert sent["first only"] == {"image": None, "lastFrame": None, "referenceImages": [first]}
    assert sent["three refs"]["referenceImages"] == [last, first, last]
    blocked = next(row for row in rows if row.prompt.startswith("blocked"))
    assert (blocked.status, blocked.error_kind) == ("failed", "filtered")
    assert {row.status for row in rows if row is not blocked} == {"succeeded"}
    assert [each["recalled"] for each in stats] == [0, 0]
    # Google's videos came from its own origin, with its key; each one is on disk.
    from_google = [r for r in rows if r.account == "google" and r.status == "succeeded"]
    assert stats[0]["video_requests_keyed"] == len(from_google)
    assert stats[0]["video_refused_no_key"] == 0
    assert all(Path(row.video_path).is_file() for row in rows if row.status == "succeeded")
