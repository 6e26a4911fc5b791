"""Submitting rows end to end: SQLite and PostgreSQL, the mock provider over real HTTP."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tests.conftest import MOCK_KEY as KEY
from veobatch import transitions
from veobatch.catalog import DEFAULT_MODELS
from veobatch.jobspec import RawJob
from veobatch.loader import load_rows
from veobatch.mockapi import MockProvider
from veobatch.models import Attempt, Batch, Job
from veobatch.polling import Pacing
from veobatch.provider import ProviderClient
from veobatch.ratelimit import LocalRateLimiter
from veobatch.runner import EmbeddedRunner, Progress
from veobatch.settings import Secret
from veobatch.states import JobStatus

URL = "https://img.example.com/a.jpg"


def load(engine: Engine, prompts: list[str], batch: str = "b") -> int:
    rows = [
        RawJob.from_mapping(n, {"id": f"r{n}", "prompt": p, "model": "veo3.1", "images": [URL]})
        for n, p in enumerate(prompts, 2)
    ]
    load_rows(engine, rows, batch=batch, source="test", models=DEFAULT_MODELS)
    with engine.connect() as conn:
        return conn.execute(sa.select(Batch.id).where(Batch.name == batch)).scalar_one()


# Polls come fast in tests: the mock's tasks take a fraction of a second.
FAST = Pacing(delay=0.05, shortest=0.05, longest=0.2, deadline=30.0)


def run(
    engine: Engine, mock: MockProvider, batch_id: int, key: str = KEY, **options: Any
) -> Progress:
    options.setdefault("pacing", FAST)
    with ProviderClient(mock.url, Secret(key), read_timeout=1.0) as client:
        runner = EmbeddedRunner(
            engine, client, LocalRateLimiter(0.0), batch_id, tick=0.02,
            lease=timedelta(seconds=30), **options,
        )  # fmt: skip
        return runner.run()


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
    batch_id = load(engine, prompts)
    progress = run(engine, mock, batch_id, max_attempts=1)
    assert progress.state == "finished"
    got = {p: (r.status, r.error_kind, r.http_status) for p, r in rows(engine).items()}
    assert got == {
        "fine": ("succeeded", None, 200),
        "[mock:status=400] bad input": ("failed", "invalid", 400),
        "[mock:status=502] proxy down": ("failed", "server", 502),
        "[mock:drop-after] answer lost": ("in_doubt", "ambiguous", None),
        "[mock:drop-before] connection lost": ("in_doubt", "ambiguous", None),
        "[mock:no-task-id] strange answer": ("failed", "bad_answer", 200),
    }
    assert rows(engine)["fine"].task_id.startswith("veo3:")
    assert "模拟错误 400" in rows(engine)["[mock:status=400] bad input"].error
    assert "not resent" in rows(engine)["[mock:drop-after] answer lost"].error
    # Each row was sent once: the row in doubt whose task exists is not sent again.
    assert mock.stats()["created_by_prompt"] == {
        "fine": 1, "[mock:drop-after] answer lost": 1, "[mock:no-task-id] strange answer": 1,
    }  # fmt: skip


def test_retriable_errors_come_back_until_the_last_attempt(
    engine: Engine, mock: MockProvider
) -> None:
    batch_id = load(engine, ["[mock:status=503] busy"])
    run(engine, mock, batch_id, max_attempts=2)
    row = rows(engine)["[mock:status=503] busy"]
    assert (row.status, row.error_kind, row.attempts) == ("failed", "server", 2)
    assert row.error.endswith("(gave up after 2 attempts)")
    with engine.connect() as conn:
        history = conn.execute(sa.select(Attempt.http_status).where(Attempt.job_id == row.id))
        assert [h for (h,) in history] == [503, 503]


def test_a_wrong_key_pauses_the_batch_after_the_requests_in_flight(
    engine: Engine, mock: MockProvider
) -> None:
    batch_id = load(engine, [f"row {n}" for n in range(40)])
    progress = run(engine, mock, batch_id, key="wrong", concurrency=3)
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
    batch_id = load(engine, [f"row {n}" for n in range(6)])
    progress = run(engine, mock, batch_id, concurrency=1)
    assert progress.state == "paused"
    assert progress.pause_reason is not None
    assert progress.pause_reason.startswith("quota: 用户额度不足")
    # The run stops at the pause; the two tasks made are followed by the next run.
    assert progress.of(JobStatus.PENDING) == 4
    assert progress.of(JobStatus.SUBMITTED, JobStatus.SUCCEEDED) == 2


def test_running_again_sends_nothing_twice(engine: Engine, mock: MockProvider) -> None:
    batch_id = load(engine, [f"row {n}" for n in range(12)])
    run(engine, mock, batch_id)
    run(engine, mock, batch_id)
    assert mock.stats()["created"] == 12
    assert set(mock.stats()["created_by_prompt"].values()) == {1}


def test_two_runners_on_one_batch_never_send_a_row_twice(
    engine: Engine, mock: MockProvider
) -> None:
    batch_id = load(engine, [f"row {n}" for n in range(60)])
    threads = [threading.Thread(target=run, args=(engine, mock, batch_id)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert mock.stats()["created"] == 60
    assert set(mock.stats()["created_by_prompt"].values()) == {1}
    assert {r.status for r in rows(engine).values()} == {"succeeded"}


def test_an_expired_lease_leaves_the_row_in_doubt(engine: Engine) -> None:
    load(engine, ["a"])
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
    batch_id = load(engine, ["[mock:status=400] x", "ok"])
    run(engine, mock, batch_id)
    with engine.begin() as conn:
        assert transitions.rerun(conn, batch_id, transitions.utcnow(), ["failed"]) == (1, 0)
        assert transitions.resume(conn, batch_id, transitions.utcnow())
    run(engine, mock, batch_id)
    row = rows(engine)["[mock:status=400] x"]
    assert (row.status, row.attempts) == ("failed", 1)
    with engine.connect() as conn:
        assert (
            conn.execute(sa.select(sa.func.count()).where(Attempt.job_id == row.id)).scalar_one()
            == 2
        )
