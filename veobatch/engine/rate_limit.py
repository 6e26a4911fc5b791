"""One request rate for the whole account: GCRA reservations, shared or in process.

Every request to the provider first reserves a slot and is told how long to wait for it (a
reservation always succeeds, so nobody spins). The rule (GCRA, the "generic cell rate
algorithm") keeps one number, the theoretical arrival time `tat` of the next request:

    at      = max(now, tat - (burst - 1) * interval, cooldown_until)   # when this one may go
    tat'    = max(tat, at) + interval
    wait    = at - now

A 429 from the provider sets a cool-down shared the same way: every reservation waits until it
is over. Its length doubles with each 429 close after the last (no Retry-After comes from
relays), and a Retry-After, when one does come, is used as it is.

`RedisRateLimiter` runs the rule in a Lua script on Redis's clock: one round trip per request,
every worker on every host sees the same `tat`. `LocalRateLimiter` runs the same rule (the pure
functions below) in process, for the embedded mode. Celery's own `rate_limit` is per worker
process and is not used.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Protocol, TypeVar

from redis.exceptions import RedisError

from veobatch.engine.backoff import COOL_DOWN
from veobatch.errors import LimiterUnavailable, ProviderError
from veobatch.metrics import COOL_DOWNS, RATE_WAIT
from veobatch.settings import Rate
from veobatch.states import ErrorKind

if TYPE_CHECKING:
    from redis import Redis

T = TypeVar("T")
STRIKE_MEMORY: Final = 60.0  # a 429 within this long of the last one doubles the cool-down


class RateLimiter(Protocol):
    def reserve(self) -> float:
        """Book the next request slot; the seconds to wait before sending."""
        ...

    def cool_down(self, retry_after: float | None = None) -> float:
        """After a 429: make every caller wait; the seconds of the pause."""
        ...


def limited(
    limiter: RateLimiter,
    wait: Callable[[float], bool],
    request: Callable[[], T],
    *,
    kind: str = "submit",
) -> T | ProviderError | None:
    """`request()` sent in its rate slot: its answer, or the `ProviderError` it raised (a 429
    makes every caller of the limiter cool down first); None if `wait(seconds)` said stop
    before the slot came (nothing was sent). The one way submits and polls are sent; `kind`
    names them in the metrics. Raises LimiterUnavailable (nothing sent) if the shared limit
    cannot be asked."""
    seconds = limiter.reserve()
    RATE_WAIT.labels(kind).observe(seconds)
    if not wait(seconds):
        return None
    try:
        return request()
    except ProviderError as error:
        if error.kind is ErrorKind.RATE_LIMITED:
            COOL_DOWNS.inc()
            with contextlib.suppress(LimiterUnavailable):  # the 429 is the answer all the same
                limiter.cool_down(error.retry_after)
        return error


def interval_of(rate: Rate | None) -> tuple[float, int]:
    """Seconds between requests and the burst; (0, 1) without a rate (only cool-downs apply)."""
    if rate is None:
        return 0.0, 1
    return rate.period / rate.count, rate.burst


def gcra_reserve(
    tat: float, now: float, interval: float, burst: int, cooldown_until: float = 0.0
) -> tuple[float, float]:
    """(seconds to wait, the new tat) for one reservation at `now`."""
    at = max(now, tat - (burst - 1) * interval, cooldown_until)
    return at - now, max(tat, at) + interval


def cool_down_seconds(strikes: int, retry_after: float | None) -> float:
    """How long to pause after the `strikes`-th 429 in a row."""
    if retry_after is not None:
        return retry_after
    return COOL_DOWN.delay(strikes)


@dataclass
class LocalRateLimiter:
    """The rule in process (embedded mode): threads of one process share it. `clock` gives
    seconds (monotonic by default; tests pass their own)."""

    interval: float
    burst: int = 1
    clock: Callable[[], float] = time.monotonic

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._tat = 0.0
        self._cooldown_until = 0.0
        self._strikes = 0
        self._last_strike = -math.inf

    @classmethod
    def for_rate(
        cls, rate: Rate | None, clock: Callable[[], float] = time.monotonic
    ) -> LocalRateLimiter:
        interval, burst = interval_of(rate)
        return cls(interval, burst, clock)

    def reserve(self) -> float:
        with self._lock:
            wait, self._tat = gcra_reserve(
                self._tat, self.clock(), self.interval, self.burst, self._cooldown_until
            )
        return wait

    def cool_down(self, retry_after: float | None = None) -> float:
        with self._lock:
            now = self.clock()
            self._strikes = self._strikes + 1 if now - self._last_strike < STRIKE_MEMORY else 1
            self._last_strike = now
            pause = cool_down_seconds(self._strikes, retry_after)
            self._cooldown_until = max(self._cooldown_until, now + pause)
        return pause


# KEYS[1] tat, KEYS[2] cooldown_until (both microseconds on Redis's clock)
# ARGV[1] interval (µs), ARGV[2] burst
# Returns {slot time, wait} in microseconds (Redis's clock). The same rule as gcra_reserve().
_RESERVE: Final = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local interval = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local cooldown = tonumber(redis.call('GET', KEYS[2]) or '0')
local at = math.max(now, tat - (tonumber(ARGV[2]) - 1) * interval, cooldown)
local new_tat = math.max(tat, at) + interval
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX',
           math.floor((new_tat - now) / 1000) + 60000)
return {string.format('%d', at), string.format('%d', at - now)}
"""

# KEYS[1] cooldown_until (µs), KEYS[2] strikes
# ARGV[1] base (µs), ARGV[2] cap (µs), ARGV[3] retry_after (µs, or -1), ARGV[4] memory (ms)
# Returns the pause in microseconds. The same rule as cool_down_seconds().
_COOL_DOWN: Final = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local strikes = redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
local pause = tonumber(ARGV[3])
if pause < 0 then
  pause = math.min(tonumber(ARGV[1]) * 2 ^ (strikes - 1), tonumber(ARGV[2]))
end
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local cooldown_until = math.max(current, now + pause)
redis.call('SET', KEYS[1], string.format('%d', cooldown_until), 'PX',
           math.floor((cooldown_until - now) / 1000) + 1000)
return pause
"""


class RedisRateLimiter:
    """The rule on Redis: every process on every host books from the same schedule."""

    def __init__(self, redis: Redis, rate: Rate | None, prefix: str = "veo-batch:rate") -> None:
        self.interval, self.burst = interval_of(rate)
        self._keys = [f"{prefix}:tat", f"{prefix}:cooldown"]
        self._strikes = f"{prefix}:strikes"
        self._reserve = redis.register_script(_RESERVE)
        self._cool_down = redis.register_script(_COOL_DOWN)

    def reserve(self) -> float:
        return self.reserve_slot()[1]

    def reserve_slot(self) -> tuple[float, float]:
        """(the slot's time on Redis's clock, seconds to wait for it), both in seconds."""
        try:
            at, wait = self._reserve(keys=self._keys, args=[round(self.interval * 1e6), self.burst])
        except RedisError as exc:
            raise LimiterUnavailable(f"the shared rate limit cannot be asked: {exc}") from None
        return int(at) / 1e6, int(wait) / 1e6

    def cool_down(self, retry_after: float | None = None) -> float:
        args = [
            round(COOL_DOWN.first * 1e6),
            round(COOL_DOWN.cap * 1e6),
            -1 if retry_after is None else round(retry_after * 1e6),
            round(STRIKE_MEMORY * 1000),
        ]
        try:
            micros = self._cool_down(keys=[self._keys[1], self._strikes], args=args)
        except RedisError as exc:
            raise LimiterUnavailable(f"the shared cool-down cannot be set: {exc}") from None
        return int(micros) / 1e6
