"""What sending to the provider needs, held in one object built once from the settings.

A `Sender` is everything a submission or a poll uses besides the database and the caller's own
pace (its fanout, its way of waiting, its write lock): the provider client, the rate limiters,
the way local images are sent, the prices every claim is checked against, the pacing of polls,
the lease of a claimed row and the file of task ids the database could not take. The Celery
worker, `veo-batch run`'s lanes and the tests build it the same way (`Sender.of`), so a setting
means the same thing in each; several accounts will be several senders.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import redis

from veobatch.errors import ConfigError
from veobatch.images.sending import ImageSender
from veobatch.lifecycle.poll_rules import Pacing
from veobatch.lifecycle.rate_limit import LocalRateLimiter, RateLimiter, RedisRateLimiter
from veobatch.lifecycle.spend_rules import Spending
from veobatch.lifecycle.submit_rules import MAX_ATTEMPTS
from veobatch.lifecycle.unrecorded import Unrecorded
from veobatch.provider.client import ProviderClient
from veobatch.settings import Rate, Settings


@dataclass(frozen=True)
class Sender:
    client: ProviderClient
    limiter: RateLimiter  # the submissions' rate (VEO_RATE)
    poll_limiter: RateLimiter  # the polls' (VEO_POLL_RATE; else the submissions' own)
    images: ImageSender  # local images as VEO_IMAGE_MODE sends them
    spending: Spending  # prices and the daily cap every claim is checked against
    pacing: Pacing  # when a task is asked about next
    lease: timedelta  # how long a claimed row is ours before it counts as in doubt
    unrecorded: Unrecorded  # task ids the database could not take yet (VEO_DATA_DIR)
    max_attempts: int = MAX_ATTEMPTS

    @classmethod
    def of(cls, settings: Settings, *, shared: bool = True) -> Sender:
        """The sender the settings describe. `shared` limiters live in Redis (every worker on
        every host books from one schedule) when VEO_REDIS_URL is set; otherwise, and for
        `veo-batch run`, they are this process's own."""
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
        client = ProviderClient(
            settings.api_base,
            settings.api_key,
            connect_timeout=settings.connect_timeout,
            read_timeout=settings.read_timeout,
        )
        return cls(
            client=client,
            limiter=limiter,
            poll_limiter=poll_limiter,
            images=images,
            spending=Spending.of(settings),
            pacing=Pacing.of(settings),
            lease=timedelta(seconds=settings.lease_seconds),
            unrecorded=Unrecorded(Path(settings.data_dir)),
        )

    def close(self) -> None:
        self.client.close()


def limiter_for(redis_url: str | None, rate: Rate | None, prefix: str) -> RateLimiter:
    """Shared through Redis when there is one (every worker on every host), else in process."""
    if redis_url:
        return RedisRateLimiter(redis.Redis.from_url(redis_url), rate, prefix)
    return LocalRateLimiter.for_rate(rate)
