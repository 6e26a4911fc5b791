"""The pure rules of polling: what a poll's answer does to a row, and when to ask next."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from veobatch.errors import ProviderError
from veobatch.lifecycle.poll_rules import (
    Fallback,
    Pacing,
    PollOutcome,
    after_poll,
    claim_for,
    fallback_for,
    percent_of,
)
from veobatch.provider.dialect import TaskState
from veobatch.settings import Rate
from veobatch.states import ErrorKind, JobStatus

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
PACING = Pacing(delay=10, shortest=5, longest=30, deadline=1800)


def state(status: str, progress: str | None = None, **fields: str) -> TaskState:
    return TaskState(
        task_id="veo3:1-abc",
        status=status,
        progress=progress,
        fail_reason=fields.get("fail_reason"),
        video_url=fields.get("video_url"),
    )


def poll(
    answer: TaskState | ProviderError, seconds: float = 60, polls: int = 1, **kw: object
) -> PollOutcome:
    options: dict[str, object] = {
        "now": T0 + timedelta(seconds=seconds),
        "submitted_at": T0,
        "poll_until": T0 + timedelta(seconds=1800),
        "polls": polls,
        "last_status": None,
        "last_progress": None,
        "pacing": PACING,
        **kw,
    }
    return after_poll(answer, **options)  # type: ignore[arg-type]


def test_success_with_a_video_succeeds() -> None:
    outcome = poll(state("SUCCESS", "100%", video_url="https://cdn.example/v.mp4"))
    assert (outcome.status, outcome.video_url) == (JobStatus.SUCCEEDED, "https://cdn.example/v.mp4")
    assert outcome.next_poll_at is None


def test_failure_keeps_the_providers_reason() -> None:
    outcome = poll(state("FAILURE", "100%", fail_reason="视频生成失败：上游服务异常"))
    assert (outcome.status, outcome.error_kind) == (JobStatus.FAILED, ErrorKind.REMOTE)
    assert outcome.error == "视频生成失败：上游服务异常"
    assert poll(state("FAILURE")).error == "the provider reported FAILURE without a reason"


def filtered(charged: bool | None = None) -> TaskState:
    return TaskState("t", "FAILURE", None, "blocked", None, filtered="blocked", charged=charged)


def test_a_filtered_video_fails_as_filtered_and_its_price_goes_back_only_when_not_billed() -> None:
    billed = poll(filtered(), price=250_000)
    assert (billed.status, billed.error_kind, billed.refund) == (
        JobStatus.FAILED,
        ErrorKind.FILTERED,
        0,
    )
    assert billed.error == "filtered: blocked"
    assert poll(filtered(), price=250_000, filtered_charged=False).refund == 250_000
    said_not = poll(filtered(charged=False), price=250_000)  # the provider's word wins
    assert (said_not.refund, said_not.error) == (250_000, "filtered (not billed): blocked")
    assert poll(filtered(charged=True), price=9, filtered_charged=False).refund == 0


def test_a_filtered_row_with_a_fallback_goes_back_to_pending_once() -> None:
    assert fallback_for(None, "veo3.1", None) is None
    enhance = fallback_for("enhance_prompt", "veo3.1", False)
    assert enhance == Fallback("enhance_prompt", True)
    assert fallback_for("enhance_prompt", "veo3.1", True) is None  # it had it: no second try
    assert fallback_for("veo3-fast-frames", "veo3.1", None) == Fallback("model", "veo3-fast-frames")
    assert fallback_for("veo3-fast-frames", "veo3-fast-frames", None) is None
    outcome = poll(filtered(), fallback=enhance)
    assert (outcome.status, outcome.finished) == (JobStatus.PENDING, False)
    assert outcome.error == "filtered: blocked; tried again once with enhance_prompt on"


def test_success_without_a_video_is_a_bad_answer() -> None:
    outcome = poll(state("SUCCESS", "100%"))
    assert (outcome.status, outcome.error_kind) == (JobStatus.FAILED, ErrorKind.BAD_ANSWER)


@pytest.mark.parametrize(
    "status", ["NOT_START", "SUBMITTED", "QUEUED", "IN_PROGRESS", "UNKNOWN", "SOMETHING_NEW"]
)
def test_any_other_status_is_still_running(status: str) -> None:
    outcome = poll(state(status))
    assert outcome.status is JobStatus.SUBMITTED
    assert outcome.next_poll_at is not None


def test_only_a_change_of_status_is_worth_a_history_line() -> None:
    assert poll(state("IN_PROGRESS", "40%"), last_status="NOT_START").changed
    assert not poll(state("IN_PROGRESS", "50%"), last_status="IN_PROGRESS").changed


def test_a_failed_poll_keeps_the_row_and_asks_again() -> None:
    error = ProviderError(ErrorKind.SERVER, "an HTML page (502 Bad Gateway)", 502)
    outcome = poll(error, last_status="IN_PROGRESS", last_progress="40%")
    assert outcome.status is JobStatus.SUBMITTED
    assert (outcome.remote_status, outcome.progress) == ("IN_PROGRESS", "40%")
    assert outcome.error == "poll: an HTML page (502 Bad Gateway)"
    assert outcome.pause_reason is None


def test_a_refused_key_on_a_poll_pauses_the_batch() -> None:
    outcome = poll(ProviderError(ErrorKind.AUTH, "无效的令牌", 401))
    assert outcome.status is JobStatus.SUBMITTED
    assert outcome.pause_reason is not None
    assert outcome.pause_reason.startswith("auth: 无效的令牌")


def test_still_running_at_the_deadline_times_out() -> None:
    outcome = poll(state("IN_PROGRESS", "80%"), seconds=1800)
    assert (outcome.status, outcome.error_kind) == (JobStatus.FAILED, ErrorKind.TIMEOUT)
    assert outcome.error is not None
    assert "after 30 min (last seen: IN_PROGRESS 80%)" in outcome.error
    assert "--kind timeout" in outcome.error
    failed = poll(
        ProviderError(ErrorKind.NETWORK, "ConnectError"), seconds=1801, last_status="IN_PROGRESS"
    )
    assert failed.error_kind is ErrorKind.TIMEOUT
    assert failed.error is not None
    assert "the last poll failed: ConnectError" in failed.error


def test_the_next_poll_never_passes_the_deadline() -> None:
    outcome = poll(state("IN_PROGRESS"), seconds=1795, polls=20)
    assert outcome.next_poll_at == T0 + timedelta(seconds=1800)


def test_without_progress_the_interval_grows_to_the_longest() -> None:
    waits = [PACING.next_in(n, 0, None) for n in range(1, 8)]
    assert waits[0] == 5
    assert waits == sorted(waits)
    assert waits[-1] == 30


def test_with_progress_the_next_poll_is_at_the_estimated_end() -> None:
    # 25% after 20 s: 60 s to go; a poll a little after, but never past `longest`.
    assert PACING.next_in(1, 20, 25) == 30
    # 80% after 40 s: 10 s to go, and 10% on top so that one poll finds it finished.
    assert PACING.next_in(3, 40, 80) == pytest.approx(11)
    # Almost done: not sooner than `shortest`.
    assert PACING.next_in(3, 99, 99) == 5


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("40%", 40.0),
        ("100%", 100.0),
        ("12.5 %", 12.5),
        ("7", 7.0),
        ("", None),
        (None, None),
        ("half", None),
    ],
)
def test_percent_of(text: str | None, value: float | None) -> None:
    assert percent_of(text) == value


def test_a_claim_covers_the_polls_waiting_at_the_rate() -> None:
    assert claim_for(None, 100) == timedelta(minutes=2)
    assert claim_for(Rate.parse("10/min"), 20) == timedelta(seconds=360)
