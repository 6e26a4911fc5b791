"""What happens to a row after one submission attempt: pure decisions, no I/O.

    pending → queued → submitting → submitted | failed | in_doubt | pending (retry later)

- a task_id: `submitted`;
- `network`, `rate_limited`, `server` (nothing was created): back to `pending` after a
  backoff with jitter, until `max_attempts`; then `failed`;
- `ambiguous` (a task may exist and be billed), and `bad_answer` (a 200 without a usable
  task id: one may exist): `in_doubt`, never sent again on its own;
- `invalid`: `failed`;
- `auth`, `quota`: the account is paused and the row goes back to `pending` without counting
  an attempt: every other row would fail the same way there (it goes on through another
  account; with none left, its batch pauses at the next claim, `accounts.routing`);
- `image` (a local image could not be sent; nothing was): `failed` when the file changed or
  vanished since the load, retried when the bucket did not answer, and the batch paused when
  a setting is wrong. A 400 about the images of the batch's first rows pauses it too: the
  relay does not take images sent the way VEO_IMAGE_MODE sends them.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Final

from veobatch.lifecycle.backoff import SUBMIT_RETRY
from veobatch.settings import IMAGE_MODES
from veobatch.states import ErrorKind, JobStatus

MAX_ATTEMPTS: Final = 5

RETRIED: Final = frozenset({ErrorKind.NETWORK, ErrorKind.RATE_LIMITED, ErrorKind.SERVER})
PAUSING: Final = frozenset({ErrorKind.AUTH, ErrorKind.QUOTA})
# How relays' 400s speak of the images they refuse (English and Chinese).
_ABOUT_IMAGES: Final = re.compile(r"image|img|picture|url|base64|图片|图像|链接|格式", re.I)


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
    account_pause: str | None = None  # pause the account that answered, with this reason


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
    key: str = "VEO_API_KEY",
) -> Outcome:
    """The outcome of attempt number `attempts` (counting this one) that failed with `kind`;
    `key` names where the account's key comes from (for the advice of a refused key)."""
    if kind in PAUSING:
        advice = f"fix {key}" if kind is ErrorKind.AUTH else "top up the account's balance"
        return Outcome(
            JobStatus.PENDING,
            error=message,
            error_kind=kind,
            http_status=http_status,
            counts_as_attempt=False,
            account_pause=f"{kind.value}: {message} ({advice})",
        )
    if kind in (ErrorKind.AMBIGUOUS, ErrorKind.BAD_ANSWER):  # (a 200 with no usable task id)
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


def after_image_error(
    message: str, scope: str, attempts: int, *, max_attempts: int = MAX_ATTEMPTS
) -> Outcome:
    """The outcome of a row whose local image could not be sent (see `ImageError.scope`)."""
    kind = ErrorKind.IMAGE
    if scope == "batch":
        return Outcome(
            JobStatus.PENDING,
            error=message,
            error_kind=kind,
            counts_as_attempt=False,
            pause_reason=f"image: {message}",
        )
    if scope == "retry" and attempts < max_attempts:
        return Outcome(
            JobStatus.PENDING, error=message, error_kind=kind, retry_in=SUBMIT_RETRY.delay(attempts)
        )
    if scope == "retry":
        message = f"{message} (gave up after {attempts} attempts)"
    return Outcome(JobStatus.FAILED, error=message, error_kind=kind)


def refuses_image_mode(outcome: Outcome) -> bool:
    """Whether a failed submission of local images reads like the relay refusing the way
    they were sent (a 400 that speaks of images), rather than this row being wrong."""
    return (
        outcome.error_kind is ErrorKind.INVALID
        and outcome.http_status == 400
        and _ABOUT_IMAGES.search(outcome.error or "") is not None
    )


def mode_refused(outcome: Outcome, mode: str) -> Outcome:
    """`outcome` turned into a pause of the batch: the row goes back unsent-counted."""
    others = " or ".join(m for m in IMAGE_MODES if m != mode)
    return Outcome(
        JobStatus.PENDING,
        error=outcome.error,
        error_kind=ErrorKind.INVALID,
        http_status=outcome.http_status,
        counts_as_attempt=False,
        pause_reason=(
            f"image: the relay refused images sent as {mode} ({outcome.error}); this relay may "
            f"take them another way: set VEO_IMAGE_MODE to {others}, then resume"
        ),
    )


def unrecordable(task_id_shown: str, reason: str, kept_in: str) -> Outcome:
    """The outcome of a row whose task id the relay gave but the database would not take: in
    doubt (the task exists, its id is kept in file `kept_in`), never resent on its own."""
    return Outcome(
        JobStatus.IN_DOUBT,
        error=(
            f"the relay created task {task_id_shown}, but the database refused it ({reason}); "
            f"the answer is kept in {kept_in}: not resent"
        ),
        error_kind=ErrorKind.AMBIGUOUS,
        http_status=200,
    )
