"""The one backoff rule every retry uses: exponential, capped, optionally with jitter.

    delay(n) = min(first * 2 ** (n - 1), cap)          after the n-th failure in a row

With `jitter` the delay is "equal jitter": half of it fixed, half drawn at random, so rows that
failed together do not all come back together. Pure: no clock, no I/O.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True, slots=True)
class Backoff:
    first: float  # seconds after the first failure
    cap: float  # the longest delay
    jitter: bool = False

    def delay(self, failures: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after the `failures`-th failure in a row (counting from 1)."""
        ceiling = min(self.first * 2.0 ** (max(failures, 1) - 1), self.cap)
        if not self.jitter:
            return ceiling
        return ceiling / 2 + (rng or random).uniform(0, ceiling / 2)


SUBMIT_RETRY: Final = Backoff(2.0, 300.0, jitter=True)  # a row whose POST created nothing
DOWNLOAD_RETRY: Final = SUBMIT_RETRY  # a video that could not be fetched
COOL_DOWN: Final = Backoff(2.0, 120.0)  # every request, after 429s close together
WEBHOOK_RETRY: Final = Backoff(10.0, 3600.0)  # a webhook call that was not answered 2xx
