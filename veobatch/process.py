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
from pathlib import Path
from typing import Final

import httpx
import redis
from sqlalchemy.engine import Engine

from veobatch.errors import ConfigError
from veobatch.images.sending import ImageSender
from veobatch.lifecycle.download import destinations_of, video_client
from veobatch.lifecycle.fanout import Fanout
from veobatch.lifecycle.poll_rules import Pacing, claim_for
from veobatch.lifecycle.rate_limit import LocalRateLimiter, RateLimiter, RedisRateLimiter
from veobatch.lifecycle.spend_rules import Spending
from veobatch.lifecycle.unrecorded import Unrecorded
from veobatch.provider.client import ProviderClient
from veobatch.service import BatchService
from veobatch.settings import Rate, Settings
from veobatch.store import database

REQUESTS_AT_ONCE: Final = 16  # requests one worker process keeps in flight
SUBMIT_GROUP: Final = 32  # rows one submit message names
RUN_CONCURRENCY: Final = 16  # `veo-batch run`'s requests in flight by default (across its lanes)


@dataclass
class Process:
    settings: Settings
    engine: Engine
    client: ProviderClient
    limiter: RateLimiter
    poll_limiter: RateLimiter
    lease: timedelta
    pacing: Pacing
    videos: httpx.Client  # for video hosts: never carries the API key
    images: ImageSender  # local images as VEO_IMAGE_MODE sends them
    spending: Spending  # prices and the daily cap every claim is checked against
    fanout: Fanout  # the requests of a group this process sends at once
    unrecorded: Unrecorded  # task ids the database could not take yet (VEO_DATA_DIR)

    @classmethod
    def open(
        cls, settings: Settings, *, engine: Engine | None = None, shared: bool = True
    ) -> Process:
        """Everything a submitting process needs. `shared` limiters live in Redis (every
        worker on every host books from one schedule) when VEO_REDIS_URL is set; otherwise,
        and for the embedded mode, they are this process's own."""
        if settings.api_base is None or settings.api_key is None:
            raise ConfigError(
                "set VEO_API_BASE and VEO_API_KEY to send to the provider (`veo-batch run "
                "--mock` tries it offline)"
            )
        images = ImageSender.of(settings)  # in url mode, checks the bucket before anything else
        redis_url = settings.redis_url if shared else None
        limiter = limiter_for(redis_url, settings.rate, "veo-batch:rate")
        poll_limiter = limiter
        if settings.poll_rate is not None:
            poll_limiter = limiter_for(redis_url, settings.poll_rate, "veo-batch:poll-rate")
        return cls(
            settings=settings,
            engine=engine or database.open_database(settings.database_url),
            client=ProviderClient(
                settings.api_base,
                settings.api_key,
                connect_timeout=settings.connect_timeout,
                read_timeout=settings.read_timeout,
            ),
            limiter=limiter,
            poll_limiter=poll_limiter,
            lease=timedelta(seconds=settings.lease_seconds),
            pacing=Pacing.of(settings),
            videos=video_client(destinations_of(settings)),
            images=images,
            spending=Spending.of(settings),
            fanout=Fanout(REQUESTS_AT_ONCE),
            unrecorded=Unrecorded(Path(settings.data_dir)),
        )

    def poll_claim(self, outstanding: int) -> timedelta:
        """How long a poll handed out is not handed out again, with `outstanding` waiting."""
        return claim_for(self.settings.poll_rate or self.settings.rate, outstanding)

    def close(self) -> None:
        self.fanout.close()
        self.client.close()
        self.videos.close()
        self.engine.dispose()


def limiter_for(redis_url: str | None, rate: Rate | None, prefix: str) -> RateLimiter:
    """Shared through Redis when there is one (every worker on every host), else in process."""
    if redis_url:
        return RedisRateLimiter(redis.Redis.from_url(redis_url), rate, prefix)
    return LocalRateLimiter.for_rate(rate)


def worker_processes() -> int:
    """A worker's processes by default: one per CPU (each keeps REQUESTS_AT_ONCE in flight,
    in threads that mostly wait; more processes than cores only contend for them)."""
    return os.cpu_count() or 2


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
