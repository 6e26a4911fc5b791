"""What happens to a `submitted` row after one poll of its task: pure decisions, no I/O.

    submitted → submitted (still running: poll again later) | succeeded | failed

- SUCCESS with a video URL: `succeeded`;
- stopped by a safety filter (the dialect says so: `TaskState.filtered`): `failed` with kind
  `filtered` and the provider's reason; its price given back when it was not billed (the
  provider says so, else the account's `filtered_charged`); with the account's
  `on_filtered`, one new try instead: back to `pending` with enhance_prompt on, or with
  another model (a row that already has it is not tried again);
- FAILURE: `failed` with kind `remote` and the provider's `fail_reason` as the error;
- any other status (NOT_START, IN_PROGRESS, QUEUED, UNKNOWN, one never seen): still running;
- a poll that fails (network, 5xx, 429, ...) is still running too: the task exists, so the
  row is asked about again later, never resubmitted;
- still running at the row's deadline: `failed` with kind `timeout`, and `rerun --kind
  timeout` polls it again (the task is not lost, only our patience).

When to ask next (`Pacing`): the first poll `delay` seconds after the submission; then, if
the provider says how far along it is, when it should be done by that estimate (a little
after, so one poll usually finds it finished); otherwise an interval growing from `shortest`
to `longest`. Never sooner than `shortest`, never later than `longest` or the deadline.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, NamedTuple

from veobatch.errors import ProviderError
from veobatch.lifecycle.submit_rules import PAUSING
from veobatch.provider.dialect import TaskState
from veobatch.settings import Rate, Settings
from veobatch.states import ErrorKind, JobStatus

GROWTH: Final = 1.5  # each poll without progress waits this much longer than the one before
MARGIN: Final = 1.1  # poll a little after the estimated end rather than a little before
_PERCENT: Final = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%?\s*$")


@dataclass(frozen=True, slots=True)
class Pacing:
    """When to poll a task (from VEO_POLL_DELAY, VEO_POLL_INTERVAL, VEO_POLL_DEADLINE)."""

    delay: float  # seconds from the submission to the first poll
    shortest: float  # the least time between two polls
    longest: float  # the most time between two polls
    deadline: float  # seconds a task may take before its row fails with kind timeout

    @classmethod
    def of(cls, settings: Settings) -> Pacing:
        shortest, longest = settings.poll_interval
        return cls(settings.poll_delay, shortest, longest, settings.poll_deadline)

    def next_in(self, polls: int, elapsed: float, percent: float | None) -> float:
        """Seconds to wait after poll number `polls` (counting the one just made), `elapsed`
        seconds after the submission, when the provider said `percent` done (or nothing)."""
        if percent is not None and 0 < percent < 100 and elapsed > 0:
            remaining = elapsed * (100 - percent) / percent * MARGIN
            return max(self.shortest, min(self.longest, remaining))
        return min(self.longest, self.shortest * GROWTH ** max(polls - 1, 0))


def claim_for(rate: Rate | None, outstanding: int) -> timedelta:
    """How long a poll handed out is not handed out again: three times what `outstanding`
    requests take at `rate`, at least two minutes. A lost poll is only late by this much."""
    seconds = 3 * outstanding / rate.per_second if rate is not None else 0.0
    return timedelta(seconds=max(120.0, seconds))


def percent_of(progress: str | None) -> float | None:
    """`"40%"` → 40.0; None for anything else."""
    match = _PERCENT.match(progress or "")
    return float(match.group(1)) if match else None


class Fallback(NamedTuple):
    """What a filtered row is tried again with: `enhance_prompt` on, or another `model`."""

    field: str  # "enhance_prompt" or "model"
    value: bool | str

    def __str__(self) -> str:
        return "enhance_prompt on" if self.field == "enhance_prompt" else f"model {self.value}"


def fallback_for(on_filtered: str | None, model: str, enhance: bool | None) -> Fallback | None:
    """The new try `on_filtered` makes of a filtered row of `model`; None when there is none
    or the row already has it (one try only)."""
    if on_filtered is None:
        return None
    if on_filtered == "enhance_prompt":
        return None if enhance is True else Fallback("enhance_prompt", True)
    return None if model == on_filtered else Fallback("model", on_filtered)


@dataclass(frozen=True, slots=True)
class PollOutcome:
    """The row after one poll, and what else to do."""

    status: JobStatus
    remote_status: str | None = None
    progress: str | None = None
    video_url: str | None = None
    error: str | None = None
    error_kind: ErrorKind | None = None
    http_status: int | None = None
    next_poll_at: datetime | None = None  # None once the row is finished
    changed: bool = True  # worth a line in the row's history
    pause_reason: str | None = None
    refund: int = 0  # micro-units given back: a filtered video that was not billed
    fallback: Fallback | None = None  # a filtered row's one new try, instead of failing

    @property
    def finished(self) -> bool:
        """Whether the row is done (a filtered row tried again is `pending`, not done)."""
        return self.status in (JobStatus.SUCCEEDED, JobStatus.FAILED)


def after_poll(
    answer: TaskState | ProviderError,
    *,
    now: datetime,
    submitted_at: datetime,
    poll_until: datetime,
    polls: int,
    last_status: str | None,
    last_progress: str | None,
    pacing: Pacing,
    filtered_charged: bool = True,
    price: int | None = None,
    fallback: Fallback | None = None,
) -> PollOutcome:
    """The outcome of poll number `polls` (counting this one) of a row's task. For a
    filtered video: whether the account bills one unless told (`filtered_charged`), the
    row's `price` there (given back when it was not billed), and its one new try."""
    if isinstance(answer, ProviderError):
        if now >= poll_until:
            return _timed_out(
                now, submitted_at, last_status, last_progress, answer.http_status, answer.message
            )
        return _after_error(answer, now, poll_until, polls, last_status, last_progress, pacing)
    if answer.filtered is not None:
        charged = answer.charged if answer.charged is not None else filtered_charged
        said = "" if charged else " (not billed)"
        retry = f"; tried again once with {fallback}" if fallback is not None else ""
        return PollOutcome(
            JobStatus.PENDING if fallback is not None else JobStatus.FAILED,
            answer.status,
            answer.progress,
            error=f"filtered{said}: {answer.filtered}{retry}",
            error_kind=ErrorKind.FILTERED,
            http_status=200,
            refund=0 if charged else price or 0,
            fallback=fallback,
        )
    if answer.status == "SUCCESS" and answer.video_url:
        return PollOutcome(
            JobStatus.SUCCEEDED,
            answer.status,
            answer.progress or "100%",
            answer.video_url,
            http_status=200,
        )
    if answer.status == "SUCCESS":
        why = answer.video_problem or "there is no video URL (data.output is empty)"
        return PollOutcome(
            JobStatus.FAILED,
            answer.status,
            answer.progress,
            error=f"the provider reported SUCCESS, but {why}",
            error_kind=ErrorKind.BAD_ANSWER,
            http_status=200,
        )
    if answer.status == "FAILURE":
        reason = answer.fail_reason or "the provider reported FAILURE without a reason"
        return PollOutcome(
            JobStatus.FAILED,
            answer.status,
            answer.progress,
            error=reason,
            error_kind=ErrorKind.REMOTE,
            http_status=200,
        )
    if now >= poll_until:
        return _timed_out(now, submitted_at, answer.status, answer.progress, 200)
    elapsed = (now - submitted_at).total_seconds()
    wait = pacing.next_in(polls, elapsed, percent_of(answer.progress))
    return PollOutcome(
        JobStatus.SUBMITTED,
        answer.status,
        answer.progress,
        http_status=200,
        next_poll_at=min(now + timedelta(seconds=wait), poll_until),
        changed=answer.status != last_status,
    )


def _after_error(
    error: ProviderError,
    now: datetime,
    poll_until: datetime,
    polls: int,
    last_status: str | None,
    last_progress: str | None,
    pacing: Pacing,
) -> PollOutcome:
    message = f"poll: {error.message}"
    pause_reason = None
    if error.kind in PAUSING:
        pause_reason = f"{error.kind.value}: {error.message} (a poll was refused)"
    wait = pacing.next_in(polls, 0.0, None)
    return PollOutcome(
        JobStatus.SUBMITTED,
        last_status,
        last_progress,
        error=message,
        error_kind=error.kind,
        http_status=error.http_status,
        next_poll_at=min(now + timedelta(seconds=wait), poll_until),
        pause_reason=pause_reason,
    )


def _timed_out(
    now: datetime,
    submitted_at: datetime,
    remote_status: str | None,
    progress: str | None,
    http_status: int | None,
    poll_error: str | None = None,
) -> PollOutcome:
    last = " ".join(part for part in (remote_status, progress) if part) or "no answer yet"
    if poll_error:
        last += f"; the last poll failed: {poll_error}"
    minutes = (now - submitted_at).total_seconds() / 60
    return PollOutcome(
        JobStatus.FAILED,
        remote_status,
        progress,
        http_status=http_status,
        error=f"the task did not finish after {minutes:.0f} min (last seen: {last}); "
        "`veo-batch rerun NAME --kind timeout` polls it again without paying for a new task",
        error_kind=ErrorKind.TIMEOUT,
    )
