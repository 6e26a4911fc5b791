"""What a worker process holds for its whole life: one engine, HTTP clients, the limiters.

Opened on first use in each process (Celery's prefork children each get their own), closed at
exit. Settings come from the environment (`VEO_*`), which `veo-batch worker` fills from its
options before it starts the worker.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass
from datetime import timedelta

import httpx
import redis
from sqlalchemy.engine import Engine

from veobatch.engine.download import video_client
from veobatch.engine.poll_rules import Pacing
from veobatch.engine.rate_limit import LocalRateLimiter, RateLimiter, RedisRateLimiter
from veobatch.errors import ConfigError
from veobatch.provider.client import ProviderClient
from veobatch.settings import Rate, Settings
from veobatch.store import database


@dataclass
class Services:
    settings: Settings
    engine: Engine
    client: ProviderClient
    limiter: RateLimiter
    poll_limiter: RateLimiter
    lease: timedelta
    pacing: Pacing
    videos: httpx.Client  # for video hosts: never carries the API key

    @classmethod
    def open(cls, settings: Settings) -> Services:
        if settings.api_base is None or settings.api_key is None:
            raise ConfigError("a worker needs VEO_API_BASE and VEO_API_KEY")
        limiter = limiter_for(settings, settings.rate, "veo-batch:rate")
        poll_limiter = limiter
        if settings.poll_rate is not None:
            poll_limiter = limiter_for(settings, settings.poll_rate, "veo-batch:poll-rate")
        return cls(
            settings=settings,
            engine=database.open_database(settings.database_url),
            client=ProviderClient(
                settings.api_base,
                settings.api_key,
                connect_timeout=settings.connect_timeout,
                read_timeout=settings.read_timeout,
            ),
            limiter=limiter,
            poll_limiter=poll_limiter,
            lease=lease_for(settings),
            pacing=Pacing.of(settings),
            videos=video_client(),
        )

    def close(self) -> None:
        self.client.close()
        self.videos.close()
        self.engine.dispose()


def limiter_for(settings: Settings, rate: Rate | None, prefix: str) -> RateLimiter:
    """Shared through Redis when there is one (every worker on every host), else in process."""
    if settings.redis_url:
        return RedisRateLimiter(redis.Redis.from_url(settings.redis_url), rate, prefix)
    return LocalRateLimiter.for_rate(rate)


def lease_for(settings: Settings) -> timedelta:
    """How long a claimed row may stay `submitting` (VEO_LEASE, else the longest a request
    can take plus a minute of waiting for a rate slot)."""
    if settings.lease is not None:
        return timedelta(seconds=settings.lease)
    return timedelta(seconds=settings.connect_timeout + settings.read_timeout + 60)


_opened: dict[int, Services] = {}


def services() -> Services:
    """This process's services (a forked child opens its own)."""
    pid = os.getpid()
    if pid not in _opened:
        _opened.clear()  # inherited from a parent: not ours to use or close
        _opened[pid] = Services.open(Settings.from_env(os.environ))
        atexit.register(_opened[pid].close)
    return _opened[pid]
