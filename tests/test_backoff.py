"""The one backoff rule: doubling from `first`, capped, and jitter that stays within half."""

from __future__ import annotations

import random

import pytest

from veobatch.lifecycle.backoff import COOL_DOWN, SUBMIT_RETRY, WEBHOOK_RETRY, Backoff
from veobatch.lifecycle.submit_rules import after_error
from veobatch.states import ErrorKind, JobStatus


@pytest.mark.parametrize(
    ("failures", "seconds"), [(1, 10.0), (2, 20.0), (3, 40.0), (9, 2560.0), (10, 3600.0)]
)
def test_delays_double_up_to_the_cap(failures: int, seconds: float) -> None:
    assert WEBHOOK_RETRY.delay(failures) == seconds


def test_cool_down_doubles_from_two_seconds_to_two_minutes() -> None:
    assert [COOL_DOWN.delay(n) for n in (1, 2, 3, 7, 8, 20)] == [2, 4, 8, 120, 120, 120]


def test_jitter_keeps_half_the_delay_and_draws_the_rest() -> None:
    rng = random.Random(7)
    delays = [Backoff(8.0, 100.0, jitter=True).delay(1, rng) for _ in range(200)]
    assert all(4.0 <= d <= 8.0 for d in delays)
    assert len({round(d, 3) for d in delays}) > 100  # rows failing together come back apart


def test_a_retried_row_waits_the_submit_backoff() -> None:
    outcome = after_error(ErrorKind.SERVER, "502", 502, attempts=3, rng=random.Random(1))
    assert outcome.status is JobStatus.PENDING
    assert outcome.retry_in is not None
    assert SUBMIT_RETRY.first * 2 <= outcome.retry_in <= SUBMIT_RETRY.first * 4
