"""Poll a group of submitted rows: one rate slot and one GET per row, each outcome recorded.

Each task is asked about through the account that made it (its key, its poll rate); a row
whose account is no longer in VEO_ACCOUNTS is not polled anywhere.

The plain function behind the embedded runner's threads and the Celery task `veobatch.poll`.
Rows come in groups (the scheduler claimed them by moving their next poll ahead), so ten
thousand tasks in flight are a few hundred messages a minute, not ten thousand.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from datetime import timedelta
from functools import partial

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from veobatch.accounts.spec import DEFAULT
from veobatch.errors import Abandoned, LimiterUnavailable
from veobatch.lifecycle import events, transitions
from veobatch.lifecycle.poll_rules import PollOutcome, after_poll, fallback_for
from veobatch.lifecycle.rate_limit import limited
from veobatch.lifecycle.sender import Sender
from veobatch.lifecycle.submit import sleep
from veobatch.states import JobStatus
from veobatch.store.queries import utc
from veobatch.store.tables import Job


def poll_rows(
    engine: Engine,
    sender: Sender,
    job_ids: Sequence[int],
    *,
    wait: Callable[[float], bool] = sleep,
    write_lock: AbstractContextManager[object] | None = None,
) -> list[PollOutcome]:
    """Poll each row still `submitted`; the outcomes. Stops early if `wait` says stop, or a
    poll was abandoned (the process is stopping): the rows not polled are handed back, due
    again at once (for another process to poll)."""
    with engine.connect() as conn:
        jobs = conn.execute(
            sa.select(Job).where(Job.id.in_(list(job_ids)), Job.status == JobStatus.SUBMITTED)
        ).all()
    deadline = timedelta(seconds=sender.pacing.deadline)  # a task's, when its row has none
    outcomes = []
    for index, job in enumerate(jobs):
        account = sender.account(job.account or DEFAULT)
        if account is None:  # its account left the file: asked nowhere else (`Rules.accounts`)
            continue
        try:
            query = partial(account.client.query, job.task_id)
            answer = limited(account.poll_limiter, wait, query, kind="poll")
        except (LimiterUnavailable, Abandoned):  # Redis is gone, or stopping: hand the rest back
            answer = None
        if answer is None:  # stopping
            left = [row.id for row in jobs[index:]]
            with write_lock or nullcontext(), engine.begin() as conn:
                transitions.hand_back_polls(conn, left, transitions.utcnow())
            break
        now = transitions.utcnow()
        submitted_at = utc(job.submitted_at) or now
        outcome = after_poll(
            answer,
            now=now,
            submitted_at=submitted_at,
            poll_until=utc(job.poll_until) or submitted_at + deadline,
            polls=job.polls + 1,
            last_status=job.remote_status,
            last_progress=job.progress,
            pacing=sender.pacing,
            filtered_charged=account.filtered_charged,
            price=account.spending.price_of(job.model),
            fallback=fallback_for(account.on_filtered, job.model, job.enhance_prompt),
        )
        with write_lock or nullcontext(), engine.connect() as conn:
            with conn.begin():
                transitions.polled(conn, job, outcome, now)
            events.polled(conn, job, outcome)
        outcomes.append(outcome)
    return outcomes
