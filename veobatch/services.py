"""What a worker process holds for its whole life: one engine, one HTTP client, one limiter.

Opened on first use in each process (Celery's prefork children each get their own), closed at
exit. Settings come from the environment (`VEO_*`), which `veo-batch worker` fills from its
options before it starts the worker.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass
from datetime import timedelta

import redis
from sqlalchemy.engine import Engine

from veobatch import db
from veobatch.errors import ConfigError
from veobatch.provider import ProviderClient
from veobatch.ratelimit import LocalRateLimiter, RateLimiter, RedisRateLimiter
from veobatch.settings import Settings


@dataclass
class Services:
    settings: Settings
    engine: Engine
    client: ProviderClient
    limiter: RateLimiter
    lease: timedelta

    @classmethod
    def open(cls, settings: Settings) -> Services:
        if settings.api_base is None or settings.api_key is None:
            raise ConfigError("a worker needs VEO_API_BASE and VEO_API_KEY")
        limiter: RateLimiter
        if settings.redis_url:
            limiter = RedisRateLimiter(redis.Redis.from_url(settings.redis_url), settings.rate)
        else:
            limiter = LocalRateLimiter.for_rate(settings.rate)
        return cls(
            settings=settings,
            engine=db.open_database(settings.database_url),
            client=ProviderClient(
                settings.api_base,
                settings.api_key,
                connect_timeout=settings.connect_timeout,
                read_timeout=settings.read_timeout,
            ),
            limiter=limiter,
            lease=lease_for(settings),
        )

    def close(self) -> None:
        self.client.close()
        self.engine.dispose()


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
