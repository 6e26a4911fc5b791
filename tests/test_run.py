"""Submitting rows end to end: SQLite and PostgreSQL, the mock provider over real HTTP."""

from __future__ import annotations

import hashlib
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tests.conftest import MOCK_KEY as KEY
from tests.helpers import load_prompts, run_embedded, sender_for
from veobatch.destinations import Destinations
from veobatch.embedded_runner import EmbeddedRunner
from veobatch.lifecycle import transitions
from veobatch.lifecycle.download import download_one, video_client
from veobatch.lifecycle.poll_rules import Pacing
from veobatch.lifecycle.progress import Progress
from veobatch.lifecycle.rate_limit import LocalRateLimiter
from veobatch.provider.client import ProviderClient
from veobatch.provider.mock import MockConfig, MockProvider
from veobatch.running import RunOutcome
from veobatch.service import BatchService
from veobatch.settings import Rate, Secret, Settings
from veobatch.states import JobStatus
from veobatch.store.queries import BatchSummary, RowFilter
from veobatch.store.tables import Attempt, Job

DEADLINE = timedelta(minutes=30)  # a rerun's new deadline for polls

THIS_MACHINE = Destinations(allow_private=True)  # the test's own video host is local


def rows(engine: Engine) -> dict[str, sa.Row]:  # type: ignore[type-arg]
    with engine.connect() as conn:
        return {row.prompt: row for row in conn.execute(sa.select(Job))}


def test_every_outcome_ends_in_its_state(engine: Engine, mock: MockProvider) -> None:
    prompts = [
        "fine",
        "[mock:status=400] bad input",
        "[mock:status=502] proxy down",
        "[mock:drop-after] answer lost",
        "[mock:drop-before] connection lost",
        "[mock:no-task-id] strange answer",
    ]
    batch_id = load_prompts(engine, prompts)
    progress = run_embedded(engine, mock, batch_id, max_attempts=1)
    assert progress.state == "finished"
    got = {p: (r.status, r.error_kind, r.http_status) for p, r in rows(engine).items()}
    assert got == {
        "fine": ("succeeded", None, 200),
        "[mock:status=400] bad input": ("failed", "invalid", 400),
        "[mock:status=502] proxy down": ("failed", "server", 502),
        "[mock:drop-after] answer lost": ("in_doubt", "ambiguous", None),
        "[mock:drop-before] connection lost": ("in_doubt", "ambiguous", None),
        "[mock:no-task-id] strange answer": ("in_doubt", "bad_answer", 200),
    }
    assert rows(engine)["fine"].task_id.startswith("veo3:")
    assert "模拟错误 400" in rows(engine)["[mock:status=400] bad input"].error
    assert "not resent" in rows(engine)["[mock:drop-after] answer lost"].error
    # Each row was sent once: the row in doubt whose task exists is not sent again.
    assert mock.stats()["created_by_prompt"] == {
        "fine": 1,
        "[mock:drop-after] answer lost": 1,
        "[mock:no-task-id] strange answer": 1,
    }


def test_retriable_errors_come_back_until_the_last_attempt(
    engine: Engine, mock: MockProvider
) -> None:
    batch_id = load_prompts(engine, ["[mock:status=503] busy"])
    run_embedded(engine, mock, batch_id, max_attempts=2)
    row = rows(engine)["[mock:status=503] busy"]
    assert (row.status, row.error_kind, row.attempts) == ("failed", "server", 2)
    assert row.error.endswith("(gave up after 2 attempts)")
    with engine.connect() as conn:
        history = conn.execute(sa.select(Attempt.http_status).where(Attempt.job_id == row.id))
        assert [h for (h,) in history] == [503, 503]


def test_a_wrong_key_pauses_the_batch_after_the_requests_in_flight(
    engine: Engine, mock: MockProvider
) -> None:
    batch_id = load_prompts(engine, [f"row {n}" for n in range(40)])
    progress = run_embedded(engine, mock, batch_id, key="wrong", concurrency=3)
    assert progress.state == "paused"
    assert progress.pause_reason is not None
    assert progress.pause_reason.startswith("auth: 无效的令牌 (fix VEO_API_KEY)")
    stats = mock.stats()
    assert stats["requests"] <= 3  # at most one request in flight per thread
    states = rows(engine)
    assert {r.status for r in states.values()} == {"pending"}
    assert {r.attempts for r in states.values()} == {0}  # a pause is not the row's fault


def test_an_empty_balance_pauses_with_quota(engine: Engine, mock: MockProvider) -> None:
    mock.state.config.balance = 2
    batch_id = load_prompts(engine, [f"row {n}" for n in range(6)])
    progress = run_embedded(engine, mock, batch_id, concurrency=1)
    assert progress.state == "paused"
    assert progress.pause_reason is not None
    assert progress.pause_reason.startswith("quota: 用户额度不足")
    # The run stops at the pause; the two tasks made are followed by the next run.
    assert progress.of(JobStatus.PENDING) == 4
    assert progress.of(JobStatus.SUBMITTED, JobStatus.SUCCEEDED) == 2


def test_running_again_sends_nothing_twice(engine: Engine, mock: MockProvider) -> None:
    batch_id = load_prompts(engine, [f"row {n}" for n in range(12)])
    run_embedded(engine, mock, batch_id)
    run_embedded(engine, mock, batch_id)
    assert mock.stats()["created"] == 12
    assert set(mock.stats()["created_by_prompt"].values()) == {1}


def test_two_runners_on_one_batch_never_send_a_row_twice(
    engine: Engine, mock: MockProvider
) -> None:
    batch_id = load_prompts(engine, [f"row {n}" for n in range(60)])
    threads = [
        threading.Thread(target=run_embedded, args=(engine, mock, batch_id)) for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert mock.stats()["created"] == 60
    assert set(mock.stats()["created_by_prompt"].values()) == {1}
    assert {r.status for r in rows(engine).values()} == {"succeeded"}


def test_an_expired_lease_leaves_the_row_in_doubt(engine: Engine) -> None:
    load_prompts(engine, ["a"])
    now = transitions.utcnow()
    with engine.begin() as conn:
        (job_id,) = transitions.release(conn, now, 10)
        assert transitions.claim(conn, job_id, now, timedelta(seconds=1)) is not None
        assert transitions.claim(conn, job_id, now, timedelta(seconds=1)) is None  # twice: no
        assert transitions.expire_leases(conn, now) == 0
        assert transitions.expire_leases(conn, now + timedelta(seconds=2)) == 1
    row = rows(engine)["a"]
    assert (row.status, row.error_kind) == ("in_doubt", "ambiguous")


def test_rerun_sends_failed_rows_again(engine: Engine, mock: MockProvider) -> None:
    batch_id = load_prompts(engine, ["[mock:status=400] x", "ok"])
    run_embedded(engine, mock, batch_id)
    with engine.begin() as conn:
        assert transitions.rerun(
            conn, batch_id, transitions.utcnow(), RowFilter(["failed"]), deadline=DEADLINE
        ) == (1, 0)
        assert transitions.resume(conn, batch_id, transitions.utcnow())
    run_embedded(engine, mock, batch_id)
    row = rows(engine)["[mock:status=400] x"]
    assert (row.status, row.attempts) == ("failed", 1)
    with engine.connect() as conn:
        assert (
            conn.execute(sa.select(sa.func.count()).where(Attempt.job_id == row.id)).scalar_one()
            == 2
        )


def test_every_row_ends_with_its_video_or_the_providers_reason(
    engine: Engine, mock: MockProvider
) -> None:
    mock.state.config.task_seconds, mock.state.config.failure_rate = 0.3, 0.5
    batch_id = load_prompts(engine, [f"row {n}" for n in range(20)])
    progress = run_embedded(engine, mock, batch_id)
    assert progress.state == "finished"
    made = {task.prompt: task.fails for task in mock.state.tasks.values()}
    assert len(made) == 20
    assert 0 < sum(made.values()) < 20
    for prompt, row in rows(engine).items():
        if made[prompt]:
            assert (row.status, row.error_kind, row.remote_status) == (
                "failed",
                "remote",
                "FAILURE",
            )
            assert row.error == "视频生成失败：上游服务异常"
        else:
            assert (row.status, row.remote_status, row.progress) == ("succeeded", "SUCCESS", "100%")
            assert row.video_url.endswith(".mp4")
        assert row.finished_at is not None
        assert row.next_poll_at is None
    with engine.connect() as conn:
        actions = dict(
            conn.execute(sa.select(Attempt.action, sa.func.count()).group_by(Attempt.action)).all()
        )
    assert actions["submit"] == 20
    assert actions["poll"] >= 20  # at least the poll that saw each task end


def test_a_deadline_times_out_and_rerun_polls_the_same_task_again(
    engine: Engine, mock: MockProvider
) -> None:
    mock.state.config.task_seconds = 1.0
    batch_id = load_prompts(engine, ["slow"])
    impatient = Pacing(delay=0.05, shortest=0.05, longest=0.1, deadline=0.2)
    run_embedded(engine, mock, batch_id, pacing=impatient)
    row = rows(engine)["slow"]
    assert (row.status, row.error_kind) == ("failed", "timeout")
    assert "--kind timeout" in row.error
    with engine.begin() as conn:
        again = transitions.rerun(
            conn,
            batch_id,
            transitions.utcnow(),
            RowFilter(["failed"], ["timeout"]),
            deadline=DEADLINE,
        )
        assert again == (0, 1)  # nothing to send, one task to poll
        transitions.reopen(conn, batch_id, transitions.utcnow())
    run_embedded(engine, mock, batch_id)
    row = rows(engine)["slow"]
    assert (row.status, row.error, row.error_kind) == ("succeeded", None, None)
    assert mock.stats()["created"] == 1  # the same task: nothing paid twice


def test_rerun_of_a_remote_failure_makes_a_new_task(engine: Engine, mock: MockProvider) -> None:
    batch_id = load_prompts(engine, ["[mock:fail] refused"])
    run_embedded(engine, mock, batch_id)
    first = rows(engine)["[mock:fail] refused"]
    assert (first.status, first.error_kind) == ("failed", "remote")
    with engine.begin() as conn:
        assert transitions.rerun(
            conn,
            batch_id,
            transitions.utcnow(),
            RowFilter(["failed"], ["remote"]),
            deadline=DEADLINE,
        ) == (
            1,
            0,
        )
        transitions.reopen(conn, batch_id, transitions.utcnow())
    run_embedded(engine, mock, batch_id)
    second = rows(engine)["[mock:fail] refused"]
    assert second.task_id != first.task_id
    assert mock.stats()["created_by_prompt"] == {"[mock:fail] refused": 2}


@pytest.mark.timing  # what it counts depends on timing: run alone (see the Makefile)
def test_the_in_flight_cap_holds(engine: Engine, mock: MockProvider) -> None:
    mock.state.config.task_seconds = 0.3
    batch_id = load_prompts(engine, [f"row {n}" for n in range(24)])
    run_embedded(engine, mock, batch_id, concurrency=6, max_in_flight=3)
    assert {r.status for r in rows(engine).values()} == {"succeeded"}
    assert 2 <= mock.stats()["peak_running"] <= 3


def test_an_interrupted_download_resumes_where_it_stopped(
    engine: Engine, mock: MockProvider, tmp_path: Path
) -> None:
    batch_id = load_prompts(engine, ["[mock:cut-video] cut", "whole"])
    progress = run_embedded(engine, mock, batch_id, download_dir=tmp_path)
    assert progress.downloaded == 2
    size = mock.state.config.video_bytes
    cut = rows(engine)["[mock:cut-video] cut"]
    assert cut.status == "succeeded"
    assert cut.video_bytes == size
    assert cut.video_path == str(tmp_path / "b" / "r2.mp4")
    assert hashlib.sha256(Path(cut.video_path).read_bytes()).hexdigest() == cut.video_sha256
    assert not list(tmp_path.rglob("*.part"))
    # Half, then the other half (a Range request), not half and then the whole video again.
    assert mock.stats()["video_bytes_sent"] == 2 * size
    with engine.connect() as conn:
        errors = (
            conn.execute(
                sa.select(Attempt.error).where(
                    Attempt.job_id == cut.id, Attempt.action == "download"
                )
            )
            .scalars()
            .all()
        )
    assert len(errors) == 2
    assert errors[0] is not None
    assert errors[0].startswith("download: ")
    assert errors[1] is None


def test_a_failed_download_never_fails_the_row(
    engine: Engine, mock: MockProvider, tmp_path: Path
) -> None:
    batch_id = load_prompts(engine, ["ok"])
    run_embedded(engine, mock, batch_id)
    row = rows(engine)["ok"]
    with engine.begin() as conn:  # the provider deleted the output meanwhile
        conn.execute(sa.update(Job).values(video_url=f"{mock.url}/_mock/videos/gone.mp4"))
    with video_client(THIS_MACHINE) as http:
        assert not download_one(engine, http, row.id, tmp_path)
    row = rows(engine)["ok"]
    assert row.status == "succeeded"
    assert row.download_error == "download: HTTP 404 from the video host"
    assert row.next_download_at is not None  # tried again later
    assert row.video_path is None


def test_polls_share_the_rate_and_spend_few_requests(engine: Engine, mock: MockProvider) -> None:
    mock.state.config.task_seconds = 1.0
    batch_id = load_prompts(engine, [f"row {n}" for n in range(10)])
    pacing = Pacing(delay=0.5, shortest=0.1, longest=1.0, deadline=30.0)
    run_embedded(engine, mock, batch_id, pacing=pacing)
    stats = mock.stats()
    assert {r.status for r in rows(engine).values()} == {"succeeded"}
    # The provider's progress says when each task should be done: about two polls a task
    # (one at the first delay, one just after the estimated end), not one every `shortest`.
    assert stats["polls"] <= 3 * 10


def test_active_batches_share_each_release(engine: Engine) -> None:
    big = load_prompts(engine, [f"big {n}" for n in range(50)], batch="big")
    small = load_prompts(engine, [f"small {n}" for n in range(3)], batch="small")
    with engine.begin() as conn:
        first = transitions.release(conn, transitions.utcnow(), 10)
    with engine.connect() as conn:
        of = dict(conn.execute(sa.select(Job.id, Job.batch_id).where(Job.id.in_(first))).all())
    # The small batch gets all it has although the big one was loaded first; the big one
    # takes the rest of the round.
    assert sorted(of.values()).count(small) == 3
    assert sorted(of.values()).count(big) == 7
    with engine.begin() as conn:
        assert len(transitions.release(conn, transitions.utcnow(), 100)) == 43


def test_no_wait_stops_once_every_row_has_a_task_and_polls_nothing(
    engine: Engine, mock: MockProvider
) -> None:
    batch_id = load_prompts(engine, [f"row {n}" for n in range(30)])
    at_once = Pacing(delay=0.0, shortest=0.05, longest=0.2, deadline=30.0)  # polls due at once
    progress = run_embedded(engine, mock, batch_id, wait_for_videos=False, pacing=at_once)
    assert progress.of(JobStatus.SUBMITTED) == 30
    assert mock.stats()["created"] == 30
    assert mock.stats()["polls"] == 0


def test_a_relay_that_echoes_the_key_leaves_no_piece_of_it_anywhere(engine: Engine) -> None:
    key = "sk-Echo7Zq8vR2mN7xK4pL9tW3yB6cD1"
    with MockProvider(MockConfig(api_key=key, task_seconds=0.2)) as relay:
        batch_id = load_prompts(engine, ["[mock:echo-key] refused", "[mock:echo-key-poll] later"])
        run_embedded(engine, relay, batch_id, key=key)
    with engine.connect() as conn:
        texts = [
            str(value)
            for table in (Job, Attempt)
            for row in conn.execute(sa.select(table))
            for value in row
            if value is not None
        ]
    exported = "".join(BatchService(engine, Settings()).export("b", "jsonl"))
    found = rows(engine)
    assert found["[mock:echo-key] refused"].error_kind == "invalid"
    assert found["[mock:echo-key-poll] later"].error_kind == "remote"
    assert "***" in found["[mock:echo-key-poll] later"].error
    for text in [*texts, exported]:
        for start in range(len(key) - 7):
            assert key[start : start + 8] not in text, text


def test_polls_claimed_and_not_made_are_handed_back_when_a_run_stops(
    engine: Engine, mock: MockProvider
) -> None:
    batch_id = load_prompts(engine, [f"row {n}" for n in range(5)])
    run_embedded(engine, mock, batch_id, wait_for_videos=False)
    with engine.begin() as conn:
        conn.execute(sa.update(Job).values(next_poll_at=transitions.utcnow()))  # all due now

    def stop_after_one_poll(_progress: Progress) -> None:
        if mock.stats()["polls"] >= 1:
            raise KeyboardInterrupt

    one_a_minute = LocalRateLimiter.for_rate(Rate.parse("1/min"))
    with ProviderClient(mock.url, Secret(KEY)) as client, pytest.raises(KeyboardInterrupt):
        EmbeddedRunner(
            engine,
            sender_for(client, poll_limiter=one_a_minute),
            batch_id,
            tick=0.02,
            poll_claim=timedelta(minutes=2),
            on_progress=stop_after_one_poll,
        ).run()
    later = transitions.utcnow() + timedelta(seconds=60)
    with engine.connect() as conn:
        held = conn.execute(
            sa.select(sa.func.count()).where(Job.status == "submitted", Job.next_poll_at > later)
        ).scalar_one()
    assert mock.stats()["polls"] == 1
    assert held == 0  # every poll not made is due again now, not in two minutes


def test_a_row_left_submitting_by_a_killed_run_is_in_doubt_not_waited_on(
    engine: Engine, mock: MockProvider
) -> None:
    batch_id = load_prompts(engine, ["left behind", "fine"])
    with engine.begin() as conn:  # what `kill -9` mid-request leaves, its lease now over
        conn.execute(
            sa.update(Job)
            .where(Job.prompt == "left behind")
            .values(status="submitting", lease_until=transitions.utcnow() - timedelta(seconds=1))
        )
    progress = run_embedded(engine, mock, batch_id)
    assert progress.state == "finished"
    found = rows(engine)
    assert (found["left behind"].status, found["left behind"].error_kind) == (
        "in_doubt",
        "ambiguous",
    )
    assert found["fine"].status == "succeeded"
    assert mock.stats()["created_by_prompt"] == {"fine": 1}  # the doubtful one is not resent


def test_many_threads_share_the_pool(engine: Engine, mock: MockProvider) -> None:
    batch_id = load_prompts(engine, [f"row {n}" for n in range(80)])
    progress = run_embedded(engine, mock, batch_id, concurrency=32)
    assert progress.of(JobStatus.SUCCEEDED) == 80


def test_a_run_counts_videos_not_saved_from_one_snapshot() -> None:
    """`run --no-wait` re-reads the batch after its last progress; rows that succeeded in
    between, their downloads not yet counted due, are not videos given up on (CI saw
    `2 videos not saved`, exit 10, for a run whose workers were still fetching them)."""
    seen = Progress(counts={JobStatus.SUBMITTED: 2}, downloading=True, waits_for_videos=False)
    later = BatchSummary(
        id=1,
        name="jobs",
        state="finished",
        source="jobs.jsonl",
        pause_reason=None,
        created_at=datetime.now(UTC),
        counts={JobStatus.SUCCEEDED: 2},
    )
    assert RunOutcome(later, seen, None).unsaved == 0
    given_up = Progress(
        counts={JobStatus.SUCCEEDED: 3}, downloading=True, downloaded=1, downloads_due=1
    )
    assert RunOutcome(later, given_up, None).unsaved == 1
