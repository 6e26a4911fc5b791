"""What a submission answered, written to its rows in one statement per wave: the row's
new state, its task, and a line of history per attempt."""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy import Connection

from veobatch.accounts import store as accounts
from veobatch.lifecycle import spending
from veobatch.lifecycle.poll_rules import Pacing, PollOutcome
from veobatch.lifecycle.submit_rules import Outcome
from veobatch.lifecycle.transitions.batches import pause
from veobatch.states import ErrorKind, JobStatus
from veobatch.store import per_row
from veobatch.store.tables import Attempt, Job


@dataclass(frozen=True, slots=True)
class Attempted:
    """One submission attempt of a claimed row, to be recorded: the row as claimed, what came
    of it and when, and (where its images were uploaded) its new image entries."""

    job: sa.Row[Any]
    outcome: Outcome
    at: datetime
    images: list[Any] | None = None
    holds: bool = False  # the claim holds a price (to keep or give back)
    account: str | None = None  # the account it went through (None: it was not sent)


def record(conn: Connection, attempts: Sequence[Attempted], pacing: Pacing) -> None:
    """The outcomes of a group's attempts and their history rows, in the caller's
    transaction: one statement per kind of outcome, one for the history.

    A task_id is recorded even if the row's lease ran out meanwhile (it is a fact about a
    task that exists); any other outcome only applies to a row still `submitting`. A new task
    gets its first poll and its deadline from `pacing`. Held prices are kept where a task
    exists or may, given back otherwise; an outcome that pauses pauses its batch.
    """
    if not attempts:
        return
    shapes: dict[tuple[bool, bool, bool], list[Attempted]] = {}
    for attempt in attempts:
        outcome = attempt.outcome
        shape = (
            outcome.task_id is not None,
            outcome.status in (JobStatus.FAILED, JobStatus.IN_DOUBT),
            attempt.images is not None,
        )
        shapes.setdefault(shape, []).append(attempt)
    for (has_task, finished, images), group in shapes.items():
        per_row.execute(
            conn,
            functools.partial(_recording, has_task, finished, images),
            [_recorded(a, pacing) for a in group],
            key="row_id",
        )
    per_row.execute(conn, _history_of, [_attempt_line(a) for a in attempts])
    kept = (JobStatus.SUBMITTED, JobStatus.IN_DOUBT)
    holding = [a for a in attempts if a.holds]
    spending.settle_kept(conn, [a.job.id for a in holding if a.outcome.status in kept])
    for attempt in holding:
        if attempt.outcome.status not in kept:
            spending.settle(conn, attempt.job.id, kept=False)
    for attempt in attempts:
        if attempt.outcome.pause_reason is not None:
            pause(conn, attempt.job.batch_id, attempt.outcome.pause_reason, attempt.at)
    _accounts_after(conn, attempts)


# What an answer says of the account itself (it is down, or overwhelmed): a strike.
_TROUBLE: Final = frozenset({ErrorKind.SERVER, ErrorKind.NETWORK, ErrorKind.AMBIGUOUS})


def _accounts_after(conn: Connection, attempts: Sequence[Attempted]) -> None:
    """What the answers say of their accounts: a refused key or an empty balance pauses the
    account; tasks made clear its strikes, failures of its own add to them (and enough in a
    row cool it down); its last error is kept (see `accounts.store`)."""
    answers: dict[str, accounts.Answers] = {}
    at = max(attempt.at for attempt in attempts)
    for attempt in attempts:
        if attempt.account is None:
            continue
        outcome = attempt.outcome
        seen = answers.setdefault(attempt.account, accounts.Answers())
        if outcome.task_id is not None:
            seen.tasks += 1
        elif outcome.error_kind is not None and outcome.error is not None:
            said = f"{outcome.error_kind.value}: {outcome.error}"
            if outcome.error_kind in _TROUBLE:
                seen.failures += 1
                seen.last_error = said
            elif outcome.error_kind is ErrorKind.RATE_LIMITED:
                seen.last_error = said
        if outcome.account_pause is not None and accounts.pause(
            conn, attempt.account, outcome.account_pause, attempt.at
        ):
            log.warning("account %s paused: %s", attempt.account, outcome.account_pause)
    accounts.answered(conn, answers, at)


log = logging.getLogger("veobatch.accounts")

# The fields of a recorded outcome, bound per row (see `_recorded`).
_RECORDED: Final[per_row.Fields] = {
    "row_id": Job.id.type,
    "new_status": Job.status.type,
    "new_error": Job.error.type,
    "new_error_kind": Job.error_kind.type,
    "new_http_status": Job.http_status.type,
    "at": Job.updated_at.type,
    "new_next_attempt_at": Job.next_attempt_at.type,
    "added": Job.attempts.type,
}
_RECORDED_TASK: Final[per_row.Fields] = {
    "new_task_id": Job.task_id.type,
    "first_poll": Job.next_poll_at.type,
    "deadline": Job.poll_until.type,
}
_RECORDED_IMAGES: Final[per_row.Fields] = {"new_images": Job.images.type}
_HISTORY_FIELDS: Final[per_row.Fields] = {
    "job_id": Attempt.job_id.type,
    "action": Attempt.action.type,
    "at": Attempt.at.type,
    "http_status": Attempt.http_status.type,
    "task_id": Attempt.task_id.type,
    "remote_status": Attempt.remote_status.type,
    "error": Attempt.error.type,
    "error_kind": Attempt.error_kind.type,
    "account": Attempt.account.type,
}


def _recorded_fields(has_task: bool, images: bool) -> per_row.Fields:
    return {
        **_RECORDED,
        **(_RECORDED_TASK if has_task else {}),
        **(_RECORDED_IMAGES if images else {}),
    }


@functools.cache
def _recording(has_task: bool, finished: bool, images: bool, together: bool) -> sa.Update:
    """The UPDATE of one kind of outcome, its values given per row (see `_recorded`)."""
    row = per_row.columns(_recorded_fields(has_task, images), together)
    expected = Job.status == JobStatus.SUBMITTING  # (no IN: executemany cannot expand one)
    if has_task:
        expected = sa.or_(expected, Job.status == JobStatus.IN_DOUBT)
    values: dict[str, Any] = {
        "status": row["new_status"],
        "error": row["new_error"],
        "error_kind": row["new_error_kind"],
        "http_status": row["new_http_status"],
        "lease_until": None,
        "updated_at": row["at"],
        "next_attempt_at": row["new_next_attempt_at"],
        "attempts": Job.attempts + row["added"],
    }
    if has_task:
        values.update(
            task_id=row["new_task_id"],
            submitted_at=row["at"],
            polls=0,
            next_poll_at=row["first_poll"],
            poll_until=row["deadline"],
        )
    if finished:
        values["finished_at"] = row["at"]
    elif has_task:  # (a row in doubt whose answer came after all is not finished)
        values["finished_at"] = None
    if images:
        values["images"] = row["new_images"]
    found = per_row.matching(Job.id.expression, row["row_id"], "row_id", together)
    return sa.update(Job).where(found, expected).values(**values)


@functools.cache
def _history_of(together: bool) -> sa.Insert:
    """The INSERT of a group's history lines (see `_attempt_line`)."""
    if not together:
        return sa.insert(Attempt)
    row = per_row.columns(_HISTORY_FIELDS, together)
    return sa.insert(Attempt).from_select(list(row), sa.select(*row.values()))


def _recorded(attempt: Attempted, pacing: Pacing) -> dict[str, Any]:
    outcome, at = attempt.outcome, attempt.at
    retry = at + timedelta(seconds=outcome.retry_in) if outcome.retry_in else None
    params: dict[str, Any] = {
        "row_id": attempt.job.id,
        "new_status": outcome.status,
        "new_error": outcome.error,
        "new_error_kind": outcome.error_kind,
        "new_http_status": outcome.http_status,
        "at": at,
        "new_next_attempt_at": retry,
        "added": 1 if outcome.counts_as_attempt else 0,
    }
    if outcome.task_id is not None:
        params.update(
            new_task_id=outcome.task_id,
            first_poll=at + timedelta(seconds=pacing.delay),
            deadline=at + timedelta(seconds=pacing.deadline),
        )
    if attempt.images is not None:
        params["new_images"] = attempt.images
    return params


def _attempt_line(attempt: Attempted) -> dict[str, Any]:
    outcome = attempt.outcome
    return {
        "job_id": attempt.job.id,
        "action": "submit",
        "at": attempt.at,
        "http_status": outcome.http_status,
        "task_id": outcome.task_id,
        "remote_status": None,
        "error": outcome.error,
        "error_kind": outcome.error_kind,
        "account": attempt.account,
    }


def history(
    conn: Connection,
    job_id: int,
    action: str,
    now: datetime,
    task_id: str | None,
    outcome: Outcome | PollOutcome,
    remote_status: str | None = None,
    account: str | None = None,
) -> None:
    """A line of the row's history: what was tried, when, through which account, and what
    came of it."""
    conn.execute(
        sa.insert(Attempt).values(
            job_id=job_id,
            action=action,
            at=now,
            http_status=outcome.http_status,
            task_id=task_id,
            remote_status=remote_status,
            error=outcome.error,
            error_kind=outcome.error_kind,
            account=account,
        )
    )
