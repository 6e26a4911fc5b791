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

`RedisRateLimiter` runs the rule in a Lua script on Redis's clock: every worker on every host
sees the same `tat`, and a group of requests books its slots in one round trip (`reserve_many`:
the rule applied n times in one atomic script, so the slots are exactly those n reservations
one after another would get). `LocalRateLimiter` runs the same rule (the pure functions below)
on one machine, for the embedded mode (its forked submit lanes share it). Celery's own
`rate_limit` is per worker process and is not used.

A slot is a promise about *when* a request goes: one sent late could land in a window that
other slots already fill. `in_slots` therefore sends each request at its slot, and books a new
one for a request whose slot went by unused (every thread busy); a 429 stops the requests of
the group not sent yet, which go back unsent rather than into the cool-down.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Final, Protocol, TypeVar

from redis.exceptions import RedisError

from veobatch.errors import LimiterUnavailable, ProviderError
from veobatch.lifecycle.backoff import COOL_DOWN
from veobatch.lifecycle.fanout import Fanout, Running
from veobatch.metrics import count_cool_down, count_rate_wait
from veobatch.settings import Rate
from veobatch.states import ErrorKind

if TYPE_CHECKING:
    from redis import Redis

T = TypeVar("T")
STRIKE_MEMORY: Final = 60.0  # a 429 within this long of the last one doubles the cool-down
# A request whose slot went by takes a new one only if it comes within this many seconds
# (else it is not sent: its row goes back, and the lease it was claimed with stays true).
LONG_SLOT: Final = 10.0
# Answers every other request of the group would get too: the rest is not sent.
HALTING: Final = frozenset({ErrorKind.RATE_LIMITED, ErrorKind.AUTH, ErrorKind.QUOTA})


class RateLimiter(Protocol):
    interval: float  # seconds between two slots (0: no rate, only cool-downs)

    def reserve(self) -> float:
        """Book the next request slot; the seconds to wait before sending."""
        ...

    def reserve_many(self, count: int) -> list[float]:
        """Book the next `count` slots at once; the seconds to wait for each, in order."""
        ...

    def cool_down(self, retry_after: float | None = None) -> float:
        """After a 429: make every caller wait; the seconds of the pause."""
        ...

    def peek(self) -> float:
        """Seconds until the next slot, booking nothing (0: one is free now)."""
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
    before the slot came (nothing was sent). Raises LimiterUnavailable (nothing sent) if the
    shared limit cannot be asked."""
    return in_slots(limiter, Fanout(1), wait, [request], limiter.reserve_many(1), kind=kind)[0]


def in_slots(
    limiter: RateLimiter | Sequence[RateLimiter],
    fanout: Fanout,
    wait: Callable[[float], bool],
    requests: Sequence[Callable[[], T]],
    waits: Sequence[float],
    *,
    kind: str = "submit",
) -> list[T | ProviderError | None]:
    """`start_in_slots`, waited for: each answer."""
    return start_in_slots(limiter, fanout, wait, requests, waits, kind=kind).results()


def start_in_slots(
    limiter: RateLimiter | Sequence[RateLimiter],
    fanout: Fanout,
    wait: Callable[[float], bool],
    requests: Sequence[Callable[[], T]],
    waits: Sequence[float],
    *,
    kind: str = "submit",
) -> Running[T | ProviderError | None]:
    """Each of `requests` sent in its slot, `waits[i]` seconds after the slots were booked
    (`limiter.reserve_many`, just before), `fanout.size` at once: each answer, or the
    `ProviderError` it raised, or None where nothing was sent (`wait(seconds)` said stop, a
    429 or a refused key or balance of the group came first (HALTING), its slot went by and
    the next one is over LONG_SLOT away or cannot be had). The one way submits and polls are
    sent; `kind` names them in the metrics. `limiter` is every request's, or one per request
    (requests to several accounts): a 429 then stops only the requests of its own limiter."""
    booked = time.monotonic()
    limiters = [limiter] * len(requests) if not isinstance(limiter, Sequence) else limiter
    # The rest of a limiter's requests is not sent once one was refused in a way every other
    # would be (HALTING).
    halts = {id(each): threading.Event() for each in limiters}

    def send(index: int) -> T | ProviderError | None:
        limiter = limiters[index]
        halted = halts[id(limiter)]
        due = booked + waits[index]
        if limiter.interval and time.monotonic() - due > limiter.interval / 2:
            # Its slot went by while every thread was busy: sent now, it could overfill a
            # window that later slots fill. A new slot, if one comes soon.
            try:
                again = limiter.reserve()
            except LimiterUnavailable:
                return None
            if again > LONG_SLOT:
                return None
            due = time.monotonic() + again
        seconds = max(due - time.monotonic(), 0.0)
        count_rate_wait(kind, seconds)
        if halted.is_set() or not wait(seconds) or halted.is_set():
            return None
        try:
            return requests[index]()
        except ProviderError as error:
            if error.kind in HALTING:
                halted.set()
            if error.kind is ErrorKind.RATE_LIMITED:
                count_cool_down()
                with contextlib.suppress(LimiterUnavailable):  # the 429 is the answer all the same
                    limiter.cool_down(error.retry_after)
            return error

    return fanout.start([partial(send, index) for index in range(len(requests))])


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
    """The rule on one machine, for the embedded mode: the threads of a process and the
    processes it forks (its submit lanes) book from one schedule, kept in shared memory under
    a process-shared lock. `clock` gives seconds (monotonic by default: one clock for every
    process of the machine; tests pass their own)."""

    interval: float
    burst: int = 1
    clock: Callable[[], float] = time.monotonic

    def __post_init__(self) -> None:
        self._lock = multiprocessing.Lock()
        # tat, cooldown_until, strikes, last strike: memory a forked process shares
        self._state = multiprocessing.RawArray("d", [0.0, 0.0, 0.0, -math.inf])

    @classmethod
    def for_rate(
        cls, rate: Rate | None, clock: Callable[[], float] = time.monotonic
    ) -> LocalRateLimiter:
        interval, burst = interval_of(rate)
        return cls(interval, burst, clock)

    def reserve(self) -> float:
        return self.reserve_many(1)[0]

    def reserve_many(self, count: int) -> list[float]:
        waits = []
        state = self._state
        with self._lock:
            now = self.clock()
            tat, cooldown_until = state[_TAT], state[_COOLDOWN_UNTIL]
            for _ in range(count):
                wait, tat = gcra_reserve(tat, now, self.interval, self.burst, cooldown_until)
                waits.append(wait)
            state[_TAT] = tat
        return waits

    def peek(self) -> float:
        state = self._state
        with self._lock:
            now = self.clock()
            tat, cooldown_until = state[_TAT], state[_COOLDOWN_UNTIL]
        return float(max(now, tat - (self.burst - 1) * self.interval, cooldown_until) - now)

    def cool_down(self, retry_after: float | None = None) -> float:
        state = self._state
        with self._lock:
            now = self.clock()
            strikes = state[_STRIKES] + 1 if now - state[_LAST_STRIKE] < STRIKE_MEMORY else 1
            state[_STRIKES], state[_LAST_STRIKE] = strikes, now
            pause = cool_down_seconds(int(strikes), retry_after)
            state[_COOLDOWN_UNTIL] = max(state[_COOLDOWN_UNTIL], now + pause)
        return pause


_TAT, _COOLDOWN_UNTIL, _STRIKES, _LAST_STRIKE = range(4)  # LocalRateLimiter's shared state


# KEYS[1] tat, KEYS[2] cooldown_until (both microseconds on Redis's clock)
# ARGV[1] interval (µs), ARGV[2] burst, ARGV[3] count
# Returns {slot time, wait, slot time, wait, ...} in microseconds (Redis's clock), one pair per
# slot: the rule of gcra_reserve() applied `count` times at one `now`.
_RESERVE: Final = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local interval = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local cooldown = tonumber(redis.call('GET', KEYS[2]) or '0')
local slots = {}
for _ = 1, tonumber(ARGV[3]) do
  local at = math.max(now, tat - (tonumber(ARGV[2]) - 1) * interval, cooldown)
  tat = math.max(tat, at) + interval
  slots[#slots + 1] = string.format('%d', at)
  slots[#slots + 1] = string.format('%d', at - now)
end
redis.call('SET', KEYS[1], string.format('%d', tat), 'PX',
           math.floor((tat - now) / 1000) + 60000)
return slots
"""

# KEYS[1] tat, KEYS[2] cooldown_until (µs); ARGV[1] interval (µs), ARGV[2] burst
# Returns the microseconds until the next slot: what _RESERVE's next `wait` would be.
_PEEK: Final = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local cooldown = tonumber(redis.call('GET', KEYS[2]) or '0')
local at = math.max(now, tat - (tonumber(ARGV[2]) - 1) * tonumber(ARGV[1]), cooldown)
return string.format('%d', at - now)
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
        self._peek = redis.register_script(_PEEK)

    def reserve(self) -> float:
        return self.reserve_slot()[1]

    def reserve_many(self, count: int) -> list[float]:
        return [wait for _, wait in self.reserve_slots(count)]

    def reserve_slot(self) -> tuple[float, float]:
        """(the slot's time on Redis's clock, seconds to wait for it), both in seconds."""
        return self.reserve_slots(1)[0]

    def reserve_slots(self, count: int) -> list[tuple[float, float]]:
        """`count` slots booked in one round trip: (time on Redis's clock, seconds to wait)."""
        args = [round(self.interval * 1e6), self.burst, count]
        try:
            flat = self._reserve(keys=self._keys, args=args)
        except RedisError as exc:
            raise LimiterUnavailable(f"the shared rate limit cannot be asked: {exc}") from None
        pairs = zip(flat[::2], flat[1::2], strict=True)
        return [(int(at) / 1e6, int(wait) / 1e6) for at, wait in pairs]

    def peek(self) -> float:
        try:
            micros = self._peek(keys=self._keys, args=[round(self.interval * 1e6), self.burst])
        except RedisError as exc:
            raise LimiterUnavailable(f"the shared rate limit cannot be asked: {exc}") from None
        return int(micros) / 1e6

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
