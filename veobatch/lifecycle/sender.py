"""What sending to the provider needs, held in one object built once from the settings.

A `Sender` is everything a submission or a poll uses besides the database and the caller's own
pace (its fanout, its way of waiting, its write lock): its relay accounts, the pacing of polls,
the lease of a claimed row and the file of task ids the database could not take. Each
`Account` is one relay account of VEO_ACCOUNTS (or the `default` one of VEO_API_BASE and
VEO_API_KEY): its client, its own rate limiters (shared through Redis by every worker on every
host), the way it takes local images, its prices, cap and budget. The Celery worker,
`veo-batch run`'s lanes and the tests build it the same way (`Sender.of`), so a setting means
the same thing in each.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import redis

from veobatch.accounts.spec import DEFAULT, AccountSpec, accounts_of
from veobatch.errors import ConfigError
from veobatch.images.sending import ImageSender
from veobatch.lifecycle.poll_rules import Pacing
from veobatch.lifecycle.rate_limit import LocalRateLimiter, RateLimiter, RedisRateLimiter
from veobatch.lifecycle.spend_rules import Spending
from veobatch.lifecycle.submit_rules import MAX_ATTEMPTS
from veobatch.lifecycle.unrecorded import Unrecorded
from veobatch.provider.client import ProviderClient
from veobatch.provider.dialects import dialect_named
from veobatch.settings import Rate, Settings


@dataclass(frozen=True)
class Account:
    """One relay account as a sender uses it."""

    name: str
    client: ProviderClient
    key_from: str  # where its key is read (a variable, a file): named when it is refused
    limiter: RateLimiter  # its submissions' rate
    poll_limiter: RateLimiter  # its polls' (its poll_rate; else the submissions' own)
    images: ImageSender  # local images as its image_mode sends them
    spending: Spending  # its prices; the deployment's daily cap and currency
    priority: int = 0  # lower first
    max_in_flight: int | None = None  # its own cap of rows out at once
    daily_budget: int | None = None  # its own, micro-units per UTC day
    models: Mapping[str, str] | None = None  # job model → its name for it; None: every model
    filtered_charged: bool = True  # a filtered video is billed unless the provider says not
    on_filtered: str | None = None  # one new try of a filtered row (enhance_prompt, a model)
    # What a download from its own origin carries (Google's API: the key): never shown.
    download_header: tuple[str, str] | None = field(default=None, repr=False)

    @classmethod
    def of(cls, spec: AccountSpec, settings: Settings, redis_url: str | None) -> Account:
        own = spec.settings_for(settings)
        images = ImageSender.of(own)  # in url mode, checks the bucket before anything else
        prefix = "veo-batch" if spec.name == DEFAULT else f"veo-batch:{spec.name}"
        limiter = limiter_for(redis_url, spec.rate, f"{prefix}:rate")
        poll_limiter = limiter
        if spec.poll_rate is not None:
            poll_limiter = limiter_for(redis_url, spec.poll_rate, f"{prefix}:poll-rate")
        client = ProviderClient(
            spec.base,
            spec.key,
            connect_timeout=settings.connect_timeout,
            read_timeout=settings.read_timeout,
            account=spec.name,
            dialect=dialect_named(spec.dialect),
        )
        return cls(
            name=spec.name,
            client=client,
            key_from=spec.key_from,
            limiter=limiter,
            poll_limiter=poll_limiter,
            images=images,
            spending=Spending.of(own),
            priority=spec.priority,
            max_in_flight=spec.max_in_flight,
            daily_budget=spec.daily_budget,
            models=spec.models,
            filtered_charged=spec.filtered_charged,
            on_filtered=spec.on_filtered,
            download_header=client.dialect.download_header(spec.key.reveal()),
        )

    def serves(self, model: str) -> bool:
        return self.models is None or model in self.models

    def api_model(self, model: str) -> str:
        return model if self.models is None else self.models.get(model, model)


@dataclass(frozen=True)
class Sender:
    accounts: tuple[Account, ...]  # in priority order
    pacing: Pacing  # when a task is asked about next
    lease: timedelta  # how long a claimed row is ours before it counts as in doubt
    unrecorded: Unrecorded  # task ids the database could not take yet (VEO_DATA_DIR)
    max_attempts: int = MAX_ATTEMPTS
    _by_name: dict[str, Account] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.accounts:
            raise ValueError("a sender needs an account")
        object.__setattr__(self, "_by_name", {a.name: a for a in self.accounts})

    @classmethod
    def of(
        cls,
        settings: Settings,
        *,
        shared: bool = True,
        environ: Mapping[str, str] | None = None,
    ) -> Sender:
        """The sender the settings describe (its accounts: VEO_ACCOUNTS, read with `environ`,
        os.environ by default). `shared` limiters live in Redis (every worker on every host
        books from one schedule) when VEO_REDIS_URL is set; otherwise, and for `veo-batch
        run`, they are this process's own."""
        specs = accounts_of(settings, environ)
        if not specs:
            raise ConfigError(
                "set VEO_API_BASE and VEO_API_KEY (or VEO_ACCOUNTS, a file of accounts) to send "
                "to the provider (`veo-batch run --mock` tries it offline)"
            )
        redis_url = settings.redis_url if shared else None
        accounts = tuple(Account.of(spec, settings, redis_url) for spec in specs)
        return cls(
            accounts=accounts,
            pacing=Pacing.of(settings),
            lease=timedelta(seconds=settings.lease_seconds),
            unrecorded=Unrecorded(Path(settings.data_dir)),
        )

    def account(self, name: str | None) -> Account | None:
        """The account named `name`; None if it is not (or no longer) one of ours."""
        return self._by_name.get(name) if name is not None else None

    @property
    def names(self) -> list[str]:
        return [account.name for account in self.accounts]

    @property
    def bases(self) -> list[str]:
        """Every account's relay URL (their own origins are always reachable for videos)."""
        return [str(account.client.base_url) for account in self.accounts]

    @property
    def download_headers(self) -> dict[str, tuple[str, str]]:
        """The header a video download carries to each account's own origin, where its
        dialect wants one (Google's API: its key); no other origin ever gets it."""
        return {
            str(account.client.base_url): account.download_header
            for account in self.accounts
            if account.download_header is not None
        }

    @property
    def deadline(self) -> float:
        """The longest a request of any account may take, in seconds."""
        return max(account.client.deadline or 0.0 for account in self.accounts)

    def price_of(self, account: str | None, model: str) -> int | None:
        found = self.account(account)
        return found.spending.price_of(model) if found is not None else None

    def abandon(self) -> None:
        """Stop every request in flight (the process is stopping)."""
        for account in self.accounts:
            account.client.abandon()

    def close(self) -> None:
        for account in self.accounts:
            account.client.close()


def limiter_for(redis_url: str | None, rate: Rate | None, prefix: str) -> RateLimiter:
    """Shared through Redis when there is one (every worker on every host), else in process."""
    if redis_url:
        return RedisRateLimiter(redis.Redis.from_url(redis_url), rate, prefix)
    return LocalRateLimiter.for_rate(rate)
