"""Submit a group of rows: claim them (where their prices fit), make their images ready, book
their rate slots, POST them at once, record what came back.

The plain function behind both the embedded runner's threads and the Celery task. Rows go in
waves of `fanout.size`: a wave is claimed in one conditional statement (with its leases and
prices) and committed before any of its POSTs, its slots are booked in one reservation, its
POSTs go out concurrently, each at its slot, and its outcomes are recorded in one transaction.
A worker killed mid-wave leaves that wave's rows `submitting` until their lease runs out: the
scheduler then marks them `in_doubt`, never resends them; the group's later waves were never
claimed, still `queued`, and go to another worker. Local images are read (and checked against
their hash) or uploaded after the claim and before the slots: a row whose picture changed fails
without spending a request.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any, Final, NamedTuple

import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.engine import Engine

from veobatch.engine import events, spending, transitions
from veobatch.engine.fanout import Fanout, Running
from veobatch.engine.poll_rules import Pacing
from veobatch.engine.rate_limit import HALTING, RateLimiter, start_in_slots
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

LONG_WAIT: Final = 10.0  # seconds of waiting for a rate slot past which the lease is moved


def payload_of(job: sa.Row[Any], images: list[str]) -> dict[str, Any]:
    extra: Mapping[str, Any] | None = job.extra
    return job_payload(job.prompt, job.model, images, job.aspect_ratio, job.enhance_prompt, extra)


def sleep(seconds: float) -> bool:
    """The default `wait`: sleep, then go on."""
    if seconds > 0:  # (a sleep of 0 would still give up the GIL to every other thread)
        time.sleep(seconds)
    return True


def submit_rows(
    engine: Engine,
    client: ProviderClient,
    limiter: RateLimiter,
    job_ids: Sequence[int],
    *,
    fanout: Fanout,
    images: ImageSender,
    prices: Spending,
    lease: timedelta,
    pacing: Pacing,
    max_attempts: int = MAX_ATTEMPTS,
    wait: Callable[[float], bool] = sleep,
    write_lock: AbstractContextManager[object] | None = None,
) -> list[Outcome]:
    """The outcomes of submitting rows `job_ids` (none for a row that was not ours to submit:
    a duplicate message, a row that moved on, a batch not active, a price that does not fit).

    `wait(seconds)` waits for a rate slot; if it returns False (the process is stopping) the
    row goes back to pending unsent, and no later wave is claimed. `images` turns stored
    images into what the relay takes (VEO_IMAGE_MODE). `prices` decide whether the claims fit
    the batch's budget and the day's cap, in the claim's transaction (else the batch pauses).
    `write_lock` serializes the transactions of threads that share one SQLite file (SQLite has
    one writer; without it they would queue up in its busy handler, which sleeps milliseconds
    at a time).
    """
    wave = _Wave(
        engine,
        client,
        limiter,
        fanout=fanout,
        images=images,
        prices=prices,
        lease=lease,
        pacing=pacing,
        max_attempts=max_attempts,
        wait=wait,
        lock=write_lock or nullcontext(),
    )
    outcomes: list[Outcome] = []
    with engine.connect() as conn:  # one connection for the group's claims and outcomes
        if len(job_ids) > fanout.size:  # later waves wait: held, in case this process dies
            with wave.lock, conn.begin():
                transitions.hold(conn, job_ids[fanout.size :], transitions.utcnow(), lease)
        flying: _Flight | None = None  # the wave whose POSTs are out
        try:
            for start in range(0, len(job_ids), fanout.size):
                if start and not wait(0.0):  # stopping: the rest stay queued for another process
                    break
                landed = flying.answers() if flying is not None else None
                if landed is not None and _halts(landed):  # a 429, a refused key or balance
                    break
                # Claimed only once the last wave's answers are in (a process killed while
                # they are out leaves this wave unclaimed), sent while they are recorded.
                claimed = wave.claim(conn, job_ids[start : start + fanout.size])
                flying, previous = wave.send(conn, claimed), flying
                if previous is not None and landed is not None:
                    outcomes += wave.record(conn, previous.claimed, landed)
            if flying is not None:
                last, flying = flying, None
                outcomes += wave.record(conn, last.claimed, last.answers())
        finally:
            if flying is not None:  # (an error): nothing of ours still sends once we return
                flying.running.wait()
    return outcomes


def _halts(sent: list[_Sent]) -> bool:
    """Whether an answer of the wave is one every later request would get too."""
    return any(isinstance(s.answer, ProviderError) and s.answer.kind in HALTING for s in sent)


@dataclass(frozen=True, slots=True)
class _Ready:
    """A claimed row about to be sent: its body, and its image entries where uploaded."""

    job: sa.Row[Any]
    payload: dict[str, Any]
    stored: list[Any] | None


class _Sent(NamedTuple):
    """A row's answer (None: not sent) and when it came."""

    row: _Ready
    answer: str | ProviderError | None
    at: datetime | None


@dataclass(frozen=True, slots=True)
class _Claimed:
    """A wave as claimed: the rows to send, the attempts made already (an image that could
    not be had), the ids of the rows holding a price."""

    ready: list[_Ready]
    attempts: list[transitions.Attempted]
    holding: set[int]


@dataclass(frozen=True, slots=True)
class _Flight:
    """A wave whose POSTs were started: `answers()` waits for them."""

    claimed: _Claimed
    rows: list[_Ready]  # those sent (or going), in the order of the answers
    answered_at: list[datetime | None]  # None: not answered, or with no answer (yet)
    running: Running[str | ProviderError | None]

    def answers(self) -> list[_Sent]:
        """Each row's answer (None: not sent) and when it came, once all have ended."""
        answers = self.running.results()
        if not answers and self.rows:  # the limiter could not be asked: none was sent
            return [_Sent(row, None, None) for row in self.rows]
        return [
            _Sent(row, answer, at)
            for row, answer, at in zip(self.rows, answers, self.answered_at, strict=True)
        ]


@dataclass(frozen=True)
class _Wave:
    """What submitting one wave needs (see `submit_rows`)."""

    engine: Engine
    client: ProviderClient
    limiter: RateLimiter
    fanout: Fanout
    images: ImageSender
    prices: Spending
    lease: timedelta
    pacing: Pacing
    max_attempts: int
    wait: Callable[[float], bool]
    lock: AbstractContextManager[object]

    def claim(self, conn: Connection, job_ids: Sequence[int]) -> _Claimed:
        """The rows claimed (committed), their images made ready; a row whose image cannot
        be had is an attempt already (nothing was sent)."""
        claimed, holding = self._claim(conn, job_ids)
        attempts: list[transitions.Attempted] = []
        ready: list[_Ready] = []
        for job in claimed:
            try:
                entries, stored = self.images.images_for(job.images)
            except ImageError as exc:  # nothing was sent
                outcome = after_image_error(
                    exc.message, exc.scope, job.attempts + 1, max_attempts=self.max_attempts
                )
                at = transitions.utcnow()
                attempts.append(transitions.Attempted(job, outcome, at, holds=job.id in holding))
                continue
            ready.append(_Ready(job, payload_of(job, entries), stored))
            del entries  # inline images can be megabytes: only the payload keeps them
        return _Claimed(ready, attempts, holding)

    def record(self, conn: Connection, claimed: _Claimed, sent: list[_Sent]) -> list[Outcome]:
        """The wave's outcomes, recorded in one transaction (a row not sent goes back)."""
        attempts = list(claimed.attempts)
        with self.lock, conn.begin():
            unsent = [s.row.job.id for s in sent if s.answer is None]
            transitions.unclaim(conn, unsent, transitions.utcnow())
            attempts += self._outcomes(conn, sent, claimed.holding)
            transitions.record(conn, attempts, self.pacing)
        for attempt in attempts:
            events.submitted(conn, attempt.job, attempt.outcome)
        return [attempt.outcome for attempt in attempts]

    def _claim(
        self, conn: Connection, job_ids: Sequence[int]
    ) -> tuple[list[sa.Row[Any]], set[int]]:
        """The rows claimed (committed, with their leases and prices held), and the ids of
        those holding a price. A batch whose price does not fit is paused (and that logged),
        its rows back to pending."""
        with self.lock, conn.begin():
            now = transitions.utcnow()
            claimed = transitions.claim_rows(conn, job_ids, now, self.lease)
            if not claimed:
                return [], set()
            going, refused = spending.reserve_rows(conn, claimed, now, self.prices)
            kept = {job.id for job in going}
            transitions.unclaim(conn, [job.id for job in claimed if job.id not in kept], now)
            paused = [(b, why) for b, why in refused if transitions.pause(conn, b, why, now)]
        for batch_id, why in paused:
            events.paused(conn, batch_id, why)
        return going, {job.id for job in going if self.prices.price_of(job.model) is not None}

    def send(self, conn: Connection, claimed: _Claimed) -> _Flight:
        """The wave's POSTs started, each at its slot (booked now); a row taken from us while
        its lease was moved is left out (not ours to record)."""
        ready = claimed.ready
        if not ready:
            return _Flight(claimed, [], [], Running([]))
        try:
            waits = self.limiter.reserve_many(len(ready))
        except LimiterUnavailable:  # Redis is gone: nothing was sent, the rows go back
            return _Flight(claimed, ready, [None] * len(ready), Running.done([]))
        ours = self._leased(conn, [r.job.id for r in ready], max(waits))
        going = [(row, wait) for row, wait in zip(ready, waits, strict=True) if row.job.id in ours]
        answered_at: list[datetime | None] = [None] * len(going)

        def post(index: int) -> str:
            try:
                return self.client.submit(going[index][0].payload)
            finally:
                answered_at[index] = transitions.utcnow()

        running = start_in_slots(
            self.limiter,
            self.fanout,
            self.wait,
            [partial(post, n) for n in range(len(going))],
            [wait for _, wait in going],
            kind="submit",
        )
        return _Flight(claimed, [row for row, _ in going], answered_at, running)

    def _leased(self, conn: Connection, job_ids: list[int], longest: float) -> set[int]:
        """The rows still ours, their leases moved first when the wait is long (many
        processes, a cool-down): a lease must outlast the wait and the request, or a row
        never sent would look lost (`in_doubt`)."""
        if longest <= LONG_WAIT:
            return set(job_ids)
        until = transitions.utcnow() + timedelta(seconds=longest) + self.lease
        with self.lock, conn.begin():
            return transitions.extend_leases(conn, job_ids, until)

    def _outcomes(
        self, conn: Connection, sent: list[_Sent], holding: set[int]
    ) -> list[transitions.Attempted]:
        """What each answer means for its row (in the recording transaction)."""
        with_task = {s.row.job.batch_id for s in sent if isinstance(s.answer, str)}
        attempts = []
        for row, answer, at in sent:
            if answer is None or at is None:
                continue
            job = row.job
            if isinstance(answer, ProviderError):
                outcome = after_error(
                    answer.kind,
                    answer.message,
                    answer.http_status,
                    job.attempts + 1,
                    max_attempts=self.max_attempts,
                )
            else:
                outcome = succeeded(answer)
            if (
                refuses_image_mode(outcome)
                and any(not isinstance(entry, str) for entry in job.images)
                and job.batch_id not in with_task
                and not transitions.has_tasks(conn, job.batch_id)
            ):
                outcome = mode_refused(outcome, self.images.mode)
            attempts.append(
                transitions.Attempted(job, outcome, at, row.stored, holds=job.id in holding)
            )
        return attempts
