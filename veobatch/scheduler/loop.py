"""The scheduler: release rows to the workers as fast as they can be sent, and nothing lost.

Each tick, while it holds the leader lock in Redis (a second scheduler started by mistake
waits; the row claims would keep it harmless anyway), it asks `lifecycle.due` what is due:
rows in doubt once their lease ran out, queued rows whose message is gone (a Redis restart,
FLUSHALL) back to pending, pending rows released up to `depth` queued at once (never a million
messages in Redis) and never more than `max_in_flight` out, due polls (about `depth` waiting),
due downloads (about twenty waiting), batches that are over. What it tells `due` comes from
Redis: how many rows the submit messages waiting or being worked on name (the database knows
how many rows are queued; a shortfall means lost messages), how many polls and downloads wait.
It then sends what is due as messages: `submit_group` rows a submit message, `poll_group` rows
a poll message, a download each.

A round that sent messages is followed by the next one after BUSY_TICK, one that found rows
waiting in the queue after QUEUED_TICK, an idle one after `tick`: the workers never wait for
rows, and an idle deployment costs a query a second. The
queue is topped up once a quarter of it has gone (a few large rounds a second while rows
flow, not twenty small ones).

Webhook calls (a batch finished or paused) go out from a thread of their own, so a slow or
failing receiver never holds up a tick.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import threading
import uuid
from datetime import timedelta
from typing import Any, Final

import redis
from celery import Celery
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from veobatch import heartbeat
from veobatch.heartbeat import LOCK_KEY
from veobatch.lifecycle import transitions, webhooks
from veobatch.lifecycle.due import GRACE, Due, Queue, Rules, Wanted, due_work
from veobatch.lifecycle.poll_rules import claim_for
from veobatch.process import poll_group, queue_depth, submit_group
from veobatch.scheduler.metrics import (
    LEASES_EXPIRED,
    MESSAGES_RESENT,
    QUEUE_MESSAGES,
    SCHEDULER_LEADER,
    SCHEDULER_TICKS,
)
from veobatch.settings import Secret, Settings
from veobatch.worker.names import (
    DOWNLOAD_QUEUE,
    DOWNLOAD_TASK,
    POLL_QUEUE,
    POLL_TASK,
    SUBMIT_QUEUE,
    SUBMIT_TASK,
)

log = logging.getLogger("veobatch.scheduler")
# kombu's Redis transport keeps a list per queue, and a hash of the messages delivered but
# not acknowledged (of every queue).
UNACKED: Final = "unacked"
DOWNLOADS_WAITING: Final = 20  # download messages kept waiting for the workers
# Seconds to the next round after one that sent messages: while rows flow, the queue is
# topped up as soon as the workers drain it (at `tick` it would run dry between rounds).
BUSY_TICK: Final = 0.05
QUEUED_TICK: Final = 0.5  # seconds between rounds while rows wait in the queue

# Refresh the lock if it is still ours (KEYS[1] lock; ARGV[1] token, ARGV[2] ttl ms).
_HOLD: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) and 1 or 0
"""


class Scheduler:
    def __init__(
        self,
        engine: Engine,
        broker: redis.Redis,
        app: Celery,
        *,
        depth: int,
        tick: float,
        grace: timedelta,
        busy_tick: float = BUSY_TICK,
        submit_group: int,
        poll_group: int,
        poll_claim: timedelta,
        max_in_flight: int | None = None,
        downloads: bool = False,
        webhook_secret: Secret | None = None,
        webhook_allow_private: bool = False,
    ) -> None:
        self.engine = engine
        self.broker = broker
        self.app = app
        self.depth = depth
        self.tick = tick
        self.busy_tick = min(busy_tick, tick)  # after a round that sent messages
        self.rules = Rules(poll_claim, max_in_flight, grace)  # see `lifecycle.due`
        self.submit_group = submit_group
        self.poll_group = poll_group
        self.downloads = downloads
        self.webhook_secret = webhook_secret
        self.webhook_allow_private = webhook_allow_private
        self._leading = threading.Event()
        self._pause = tick  # until the next round: sooner while rows flow (see `_paced`)
        self._token = uuid.uuid4().hex
        self._hold = broker.register_script(_HOLD)

    @classmethod
    def for_settings(
        cls,
        settings: Settings,
        engine: Engine,
        broker: redis.Redis,
        app: Celery,
        *,
        tick: float,
        depth: int | None = None,
    ) -> Scheduler:
        """The scheduler the settings describe (`depth`: ten seconds at VEO_RATE unless
        given)."""
        depth = depth or queue_depth(settings.rate)
        polls = settings.poll_rate or settings.rate
        return cls(
            engine,
            broker,
            app,
            depth=depth,
            tick=tick,
            grace=GRACE,
            submit_group=submit_group(settings.rate),
            poll_group=poll_group(polls),
            poll_claim=claim_for(polls, depth),
            max_in_flight=settings.max_in_flight,
            downloads=settings.download_dir is not None,
            webhook_secret=settings.webhook_secret,
            webhook_allow_private=settings.webhook_allow_private,
        )

    def run(self, stop: threading.Event) -> None:
        """Rounds until `stop`; Redis or the database gone for a while is waited out (each
        failed round is logged and tried again), not a reason to exit."""
        calls = threading.Thread(
            target=self._call_webhooks, args=(stop,), daemon=True, name="veo-batch-webhooks"
        )
        calls.start()
        while not stop.is_set():
            try:
                leading = self._round()
            except (redis.RedisError, SQLAlchemyError) as exc:
                leading, self._pause = False, self.tick
                self._leading.clear()
                SCHEDULER_LEADER.set(0)
                log.warning("round failed (%s); trying again", _first_line(exc))
            stop.wait(self._pause if leading else self.tick)
        SCHEDULER_LEADER.set(0)
        with contextlib.suppress(redis.RedisError):
            heartbeat.forget(self.broker, "scheduler")
            if self.broker.get(LOCK_KEY) == self._token.encode():
                self.broker.delete(LOCK_KEY)  # let another scheduler take over at once
                log.info("scheduler stopped; the leader lock is free")
        calls.join()

    def _round(self) -> bool:
        """Lead (if the lock can be had) and tick once; whether this scheduler leads."""
        leading = self.lead()
        SCHEDULER_LEADER.set(int(leading))
        if leading:
            self._leading.set()
            self.tick_once()
        else:
            self._leading.clear()
        heartbeat.beat(self.broker, "scheduler", max(self.tick * 3, 10.0), leading=leading)
        return leading

    def lead(self) -> bool:
        """Hold the leader lock for three ticks; False if another scheduler has it."""
        ttl = max(int(self.tick * 3000), 1000)
        return bool(self._hold(keys=[LOCK_KEY], args=[self._token, ttl]))

    def tick_once(self) -> list[int]:
        """One round: what is due (`lifecycle.due`), sent as messages; the ids of the rows
        sent to be submitted."""
        waiting = self._rows_in_submissions()
        waiting_polls = self.broker.llen(POLL_QUEUE) * self.poll_group
        waiting_downloads = self.broker.llen(DOWNLOAD_QUEUE) if self.downloads else 0
        wanted = Wanted(
            queue=Queue(self.depth, self.submit_group, in_messages=waiting),
            polls=self.depth - waiting_polls,
            downloads=DOWNLOADS_WAITING - waiting_downloads if self.downloads else 0,
            expire=True,
            finish=True,
        )
        with self.engine.begin() as conn:
            due = due_work(conn, transitions.utcnow(), wanted, self.rules)
        self._report(due, waiting, waiting_polls // self.poll_group, waiting_downloads)
        # After the commit: a message never names a row whose change is not visible yet.
        self._pause = self._paced(bool(due), due.queued)
        for start in range(0, len(due.submits), self.submit_group):
            group = due.submits[start : start + self.submit_group]
            self.app.send_task(SUBMIT_TASK, args=[group])
        for start in range(0, len(due.polls), self.poll_group):
            self.app.send_task(POLL_TASK, args=[due.polls[start : start + self.poll_group]])
        for job_id in due.downloads:
            self.app.send_task(DOWNLOAD_TASK, args=[job_id])
        return due.submits

    def _paced(self, sent: bool, queued: int) -> float:
        """Seconds to the next round: BUSY_TICK after one that sent messages, QUEUED_TICK (at
        most `tick`) while rows wait in the queue (the next top-up comes before a busy
        deployment drains it), `tick` when idle."""
        if sent:
            return self.busy_tick
        return min(self.tick, QUEUED_TICK) if queued else self.tick

    def _report(self, due: Due, submits: int, polls: int, downloads: int) -> None:
        """The round's counts, as metrics and (when something was lost) log lines."""
        SCHEDULER_TICKS.inc()
        QUEUE_MESSAGES.labels(SUBMIT_QUEUE).set(submits)
        QUEUE_MESSAGES.labels(POLL_QUEUE).set(polls)
        QUEUE_MESSAGES.labels(DOWNLOAD_QUEUE).set(downloads)
        expired, resent = due.expired, due.requeued
        if expired:
            LEASES_EXPIRED.inc(expired)
            log.warning(
                "rows in doubt: their worker stopped mid-request (lease ran out)",
                extra={"count": expired},
            )
        if resent:
            MESSAGES_RESENT.inc(resent)
            log.warning("messages lost from Redis: rows queued again", extra={"count": resent})

    def _call_webhooks(self, stop: threading.Event) -> None:
        """The webhook thread: it outlives any failure (a database gone for a moment, a bug),
        logging it and trying again on the next tick."""
        with webhooks.webhook_client(self.webhook_allow_private) as http:
            while not stop.wait(self.tick):
                if not self._leading.is_set():
                    continue
                try:
                    webhooks.deliver_due(
                        self.engine,
                        http,
                        self.webhook_secret,
                        transitions.utcnow(),
                        allow_private=self.webhook_allow_private,
                    )
                except Exception:  # the thread must go on: the next tick tries again
                    log.exception("webhook calls failed; trying again")

    def _rows_in_submissions(self) -> int:
        """Rows named by the submit messages waiting in Redis or delivered to a worker and
        not yet acknowledged. kombu keeps the latter, of every queue, in one hash, each as
        `[message, exchange, routing_key]`: only the submit queue's count (polls in flight
        must not hide lost submissions)."""
        count = 0
        for raw in self.broker.lrange(SUBMIT_QUEUE, 0, -1):
            try:
                count += _rows_named(json.loads(raw))
            except ValueError:
                count += 1
        for raw in self.broker.hvals(UNACKED):
            try:
                message, _, routing_key = json.loads(raw)
            except (ValueError, TypeError):
                continue
            if routing_key == SUBMIT_QUEUE:
                count += _rows_named(message)
        return count


def _rows_named(message: Any) -> int:
    """How many rows a submit message (kombu's envelope, its body in base64) names: a group
    of ids, or one id as older schedulers sent; 1 for a message that cannot be read."""
    try:
        ids = json.loads(base64.b64decode(message["body"]))[0][0]
    except (ValueError, TypeError, KeyError, IndexError):
        return 1
    return len(ids) if isinstance(ids, list) else 1


def _first_line(exc: Exception) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:300] if text else ''}"
