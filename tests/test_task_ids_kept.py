"""Once the relay has answered a POST with a task id, that id reaches its row, whatever else
fails: a slower row of the same wave, a value the database refuses, a database that cannot be
reached when the answers come. And every id is logged the moment it arrives."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from contextlib import nullcontext
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tests.conftest import MOCK_KEY, POSTGRES_ADMIN_URL
from tests.helpers import FAST, load_prompts, sender_for, wait_until
from veobatch.health import answers_check
from veobatch.lifecycle import submit as submitting
from veobatch.lifecycle import transitions
from veobatch.lifecycle.fanout import Fanout
from veobatch.lifecycle.submit import submit_rows
from veobatch.lifecycle.submit_rules import Outcome
from veobatch.lifecycle.unrecorded import Answer, Unrecorded, recorded_later
from veobatch.provider.client import ProviderClient
from veobatch.provider.mock import MockProvider
from veobatch.settings import Secret, Settings, normalize_database_url
from veobatch.store.tables import Job

WAVE = 4


def queued(engine: Engine, prompts: list[str]) -> list[int]:
    load_prompts(engine, prompts, "b")
    with engine.begin() as conn:
        return transitions.release(conn, transitions.utcnow(), len(prompts))


def submit(
    engine: Engine,
    mock: MockProvider,
    ids: list[int],
    kept: Unrecorded,
    wait: Callable[[float], bool] | None = None,
) -> list[Outcome]:
    fanout = Fanout(WAVE)
    try:
        with ProviderClient(mock.url, Secret(MOCK_KEY), read_timeout=30.0) as client:
            sender = sender_for(client, lease=timedelta(seconds=60), unrecorded=kept)
            return submit_rows(engine, sender, ids, fanout=fanout, wait=wait or submitting.sleep)
    finally:
        fanout.close()


def rows(engine: Engine) -> dict[str, Any]:
    with engine.connect() as conn:
        return {r.prompt: r for r in conn.execute(sa.select(Job))}


def test_a_slow_answer_holds_back_no_other_row_of_its_wave(
    engine: Engine, mock: MockProvider, tmp_path: Path
) -> None:
    """Three answers come at once, the fourth 20 s later: the three are recorded within
    seconds (before: only once the fourth came, and a lease shorter than that made the whole
    wave in doubt)."""
    prompts = ["fast 1", "fast 2", "fast 3", "[mock:slow=20] slow"]
    ids = queued(engine, prompts)
    done: list[list[Outcome]] = []
    sender = threading.Thread(
        target=lambda: done.append(submit(engine, mock, ids, Unrecorded(tmp_path)))
    )
    sender.start()
    try:

        def fast_ones_recorded() -> bool:
            found = rows(engine)
            return all(found[p].status == "submitted" and found[p].task_id for p in prompts[:3])

        wait_until(fast_ones_recorded, 12, "the three fast rows to be recorded")
        assert rows(engine)[prompts[3]].status == "submitting"  # its answer is still out
    finally:
        sender.join(timeout=60)
    assert [o.status for o in done[0]] == ["submitted"] * 4
    assert rows(engine)[prompts[3]].task_id


def test_a_task_id_the_database_refuses_spoils_no_other_row(
    postgres_url: str, mock: MockProvider, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """One task id of four is one the database refuses (here, a rule of the table's that
    takes ids under 60 characters; in the field, a column narrower than the relay's ids).
    The other rows keep their tasks; that one is in doubt, saying so, its answer kept on
    disk."""
    engine = _emptied(postgres_url)
    prompts = ["one", "two", "[mock:task-id-size=100] too long", "three"]
    ids = queued(engine, prompts)
    kept = Unrecorded(tmp_path)
    caplog.set_level(logging.INFO, logger="veobatch.rows")
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "ALTER TABLE jobs ADD CONSTRAINT short_ids CHECK (length(task_id) < 60)"
        )
    try:
        outcomes = submit(engine, mock, ids, kept)
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql("ALTER TABLE jobs DROP CONSTRAINT short_ids")
    found = rows(engine)
    for prompt in ("one", "two", "three"):
        assert found[prompt].status == "submitted", found[prompt].error
        assert found[prompt].task_id
    bad = found[prompts[2]]
    assert bad.status == "in_doubt"
    assert bad.task_id is None
    assert "the database refused it" in bad.error
    assert str(kept.refused) in bad.error
    assert sorted(o.status for o in outcomes) == ["in_doubt"] + ["submitted"] * 3
    (line,) = kept.refused.read_text().splitlines()
    answer = json.loads(line)
    assert answer["job_id"] == bad.id
    assert len(answer["task_id"]) == 100
    # Every task id was logged as it came, the refused one included.
    logged = [r for r in caplog.records if r.getMessage() == "submit: task created"]
    assert len(logged) == 4
    assert {getattr(r, "task_id", None) for r in logged} == {
        *(found[p].task_id for p in ("one", "two", "three")),
        answer["task_id"],
    }
    engine.dispose()


def test_task_ids_reach_their_rows_though_the_database_was_away_when_they_came(
    postgres_url: str,
    mock: MockProvider,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The database goes away while a wave's POSTs are out (its connections cut, new ones
    refused) and stays away past the write's patience: the task ids are kept on disk, and the
    next submission writes them to their rows, though their leases ran out meanwhile."""
    monkeypatch.setattr(submitting, "RECORD_PATIENCE", 1.0)
    engine = _emptied(postgres_url)
    prompts = [f"row {n}" for n in range(WAVE)]
    ids = queued(engine, prompts)
    kept = Unrecorded(tmp_path)
    name = sa.make_url(postgres_url).database
    cut = threading.Event()
    lock = threading.Lock()

    def cut_the_database_then_send(_seconds: float) -> bool:
        with lock:
            if not cut.is_set():
                _allow_connections(name, False)
                cut.set()
        return True

    try:
        outcomes = submit(engine, mock, ids, kept, wait=cut_the_database_then_send)
        assert outcomes == []  # nothing could be written
        assert mock.stats()["created"] == WAVE
        answers = [json.loads(line) for line in kept.pending.read_text().splitlines()]
        assert sorted(a["job_id"] for a in answers) == sorted(ids)
    finally:
        _allow_connections(name, True)
    engine.dispose()
    with engine.begin() as conn:  # meanwhile the rows' leases ran out: in doubt
        later = transitions.utcnow() + timedelta(minutes=5)
        assert transitions.expire_leases(conn, later) == WAVE
    assert submit(engine, mock, [], kept) == []  # the next submission of this host
    found = rows(engine)
    by_id = {a["job_id"]: a["task_id"] for a in answers}
    for prompt in prompts:
        row = found[prompt]
        assert row.status == "submitted", row.error
        assert row.task_id == by_id[row.id]
        assert row.finished_at is None
    assert not kept.pending.exists()
    assert mock.stats()["created"] == WAVE  # nothing sent twice


def _emptied(url: str) -> Engine:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "TRUNCATE attempts, jobs, batches, spend_days RESTART IDENTITY CASCADE"
        )
    return engine


def _allow_connections(name: str | None, allowed: bool) -> None:
    """Let connections to database `name` in, or cut the ones it has and refuse new ones."""
    admin = sa.create_engine(
        normalize_database_url(POSTGRES_ADMIN_URL), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        conn.exec_driver_sql(
            f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {"true" if allowed else "false"}'
        )
        if not allowed:
            conn.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :name"
                ),
                {"name": name},
            )
    admin.dispose()


def test_health_tells_of_task_ids_waiting_on_this_host(tmp_path: Path) -> None:
    settings = Settings(data_dir=str(tmp_path))
    assert answers_check(settings).ok
    kept = Unrecorded(tmp_path)
    kept.keep([Answer(7, 1, 0, "veo3:1-abc", "2026-12-03T00:00:00+00:00", "unreachable")])
    waiting = answers_check(settings)
    assert (waiting.ok, waiting.warning) == (False, True)
    assert f"1 task id(s) wait in {kept.pending}" in waiting.detail
    kept.keep(
        [Answer(8, 1, 0, "veo3:2-abc", "2026-12-03T00:00:00+00:00", "too long")], refused=True
    )
    assert answers_check(settings).failed


def test_a_spoilt_line_on_disk_is_set_aside_and_the_others_recorded(
    engine: Engine, tmp_path: Path
) -> None:
    """The file of kept answers is read back as any input is: a line whose fields are spoilt
    goes to the refused answers, no traceback, and the good one reaches its row."""
    ids = queued(engine, ["good", "spoilt"])
    with engine.begin() as conn:
        conn.execute(sa.update(Job).where(Job.id.in_(ids)).values(status="submitting"))
    kept = Unrecorded(tmp_path)
    kept.keep(
        [
            Answer(ids[0], 1, 0, "veo3:1-good", "2026-12-03T00:00:00+00:00"),
            Answer(ids[1], 1, 0, "veo3:2-spoilt", "yesterday"),
        ]
    )
    kept.settle(partial(recorded_later, engine, FAST, nullcontext()))
    found = rows(engine)
    assert (found["good"].status, found["good"].task_id) == ("submitted", "veo3:1-good")
    assert found["spoilt"].status == "submitting"  # left for its lease, and a person
    assert not kept.pending.exists()
    assert "veo3:2-spoilt" in kept.refused.read_text()
