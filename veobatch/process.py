"""What a process holds for its whole life, built from `Settings` in one place: the database
engine, the provider client, the rate limiters, the pacing of polls, the video client, the
way local images are sent.

`veo-batch run` (the embedded mode), the Celery worker and the scheduler all build what they
hold here, so a setting means the same thing in each. Celery's prefork children each open
their own (`worker_process()`), closed at exit.
"""

from __future__ import annotations

import atexit
import math
import os
from dataclasses import dataclass
from datetime import timedelta

import httpx
from sqlalchemy.engine import Engine

from veobatch.concurrency import REQUESTS_AT_ONCE, SUBMIT_GROUP
from veobatch.lifecycle.download import destinations_of, video_client
from veobatch.lifecycle.fanout import Fanout
from veobatch.lifecycle.poll_rules import claim_for
from veobatch.lifecycle.sender import Sender
from veobatch.service import BatchService
from veobatch.settings import Rate, Settings
from veobatch.store import database


@dataclass
class Process:
    settings: Settings
    engine: Engine
    sender: Sender  # the provider client, the limiters, prices, pacing, images, leases
    videos: httpx.Client  # for video hosts: never carries the API key
    fanout: Fanout  # the requests of a group this process sends at once

    @classmethod
    def open(
        cls, settings: Settings, *, engine: Engine | None = None, shared: bool = True
    ) -> Process:
        """Everything a submitting process needs (`shared`: see `Sender.of`)."""
        sender = Sender.of(settings, shared=shared)
        return cls(
            settings=settings,
            engine=engine or database.open_database(settings.database_url),
            sender=sender,
            videos=video_client(destinations_of(settings, sender.bases), sender.download_headers),
            fanout=Fanout(REQUESTS_AT_ONCE),
        )

    def poll_claim(self, outstanding: int) -> timedelta:
        """How long a poll handed out is not handed out again, with `outstanding` waiting."""
        return claim_for(self.settings.poll_rate or self.settings.rate, outstanding)

    def close(self) -> None:
        self.fanout.close()
        self.sender.close()
        self.videos.close()
        self.engine.dispose()


def queue_depth(rate: Rate | None) -> int:
    """Rows the scheduler keeps queued: ten seconds of sending at the rate, at least 20
    (without a rate, enough groups for every worker process of a few hosts: 1,000)."""
    if rate is None:
        return 1000
    return max(20, math.ceil(rate.per_second * 10))


def submit_group(rate: Rate | None) -> int:
    """Rows submitted by one message: about a second of requests at the rate, 1 to 32 (32
    without a rate). A worker process sends them REQUESTS_AT_ONCE at a time."""
    if rate is None:
        return SUBMIT_GROUP
    return min(SUBMIT_GROUP, max(1, math.ceil(rate.per_second)))


def poll_group(rate: Rate | None) -> int:
    """Rows polled by one message: about two seconds of requests at the rate, 1 to 50."""
    if rate is None:
        return 20
    return min(50, max(1, math.ceil(rate.per_second * 2)))


_opened: dict[int, Process] = {}
_services: dict[int, BatchService] = {}


def worker_process() -> Process:
    """This worker process's `Process` (a forked child opens its own)."""
    pid = os.getpid()
    if pid not in _opened:
        _opened.clear()  # inherited from a parent: not ours to use or close
        _opened[pid] = Process.open(Settings.from_env(os.environ))
        atexit.register(_opened[pid].close)
    return _opened[pid]


def opened_process() -> Process | None:
    """This worker process's `Process` if it opened one."""
    return _opened.get(os.getpid())


def worker_service() -> BatchService:
    """This worker process's service over the store: all that storing jobs needs (no
    provider key)."""
    pid = os.getpid()
    if pid not in _services:
        _services.clear()
        settings = Settings.from_env(os.environ)
        _services[pid] = BatchService(database.open_database(settings.database_url), settings)
        atexit.register(_services[pid].engine.dispose)
    return _services[pid]
