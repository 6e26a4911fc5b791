"""What happens to a row after one submission attempt: pure decisions, no I/O.

    pending → queued → submitting → submitted | failed | in_doubt | pending (retry later)

- a task_id: `submitted`;
- `network`, `rate_limited`, `server` (nothing was created): back to `pending` after a
  backoff with jitter, until `max_attempts`; then `failed`;
- `ambiguous` (a task may exist and be billed): `in_doubt`, never sent again on its own;
- `invalid`, `bad_answer`: `failed`;
- `auth`, `quota`: the batch is paused and the row goes back to `pending` without counting
  an attempt: every other row would fail the same way.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Final

from veobatch.engine.backoff import SUBMIT_RETRY
from veobatch.states import ErrorKind, JobStatus

MAX_ATTEMPTS: Final = 5

RETRIED: Final = frozenset({ErrorKind.NETWORK, ErrorKind.RATE_LIMITED, ErrorKind.SERVER})
PAUSING: Final = frozenset({ErrorKind.AUTH, ErrorKind.QUOTA})


@dataclass(frozen=True, slots=True)
class Outcome:
    """The row's next state after one attempt, and what else to do."""

    status: JobStatus
    task_id: str | None = None
    error: str | None = None
    error_kind: ErrorKind | None = None
    http_status: int | None = None
    retry_in: float | None = None  # seconds before the row may be released again
    counts_as_attempt: bool = True
    pause_reason: str | None = None  # pause the batch with this reason


def succeeded(task_id: str) -> Outcome:
    return Outcome(JobStatus.SUBMITTED, task_id=task_id, http_status=200)


def after_error(
    kind: ErrorKind,
    message: str,
    http_status: int | None,
    attempts: int,
    *,
    max_attempts: int = MAX_ATTEMPTS,
    rng: random.Random | None = None,
) -> Outcome:
    """The outcome of attempt number `attempts` (counting this one) that failed with `kind`."""
    if kind in PAUSING:
        advice = "fix VEO_API_KEY" if kind is ErrorKind.AUTH else "top up the account's balance"
        return Outcome(
            JobStatus.PENDING,
            error=message,
            error_kind=kind,
            http_status=http_status,
            counts_as_attempt=False,
            pause_reason=f"{kind.value}: {message} ({advice})",
        )
    if kind is ErrorKind.AMBIGUOUS:
        error = f"{message}; the provider may have created (and billed) a task: not resent"
        return Outcome(JobStatus.IN_DOUBT, error=error, error_kind=kind, http_status=http_status)
    if kind in RETRIED and attempts < max_attempts:
        return Outcome(
            JobStatus.PENDING,
            error=message,
            error_kind=kind,
            http_status=http_status,
            retry_in=SUBMIT_RETRY.delay(attempts, rng),
        )
    if kind in RETRIED:
        message = f"{message} (gave up after {attempts} attempts)"
    return Outcome(JobStatus.FAILED, error=message, error_kind=kind, http_status=http_status)
