"""The GCRA rule as pure functions, and its two homes: in process and on a real Redis."""

from __future__ import annotations

import bisect
import multiprocessing
import time
from itertools import pairwise

import pytest
import redis

from tests.conftest import REDIS_URL
from veobatch.lifecycle.backoff import COOL_DOWN
from veobatch.lifecycle.rate_limit import (
    STRIKE_MEMORY,
    LocalRateLimiter,
    RedisRateLimiter,
    cool_down_seconds,
    gcra_reserve,
)
from veobatch.settings import Rate


def schedule(times: list[float], interval: float, burst: int, cooldown: float = 0.0) -> list[float]:
    """The wait of each reservation made at the given times."""
    tat, waits = 0.0, []
    for now in times:
        wait, tat = gcra_reserve(tat, now, interval, burst, cooldown)
        waits.append(round(wait, 9))
    return waits


def test_requests_at_once_are_spaced_by_the_interval() -> None:
    assert schedule([10.0] * 4, interval=0.5, burst=1) == [0.0, 0.5, 1.0, 1.5]


def test_a_burst_goes_at_once_then_the_interval_applies() -> None:
    assert schedule([10.0] * 5, interval=1.0, burst=3) == [0.0, 0.0, 0.0, 1.0, 2.0]


def test_idle_time_does_not_save_up_more_than_the_burst() -> None:
    waits = schedule([0.0, 100.0, 100.0, 100.0], interval=1.0, burst=2)
    assert waits == [0.0, 0.0, 0.0, 1.0]


def test_requests_that_come_slower_than_the_rate_never_wait() -> None:
    assert schedule([0.0, 1.5, 3.0, 4.5], interval=1.0, burst=1) == [0.0, 0.0, 0.0, 0.0]


def test_a_cool_down_holds_everyone_until_it_ends() -> None:
    assert schedule([10.0, 10.0], interval=1.0, burst=1, cooldown=15.0) == [5.0, 6.0]


def test_no_rate_means_no_wait_but_cool_downs_still_apply() -> None:
    assert schedule([1.0] * 3, interval=0.0, burst=1) == [0.0, 0.0, 0.0]
    assert schedule([1.0], interval=0.0, burst=1, cooldown=3.0) == [2.0]


@pytest.mark.parametrize(
    ("strikes", "retry_after", "pause"),
    [(1, None, 2.0), (2, None, 4.0), (3, None, 8.0), (30, None, COOL_DOWN.cap), (5, 1.5, 1.5)],
)
def test_cool_down_doubles_and_honours_retry_after(
    strikes: int, retry_after: float | None, pause: float
) -> None:
    assert cool_down_seconds(strikes, retry_after) == pause


def test_local_limiter_spaces_reservations() -> None:
    now = [100.0]
    limiter = LocalRateLimiter.for_rate(Rate.parse("10/s"), clock=lambda: now[0])
    assert [limiter.reserve() for _ in range(5)] == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])
    now[0] += 10.0  # idle for a while: the next one goes at once, no burst saved up
    assert [limiter.reserve() for _ in range(2)] == pytest.approx([0.0, 0.1])
    assert limiter.cool_down() == 2.0
    now[0] += 1.0
    assert limiter.cool_down() == 4.0  # a second 429 soon after doubles the pause
    assert limiter.reserve() == pytest.approx(4.0)
    now[0] += STRIKE_MEMORY + 10
    assert limiter.cool_down() == 2.0  # a 429 long after the last starts over


# ---------------------------------------------------------------------------------- Redis


@pytest.mark.timing  # what it counts depends on timing: run alone (see the Makefile)
def test_redis_limiter_spaces_reservations(redis_client: redis.Redis) -> None:
    limiter = RedisRateLimiter(redis_client, Rate.parse("50/s,burst=2"), prefix="t1")
    slots = []
    for _ in range(8):
        start = time.monotonic()
        slots.append(start + limiter.reserve())
    gaps = [b - a for a, b in pairwise(slots)]
    assert gaps[0] == pytest.approx(0.0, abs=0.005)  # the burst of 2
    assert all(gap == pytest.approx(0.02, abs=0.005) for gap in gaps[1:])


def test_redis_cool_down_is_shared_and_doubles(redis_client: redis.Redis) -> None:
    one = RedisRateLimiter(redis_client, None, prefix="t2")
    other = RedisRateLimiter(redis.Redis.from_url(REDIS_URL), None, prefix="t2")
    assert one.reserve() == 0.0
    assert one.cool_down() == 2.0
    assert 1.9 < other.reserve() <= 2.0
    assert other.cool_down() == 4.0
    assert 3.9 < one.reserve() <= 4.0
    assert one.cool_down(retry_after=0.5) == 0.5  # does not shorten the pause already set
    assert one.reserve() > 3.8


def _reserve_many(prefix: str, count: int, out: multiprocessing.Queue[list[float]]) -> None:
    limiter = RedisRateLimiter(redis.Redis.from_url(REDIS_URL), Rate.parse("200/s"), prefix)
    out.put([limiter.reserve_slot()[0] for _ in range(count)])


@pytest.mark.timing  # what it counts depends on timing: run alone (see the Makefile)
def test_the_limit_holds_across_processes(redis_client: redis.Redis) -> None:
    context = multiprocessing.get_context("spawn")
    out: multiprocessing.Queue[list[float]] = context.Queue()
    workers = [context.Process(target=_reserve_many, args=("t3", 60, out)) for _ in range(3)]
    for worker in workers:
        worker.start()
    slots = sorted(s for _ in workers for s in out.get(timeout=60))
    for worker in workers:
        worker.join(timeout=30)
    # Three processes, one schedule at 200/s: slots (on Redis's clock) 5 ms apart, none closer.
    assert len(slots) == 180
    assert min(b - a for a, b in pairwise(slots)) >= 0.005 - 1e-6
    busiest = max(bisect.bisect_left(slots, start + 0.1) - i for i, start in enumerate(slots))
    assert busiest <= 20
