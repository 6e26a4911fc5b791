"""Submit a group of rows: claim them (where their prices fit), make their images ready, book
their rate slots, POST them at once, record what came back.

The plain function behind both the embedded runner's threads and the Celery task. Rows go in
waves of `fanout.size`: a wave is claimed in one conditional statement (with its leases and
prices) and committed before any of its POSTs, its slots are booked in one reservation, its
POSTs go out concurrently, each at its slot, and its outcomes are recorded in one transaction
(answers that wait STRAGGLER seconds on a slower one of their wave are recorded without it).
A task id is logged the moment it arrives. A write the database cannot take is retried for
RECORD_PATIENCE seconds, then made row by row; a task id that still cannot be written is kept
on disk (`lifecycle.unrecorded`) and recorded by the next submission of this host. A worker killed
mid-wave leaves that wave's rows `submitting` until their lease runs out: the
scheduler then marks them `in_doubt`, never resends them; the group's later waves were never
claimed, still `queued`, and go to another worker. Local images are read (and checked against
their hash) or uploaded after the claim and before the slots: a row whose picture changed fails
without spending a request.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any, Final, NamedTuple

import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from veobatch.accounts import store as accounts
from veobatch.errors import ImageError, LimiterUnavailable, ProviderError
from veobatch.lifecycle import events, transitions
from veobatch.lifecycle.fanout import Fanout, Running
from veobatch.lifecycle.rate_limit import HALTING, start_in_slots
from veobatch.lifecycle.routes import route_claimed
from veobatch.lifecycle.sender import Account, Sender
from veobatch.lifecycle.submit_rules import (
    Outcome,
    after_error,
    after_image_error,
    mode_refused,
    refuses_image_mode,
    succeeded,
    unrecordable,
)
from veobatch.lifecycle.unrecorded import Answer, recorded_later
from veobatch.provider.dialect import Ask, Request
from veobatch.store import database
from veobatch.visible import shown

LONG_WAIT: Final = 10.0  # seconds of waiting for a rate slot past which the lease is moved
STRAGGLER: Final = 2.0  # seconds answers wait for a slower one of their wave before recording
RECORD_PATIENCE: Final = 30.0  # seconds a write is retried while the database cannot be reached
log = logging.getLogger("veobatch.submit")


def payload_of(job: sa.Row[Any], images: list[str], account: Account) -> Request:
    """Row `job`'s submission to `account`, in its dialect (the model by the name it knows
    it). Raises ImageError for an image the dialect cannot send."""
    extra: Mapping[str, Any] | None = job.extra
    ask = Ask(
        job.prompt,
        job.model,
        account.api_model(job.model),
        images,
        job.aspect_ratio,
        job.enhance_prompt,
        extra,
    )
    return account.client.dialect.request(ask)


def sleep(seconds: float) -> bool:
    """The default `wait`: sleep, then go on."""
    if seconds > 0:  # (a sleep of 0 would still give up the GIL to every other thread)
        time.sleep(seconds)
    return True


def submit_rows(
    engine: Engine,
    sender: Sender,
    job_ids: Sequence[int],
    *,
    fanout: Fanout,
    wait: Callable[[float], bool] = sleep,
    write_lock: AbstractContextManager[object] | None = None,
) -> list[Outcome]:
    """The outcomes of submitting rows `job_ids` with `sender` (none for a row that was not
    ours to submit: a duplicate message, a row that moved on, a batch not active, a price that
    does not fit).

    `fanout` sends a wave's requests at once. `wait(seconds)` waits for a rate slot; if it
    returns False (the process is stopping) the row goes back to pending unsent, and no later
    wave is claimed. `write_lock` serializes the transactions of threads that share one SQLite
    file (SQLite has one writer; without it they would queue up in its busy handler, which
    sleeps milliseconds at a time). The task ids the database could not take are kept in
    `sender.unrecorded`; those it holds are recorded first.
    """
    kept = sender.unrecorded
    wave = _Wave(engine, sender, fanout=fanout, wait=wait, lock=write_lock or nullcontext())
    every_account = set(sender.names)
    outcomes: list[Outcome] = []
    if kept.waiting():
        wave.record_kept()
    with engine.connect() as conn:  # one connection for the group's claims and outcomes
        if len(job_ids) > fanout.size:  # later waves wait: held, in case this process dies
            with wave.lock, conn.begin():
                transitions.hold(conn, job_ids[fanout.size :], transitions.utcnow(), sender.lease)
        flying: _Flight | None = None  # the wave whose POSTs are out
        try:
            for start in range(0, len(job_ids), fanout.size):
                if start and not wait(0.0):  # stopping: the rest stay queued for another process
                    break
                landed = wave.landed(conn, flying, outcomes) if flying is not None else None
                if flying is not None:  # a 429, a refused key or balance: not that account again
                    wave.resting.update(flying.halting)
                    if wave.resting >= every_account:
                        break
                # Claimed only once the last wave's answers are in (a process killed while
                # they are out leaves this wave unclaimed), sent while they are recorded.
                try:
                    claimed = wave.claim_in_turn(conn, job_ids[start : start + fanout.size])
                except BaseException:  # the last wave's answers are written before we give up
                    if flying is not None and landed is not None:
                        last, flying = flying, None
                        outcomes += wave.record(conn, last, landed)
                    raise
                flying, previous = wave.send(conn, claimed), flying
                if previous is not None and landed is not None:
                    outcomes += wave.record(conn, previous, landed)
            if flying is not None:
                last, flying = flying, None
                outcomes += wave.record(conn, last, wave.landed(conn, last, outcomes))
        finally:
            if flying is not None:  # (an error): nothing of ours still sends once we return
                flying.running.wait()
    return outcomes


@dataclass(frozen=True, slots=True)
class _Ready:
    """A claimed row about to be sent: its account, its body, and its image entries where
    uploaded."""

    job: sa.Row[Any]
    account: Account
    payload: Request
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


@dataclass(slots=True)
class _Flight:
    """A wave whose POSTs were started: `arrived()` hands out their answers as they come."""

    claimed: _Claimed
    rows: list[_Ready]  # those sent (or going), in the order of the answers
    answered_at: list[datetime | None]  # None: not answered, or with no answer (yet)
    running: Running[str | ProviderError | None]
    taken: set[int] = field(default_factory=set)  # the rows whose answers were handed out
    # The accounts that answered what every later request to them would get (a 429, a bad key).
    halting: set[str] = field(default_factory=set)
    attempts_taken: bool = False  # the claim's own attempts were handed out

    def arrived(self, patience: float | None) -> tuple[list[_Sent], bool]:
        """The answers that came and were not handed out yet, once every answer is in or
        `patience` seconds have passed (None: until every answer is in); and whether every
        answer is in. A row's answer is None where it was not sent; a request that raised
        what no request should is raised here."""
        if self.rows and not len(self.running):  # the limiter could not be asked: none sent
            fresh = [n for n in range(len(self.rows)) if n not in self.taken]
            self.taken.update(fresh)
            return [_Sent(self.rows[n], None, None) for n in fresh], True
        complete = self.running.wait(patience)
        fresh = [n for n in self.running.ended() if n not in self.taken]
        sent = []
        for n in fresh:
            answer = self.running.result(n)
            self.taken.add(n)
            sent.append(_Sent(self.rows[n], answer, self.answered_at[n]))
            if isinstance(answer, ProviderError) and answer.kind in HALTING:
                self.halting.add(self.rows[n].account.name)
        return sent, complete

    def attempts(self) -> list[transitions.Attempted]:
        """The claim's own attempts (an image that could not be had), handed out once."""
        if self.attempts_taken:
            return []
        self.attempts_taken = True
        return list(self.claimed.attempts)


@dataclass(frozen=True)
class _Wave:
    """What submitting one wave needs (see `submit_rows`)."""

    engine: Engine
    sender: Sender
    fanout: Fanout
    wait: Callable[[float], bool]
    lock: AbstractContextManager[object]
    # Accounts that refused this call's earlier requests as they would every other (a 429,
    # a bad key, an empty balance), not recorded yet: later waves go elsewhere.
    resting: set[str] = field(default_factory=set)

    def claim(self, conn: Connection, job_ids: Sequence[int]) -> _Claimed:
        """The rows claimed (committed), their images made ready; a row whose image cannot
        be had is an attempt already (nothing was sent)."""
        claimed, holding = self._claim(conn, job_ids)
        attempts: list[transitions.Attempted] = []
        ready: list[_Ready] = []
        for job, account in claimed:
            try:
                entries, stored = account.images.images_for(job.images)
                payload = payload_of(job, entries, account)
            except ImageError as exc:  # nothing was sent
                outcome = after_image_error(
                    exc.message, exc.scope, job.attempts + 1, max_attempts=self.sender.max_attempts
                )
                at = transitions.utcnow()
                attempts.append(
                    transitions.Attempted(
                        job, outcome, at, holds=job.id in holding, account=account.name
                    )
                )
                continue
            ready.append(_Ready(job, account, payload, stored))
            del entries  # inline images can be megabytes: only the payload keeps them
        return _Claimed(ready, attempts, holding)

    def claim_in_turn(self, conn: Connection, job_ids: Sequence[int]) -> _Claimed:
        """`claim`, made again while the database cannot take it now (it lost another
        worker's race for a lock, a deadlock; it restarts) for RECORD_PATIENCE seconds: each
        try is a transaction of its own, rolled back whole, so nothing is claimed twice."""
        give_up = time.monotonic() + RECORD_PATIENCE
        delay = 0.1
        while True:
            try:
                return self.claim(conn, job_ids)
            except SQLAlchemyError as exc:
                if not database.unreachable(exc) or time.monotonic() + delay > give_up:
                    raise
                log.warning(
                    "a claim could not be made (%s): trying again in %.1f s",
                    database.said(exc),
                    delay,
                )
            time.sleep(delay)
            delay = min(delay * 2, 5.0)

    def landed(self, conn: Connection, flight: _Flight, outcomes: list[Outcome]) -> list[_Sent]:
        """The wave's answers not recorded yet, once all are in. Answers that waited
        STRAGGLER seconds on a slower one are recorded meanwhile (added to `outcomes`): a
        row that drips its answer holds back no other."""
        while True:
            sent, complete = flight.arrived(STRAGGLER)
            if complete:
                return sent
            if sent:
                outcomes += self.record(conn, flight, sent)

    def record(self, conn: Connection, flight: _Flight, sent: list[_Sent]) -> list[Outcome]:
        """The outcomes of `sent` (and of the claim's own attempts, the first time), recorded
        in one transaction (a row not sent goes back). A write the database cannot take is
        retried, then made row by row (`_one_by_one`)."""
        earlier = flight.attempts()
        holding = flight.claimed.holding
        try:
            attempts = self._retried(conn, partial(self._write, earlier, sent, holding))
        except SQLAlchemyError as exc:
            attempts = self._one_by_one(earlier, sent, holding, exc)
        for attempt in attempts:
            events.submitted(conn, attempt.job, attempt.outcome)
        return [attempt.outcome for attempt in attempts]

    def _write(
        self,
        earlier: list[transitions.Attempted],
        sent: list[_Sent],
        holding: set[int],
        conn: Connection,
    ) -> list[transitions.Attempted]:
        """One transaction: the rows not sent back, the outcomes of the others recorded."""
        with self.lock, conn.begin():
            # The accounts whose rows this changes (a price given back, a failure counted, a
            # pause), locked before any batch's row, in the claim's order.
            accounts.lock(
                conn,
                [s.row.account.name for s in sent if not isinstance(s.answer, str)]
                + [attempt.account for attempt in earlier if attempt.account is not None],
            )
            unsent = [s.row.job.id for s in sent if s.answer is None]
            transitions.unclaim(conn, unsent, transitions.utcnow())
            attempts = earlier + self._outcomes(conn, sent, holding)
            transitions.record(conn, attempts, self.sender.pacing)
        return attempts

    def _retried(
        self,
        conn: Connection | None,
        write: Callable[[Connection], list[transitions.Attempted]],
        patience: float | None = None,
    ) -> list[transitions.Attempted]:
        """`write` on `conn` (None: a new connection), made again on a new connection while
        the database cannot be reached (a restart, a lost connection, a busy file), for
        `patience` seconds (default RECORD_PATIENCE)."""
        give_up = time.monotonic() + (RECORD_PATIENCE if patience is None else patience)
        delay = 0.2
        try:
            if conn is not None:
                return write(conn)
            with self.engine.connect() as fresh:
                return write(fresh)
        except SQLAlchemyError as exc:
            if not database.unreachable(exc):
                raise
            error = exc
        while time.monotonic() + delay <= give_up:
            log.warning(
                "the database could not take a wave's outcomes (%s): trying again in %.1f s",
                database.said(error),
                delay,
            )
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
            try:
                with self.engine.connect() as fresh:
                    return write(fresh)
            except SQLAlchemyError as exc:
                if not database.unreachable(exc):
                    raise
                error = exc
        raise error

    def _one_by_one(
        self,
        earlier: list[transitions.Attempted],
        sent: list[_Sent],
        holding: set[int],
        error: SQLAlchemyError,
    ) -> list[transitions.Attempted]:
        """The wave's outcomes written a row at a time, after the wave's write failed with
        `error`: a value the database refuses spoils no other row. A task id whose row
        cannot be written is kept on disk, and its row marked in doubt where it can be."""
        log.warning(
            "a wave's outcomes could not be written together (%s): row by row", database.said(error)
        )
        recorded: list[transitions.Attempted] = []
        singles: list[tuple[list[transitions.Attempted], list[_Sent]]] = [
            ([attempt], []) for attempt in earlier
        ] + [([], [one]) for one in sent]
        failed: SQLAlchemyError = error
        for own, answer in singles:
            if not database.unreachable(failed):  # (once unreachable, the rest are kept at once)
                try:
                    write = partial(self._write, own, answer, holding)
                    recorded += self._retried(None, write, patience=0.0)
                    continue
                except SQLAlchemyError as exc:
                    failed = exc
            if answer and isinstance(answer[0].answer, str):
                recorded += self._keep(answer[0], failed, holding)
            else:
                rows = [a.job for a in own] + [one.row.job for one in answer]
                log.error(
                    "the outcome of row %s could not be written (%s); it stays claimed until "
                    "its lease runs out",
                    ", ".join(str(job.id) for job in rows),
                    database.said(failed),
                )
        return recorded

    def _keep(
        self, sent: _Sent, error: SQLAlchemyError, holding: set[int]
    ) -> list[transitions.Attempted]:
        """A task id its row could not take, kept on disk: recorded later when the database
        could not be reached; else (a value it refuses) its row becomes in doubt, saying so."""
        job, task_id = sent.row.job, str(sent.answer)
        at = sent.at or transitions.utcnow()
        refused = not database.unreachable(error)
        path = self.sender.unrecorded.keep(
            [Answer.of(job, task_id, at, database.said(error))], refused=refused
        )
        log.error(
            "the relay created task %s for row %s, but it could not be written (%s): kept in %s",
            shown(task_id),
            job.id,
            database.said(error),
            path,
        )
        if not refused:
            return []
        doubt = transitions.Attempted(
            job,
            unrecordable(shown(task_id), database.said(error), str(path)),
            at,
            holds=job.id in holding,
            account=sent.row.account.name,
        )
        try:
            return self._retried(None, partial(self._write, [doubt], [], set()))
        except SQLAlchemyError as exc:
            log.error("row %s could not be marked in doubt either (%s)", job.id, database.said(exc))
            return []

    def record_kept(self) -> None:
        """The task ids kept on disk written to their rows (see `recorded_later`)."""
        self.sender.unrecorded.settle(
            partial(recorded_later, self.engine, self.sender.pacing, self.lock)
        )

    def _claim(
        self, conn: Connection, job_ids: Sequence[int]
    ) -> tuple[list[tuple[sa.Row[Any], Account]], set[int]]:
        """The rows claimed (committed, each with the account it goes through, its lease and
        its price held), and the ids of those holding a price. A batch whose price does not
        fit, or that no account will take, is paused (and that logged), its rows back to
        pending (see `routes.route_claimed`)."""
        with self.lock, conn.begin():
            now = transitions.utcnow()
            claimed = transitions.claim_rows(conn, job_ids, now, self.sender.lease)
            if not claimed:
                return [], set()
            routed = route_claimed(conn, claimed, now, self.sender, resting=self.resting)
        for batch_id, why in routed.paused:
            events.paused(conn, batch_id, why)
        return routed.going, routed.holding

    def send(self, conn: Connection, claimed: _Claimed) -> _Flight:
        """The wave's POSTs started, each at its slot (booked now); a row taken from us while
        its lease was moved is left out (not ours to record)."""
        ready = claimed.ready
        if not ready:
            return _Flight(claimed, [], [], Running([]))
        by_account: dict[str, list[int]] = {}
        for n, row in enumerate(ready):
            by_account.setdefault(row.account.name, []).append(n)
        waits = [0.0] * len(ready)
        try:
            for indexes in by_account.values():
                booked = ready[indexes[0]].account.limiter.reserve_many(len(indexes))
                for n, wait in zip(indexes, booked, strict=True):
                    waits[n] = wait
        except LimiterUnavailable:  # Redis is gone: nothing was sent, the rows go back
            return _Flight(claimed, ready, [None] * len(ready), Running.done([]))
        ours = self._leased(conn, [r.job.id for r in ready], max(waits))
        going = [(row, wait) for row, wait in zip(ready, waits, strict=True) if row.job.id in ours]
        answered_at: list[datetime | None] = [None] * len(going)
        names = {b: events.batch_name(conn, b) for b in {row.job.batch_id for row, _ in going}}

        def post(index: int) -> str:
            row = going[index][0]
            job = row.job
            try:
                task_id = row.account.client.submit(row.payload)
            finally:
                answered_at[index] = transitions.utcnow()
            events.task_arrived(names[job.batch_id], job, task_id, row.account.name)
            return task_id

        running = start_in_slots(
            [row.account.limiter for row, _ in going],
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
        until = transitions.utcnow() + timedelta(seconds=longest) + self.sender.lease
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
                    max_attempts=self.sender.max_attempts,
                    key=row.account.key_from,
                )
            else:
                outcome = succeeded(answer)
            if (
                refuses_image_mode(outcome)
                and any(not isinstance(entry, str) for entry in job.images)
                and job.batch_id not in with_task
                and not transitions.has_tasks(conn, job.batch_id)
            ):
                outcome = mode_refused(outcome, row.account.images.mode)
            attempts.append(
                transitions.Attempted(
                    job, outcome, at, row.stored, holds=job.id in holding, account=row.account.name
                )
            )
        return attempts
