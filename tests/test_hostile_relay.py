"""A relay is a stranger: whatever it answers, each row ends in the right state with a clear
reason, nothing is sent twice, and no text of its reaches a terminal as it came."""

from __future__ import annotations

import tracemalloc
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tests.conftest import MOCK_KEY, Cli, serving
from tests.helpers import load_prompts, run_embedded, wait_until
from tests.hostile import ANSI, INSIDE, POLL, SUBMIT, VIDEOS, HostileRelay
from tests.stack import Stack
from veobatch.errors import ProviderError
from veobatch.logs import TextFormatter
from veobatch.provider.client import ProviderClient
from veobatch.settings import Secret
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


def test_an_error_nested_too_deep_to_parse_fails_its_row_with_words_not_a_crash(
    engine: Engine, relay: HostileRelay
) -> None:
    batch_id = load_prompts(engine, ["a fox hostile:deep-error", "an honest fox"])
    progress = run_embedded(engine, relay, batch_id, max_attempts=1)
    assert progress.state == "finished"
    found = rows(engine)
    assert found["an honest fox"].status == "succeeded"
    deep = found["a fox hostile:deep-error"]
    assert (deep.status, deep.error_kind, deep.http_status) == ("failed", "invalid", 400)
    assert deep.error.startswith("[[[[")  # the body's start, cut: never parsed whole
    assert len(deep.error) < 1000


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


class _Internal(BaseHTTPRequestHandler):
    """A service of this machine's that no link from a relay may reach."""

    def do_GET(self) -> None:
        self.server.hits += 1  # type: ignore[attr-defined]
        body = b"\x00\x00\x00\x18ftypmp42 the secret page"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: Any) -> None:
        pass


def test_video_links_into_this_network_are_refused_and_never_fetched(
    engine: Engine, relay: HostileRelay, tmp_path: Path
) -> None:
    internal = HTTPServer(("127.0.0.1", 0), _Internal)
    internal.hits = 0  # type: ignore[attr-defined]
    with serving(internal):
        relay.internal = f"http://127.0.0.1:{internal.server_address[1]}"
        prompts = [f"a fox hostile:{deed}" for deed in sorted(INSIDE)] + ["an honest fox"]
        batch_id = load_prompts(engine, prompts)
        run_embedded(engine, relay, batch_id, download_dir=tmp_path / "videos")
    assert internal.hits == 0  # type: ignore[attr-defined]
    found = rows(engine)
    assert found["an honest fox"].video_path  # the relay's own origin is trusted
    for deed in INSIDE:
        row = found[f"a fox hostile:{deed}"]
        assert row.status == "succeeded"  # the task did succeed: only its link is refused
        assert row.video_path is None, deed
        assert "refused" in (row.download_error or ""), (deed, row.download_error)
        assert "VEO_DOWNLOAD_ALLOW_PRIVATE" in row.download_error
    metadata = found["a fox hostile:metadata-url"].download_error
    assert "169.254.169.254" in metadata
    assert "link-local" in metadata
    stored = sorted(p.name for p in (tmp_path / "videos").rglob("*") if p.is_file())
    assert len(stored) == 1  # the honest row's video, nothing else


def test_an_answer_of_50_mb_is_not_read_on(engine: Engine, relay: HostileRelay) -> None:
    """50 MB of JSON to a POST: the row is in doubt (it may have made a task), read no
    further than 1 MiB; to a poll: an error of that poll, the memory it took bounded."""
    batch_id = load_prompts(engine, ["a fox hostile:huge-json"])
    run_embedded(engine, relay, batch_id, max_attempts=1)
    row = rows(engine)["a fox hostile:huge-json"]
    assert (row.status, row.error_kind) == ("in_doubt", "ambiguous")
    assert "over 1 MiB" in row.error
    with ProviderClient(relay.url, Secret(MOCK_KEY)) as client:
        tracemalloc.start()
        with pytest.raises(ProviderError, match="over 1 MiB"):
            client.query("h:huge-poll:1")
        _now, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert peak < 8 * 1024 * 1024


def test_a_video_that_is_not_one_or_too_large_is_not_kept(
    engine: Engine, relay: HostileRelay, tmp_path: Path
) -> None:
    prompts = [f"a fox hostile:{deed}" for deed in sorted(VIDEOS)] + ["an honest fox"]
    batch_id = load_prompts(engine, prompts)
    videos = tmp_path / "videos"
    run_embedded(engine, relay, batch_id, download_dir=videos, video_max_bytes=1024 * 1024)
    found = rows(engine)
    assert found["an honest fox"].video_path
    expected = {
        "html-video": "not a video",
        "huge-video": "over VEO_VIDEO_MAX_MB (2,147,483,648 bytes announced",
        "endless-video": "over VEO_VIDEO_MAX_MB",
    }
    for deed, words in expected.items():
        row = found[f"a fox hostile:{deed}"]
        assert row.video_path is None, deed
        assert words in (row.download_error or ""), (deed, row.download_error)
        assert row.downloads == 1  # refused once, not tried again
    kept = [p for p in videos.rglob("*") if p.is_file()]
    assert len(kept) == 1  # the honest video; no .part, nothing over the limit
    assert kept[0].stat().st_size < 2000


def test_a_hostile_relays_answers_end_each_row_in_distributed_mode_too(
    stack: Stack, relay: HostileRelay
) -> None:
    """The same answers to a scheduler and a worker's processes (PostgreSQL, Redis): every
    row ends in its state, the worker never stops, nothing is sent twice."""
    deeds = sorted(SUBMIT | POLL | {"huge-json"})
    stack.load([f"a fox hostile:{deed}" for deed in deeds] + ["an honest fox"])
    stack.start_worker(VEO_API_BASE=relay.url)
    stack.start_scheduler()
    wait_until(lambda: stack.batch_state() == "finished", what="the batch to finish")
    found = {row.prompt: row for row in stack.rows()}
    assert found["an honest fox"].status == "succeeded"
    for deed in SUBMIT | {"huge-json"}:
        assert found[f"a fox hostile:{deed}"].status == "in_doubt", deed
    for deed in POLL:
        assert found[f"a fox hostile:{deed}"].status == "failed", deed
    assert set(relay.created.values()) == {1}
    assert all(worker.poll() is None for worker in stack.workers)  # still at work
