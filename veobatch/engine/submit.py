"""Submit one row: claim it (if its price fits), make its images ready, wait for a rate
slot, POST, record.

The plain function behind both the embedded runner's threads and the Celery task. The claim
(with its lease) is committed before the POST, so a worker killed mid-request leaves a row in
`submitting` whose lease runs out: the scheduler then marks it `in_doubt`, never resends it.
Local images are read (and checked against their hash) or uploaded after the claim and before
the rate slot: a row whose picture changed fails without spending a request.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from datetime import timedelta
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.engine import Engine

from veobatch.engine import events, spending, transitions
from veobatch.engine.poll_rules import Pacing
from veobatch.engine.rate_limit import RateLimiter, limited
from veobatch.engine.spend_rules import Spending
from veobatch.engine.submit_rules import (
    MAX_ATTEMPTS,
    Outcome,
    after_error,
    after_image_error,
    mode_refused,
    refuses_image_mode,
    succeeded,
)
from veobatch.errors import ImageError, LimiterUnavailable, ProviderError
from veobatch.images.sending import ImageSender
from veobatch.provider.client import ProviderClient, job_payload
from veobatch.states import BatchState

LONG_WAIT: Final = 10.0  # seconds of waiting for a rate slot past which the lease is moved


def payload_of(job: sa.Row[Any], images: list[str]) -> dict[str, Any]:
    extra: Mapping[str, Any] | None = job.extra
    return job_payload(job.prompt, job.model, images, job.aspect_ratio, job.enhance_prompt, extra)


def sleep(seconds: float) -> bool:
    """The default `wait`: sleep, then go on."""
    time.sleep(seconds)
    return True


def submit_one(
    engine: Engine,
    client: ProviderClient,
    limiter: RateLimiter,
    job_id: int,
    *,
    images: ImageSender,
    prices: Spending,
    lease: timedelta,
    pacing: Pacing,
    max_attempts: int = MAX_ATTEMPTS,
    wait: Callable[[float], bool] = sleep,
    write_lock: AbstractContextManager[object] | None = None,
) -> Outcome | None:
    """The outcome of submitting row `job_id`, or None if it was not ours to submit.

    `wait(seconds)` waits for the rate slot; if it returns False (the process is stopping)
    the row goes back to pending unsent. `images` turns its stored images into what the
    relay takes (VEO_IMAGE_MODE). `prices` decide whether the claim fits the batch's budget
    and the day's cap, in the claim's transaction (else the batch pauses). `write_lock`
    serializes the transactions of threads that share one SQLite file (SQLite has one writer;
    without it they would queue up in its busy handler, which sleeps milliseconds at a time).
    """
    lock = write_lock or nullcontext()
    with engine.connect() as conn:  # one connection for the claim and the outcome
        job = _claim(conn, lock, job_id, lease, prices)
        if job is None:
            return None
        try:
            sent, stored = images.images_for(job.images)
        except ImageError as exc:  # nothing was sent
            outcome = after_image_error(
                exc.message, exc.scope, job.attempts + 1, max_attempts=max_attempts
            )
            with lock, conn.begin():
                transitions.record(conn, job, outcome, transitions.utcnow(), pacing)
            events.submitted(conn, job, outcome)
            return outcome
        payload = payload_of(job, sent)
        del sent  # inline images can be megabytes: only the payload keeps them

        try:
            leased = _leased(conn, lock, job_id, lease, wait)
            answer = limited(limiter, leased, lambda: client.submit(payload), kind="submit")
        except LimiterUnavailable:  # Redis is gone: nothing was sent, the row goes back
            answer = None
        if answer is None:  # stopping, or no slot to be had: nothing was sent
            with lock, conn.begin():
                transitions.unclaim(conn, job_id, transitions.utcnow())
            return None
        if isinstance(answer, ProviderError):
            outcome = after_error(
                answer.kind,
                answer.message,
                answer.http_status,
                job.attempts + 1,
                max_attempts=max_attempts,
            )
        else:
            outcome = succeeded(answer)
        with lock, conn.begin():
            if (
                refuses_image_mode(outcome)
                and any(not isinstance(entry, str) for entry in job.images)
                and not transitions.has_tasks(conn, job.batch_id)
            ):
                outcome = mode_refused(outcome, images.mode)
            transitions.record(conn, job, outcome, transitions.utcnow(), pacing, stored)
        events.submitted(conn, job, outcome)
    return outcome


def _claim(
    conn: Connection,
    lock: AbstractContextManager[object],
    job_id: int,
    lease: timedelta,
    prices: Spending,
) -> sa.Row[Any] | None:
    """The row claimed (committed, with its lease and its price held), or None: not ours
    (a duplicate message, the row moved on), its batch not active, or its price does not fit
    (the batch is then paused, and that is logged)."""
    with lock, conn.begin():
        job = transitions.claim(conn, job_id, transitions.utcnow(), lease)
        if job is None:
            return None
        if transitions.batch_state(conn, job.batch_id) != BatchState.ACTIVE:
            transitions.unclaim(conn, job_id, transitions.utcnow())
            return None
        refused = spending.reserve(conn, job, transitions.utcnow(), prices)
        if refused is None:
            return job
        transitions.unclaim(conn, job_id, transitions.utcnow())  # nothing is held
        newly = transitions.pause(conn, job.batch_id, refused, transitions.utcnow())
    if newly:
        events.paused(conn, job.batch_id, refused)
    return None


def _leased(
    conn: Connection,
    lock: AbstractContextManager[object],
    job_id: int,
    lease: timedelta,
    wait: Callable[[float], bool],
) -> Callable[[float], bool]:
    """`wait`, with the row's lease moved first when the wait is long (many processes, a
    cool-down): the lease must outlast the wait and the request, or a row never sent would
    look lost (`in_doubt`). False (give up) if the row is no longer ours."""

    def waiting(seconds: float) -> bool:
        if seconds > LONG_WAIT:
            until = transitions.utcnow() + timedelta(seconds=seconds) + lease
            with lock, conn.begin():
                if not transitions.extend_lease(conn, job_id, until):
                    return False
        return wait(seconds)

    return waiting
