"""A relay is a stranger: whatever it answers, each row ends in the right state with a clear
reason, nothing is sent twice, and no text of its reaches a terminal as it came."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tests.conftest import Cli
from tests.helpers import load_prompts, run_embedded
from tests.hostile import ANSI, POLL, SUBMIT, HostileRelay
from veobatch.logs import TextFormatter
from veobatch.store.tables import Job


def rows(engine: Engine) -> dict[str, Any]:
    with engine.connect() as conn:
        return {r.prompt: r for r in conn.execute(sa.select(Job))}


@pytest.fixture
def relay() -> Any:
    with HostileRelay() as server:
        yield server


def test_a_200_without_a_usable_task_id_leaves_the_row_in_doubt_and_unsent(
    engine: Engine, relay: HostileRelay
) -> None:
    prompts = [f"a fox hostile:{deed}" for deed in sorted(SUBMIT)] + ["an honest fox"]
    batch_id = load_prompts(engine, prompts)
    progress = run_embedded(engine, relay, batch_id, max_attempts=1)
    assert progress.state == "finished"
    found = rows(engine)
    assert found["an honest fox"].status == "succeeded"
    for deed in SUBMIT:
        row = found[f"a fox hostile:{deed}"]
        assert (row.status, row.error_kind, row.task_id) == ("in_doubt", "bad_answer", None), deed
        assert "200 without a usable task id" in row.error
        assert "may have created" in row.error
        assert len(row.error) < 1000  # a 1 MB answer is not kept whole in the row
    assert set(relay.created.values()) == {1}  # none sent twice


def test_poll_answers_that_cannot_be_used_fail_their_row_saying_why(
    engine: Engine, relay: HostileRelay
) -> None:
    prompts = [f"a fox hostile:{deed}" for deed in sorted(POLL)]
    batch_id = load_prompts(engine, prompts)
    progress = run_embedded(engine, relay, batch_id)
    assert progress.state == "finished"
    found = rows(engine)
    expected = {
        "nested-output": "the video URL is an object, not a string",
        "newline-url": "holds control or blank characters",
        "long-url": "characters long (at most 2048)",
    }
    for deed, words in expected.items():
        row = found[f"a fox hostile:{deed}"]
        assert (row.status, row.error_kind, row.video_url) == ("failed", "bad_answer", None)
        assert words in row.error, row.error
    ansi = found["a fox hostile:ansi-reason"]
    assert (ansi.status, ansi.error_kind, ansi.error) == ("failed", "remote", ANSI)


def test_a_relays_escape_codes_are_shown_escaped(
    engine: Engine, run: Cli, caplog: pytest.LogCaptureFixture
) -> None:
    with HostileRelay() as relay:
        batch_id = load_prompts(engine, ["a fox hostile:ansi-reason"])
        run_embedded(engine, relay, batch_id)
    for args in (["jobs", "b"], ["jobs", "b", "--id", "r2"], ["status", "b"]):
        shown = run(*args)
        assert shown.exit_code == 0, shown.output
        assert "\x1b" not in shown.output, args
        assert "\x07" not in shown.output, args
    assert "\\x1b[2J" in run("jobs", "b", "--id", "r2").output
    formatter = TextFormatter()
    lines = [formatter.format(r) for r in caplog.records if r.name == "veobatch.rows"]
    assert any("\\x1b[2J" in line for line in lines)
    assert not any("\x1b" in line for line in lines)
