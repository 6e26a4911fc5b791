"""Which account a claimed row goes through: pure rules, no I/O.

A row may go through an account that serves its model, is not paused, is not cooling down
after failures in a row, and has room: below its `max_in_flight`, its price still inside its
daily budget, and (once it failed BREAKER times in a row and cooled down) only one row at a
time until one gets an answer. Among those, the lowest priority number wins, then the lower
price, then the account whose next rate slot comes first (the most free room; without rates,
the one this claim gave fewer rows); an account
whose next slot is over HORIZON seconds away is taken only when no other has one sooner. Each
row taken moves its account's count, spending and next slot, so a wave spreads over accounts
the way their rates and caps allow.

A row no account can take now (every one that serves it is at its cap or cooling down) waits
and is tried again; a row no account will take (every one that serves it is paused or spent
its day's budget, or none serves its model) stops its batch, with a reason that names each
account's state. The claim (`lifecycle.submit`) reads what it needs in its own transaction,
with the accounts' rows locked, so two workers never overfill one account.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final, NamedTuple

from veobatch.lifecycle.backoff import COOL_DOWN

BREAKER: Final = 3  # failures in a row (5xx, refused connections) that cool an account down
HORIZON: Final = 2.0  # seconds: an account whose next slot is further has no room while another has
WAIT: Final = 2.0  # seconds a row waits when every account that could take it is full


def cool_down(strikes: int) -> timedelta | None:
    """How long an account cools down after `strikes` failures in a row; None below BREAKER."""
    if strikes < BREAKER:
        return None
    return timedelta(seconds=COOL_DOWN.delay(strikes - BREAKER + 1))


@dataclass(slots=True)
class Candidate:
    """One account as a claim sees it, moved as rows are given to it."""

    name: str
    priority: int = 0
    prices: Mapping[str, int] = field(default_factory=dict)
    models: Mapping[str, str] | None = None  # None: every model
    paused: str | None = None  # why it is paused; None: it is not
    cool_until: datetime | None = None
    strikes: int = 0
    in_flight: int = 0  # rows being sent or generating through it
    cap: int | None = None
    spent: int = 0  # committed today (UTC)
    daily_budget: int | None = None
    ready_in: float = 0.0  # seconds until its next free rate slot
    interval: float = 0.0  # seconds between two of its slots
    taken: int = 0  # rows given to it by this claim

    def serves(self, model: str) -> bool:
        return self.models is None or model in self.models

    def price(self, model: str) -> int | None:
        return self.prices.get(model)

    def cooling(self, now: datetime) -> bool:
        return self.cool_until is not None and self.cool_until > now

    def over_budget(self, model: str) -> bool:
        """Whether its daily budget cannot take a row of `model` (spent, or cannot count it)."""
        if self.daily_budget is None:
            return False
        price = self.price(model)
        return price is None or self.spent + price > self.daily_budget

    def has_room(self, model: str, now: datetime) -> bool:
        if self.paused is not None or self.cooling(now) or self.over_budget(model):
            return False
        if self.cap is not None and self.in_flight >= self.cap:
            return False
        return not (self.strikes >= BREAKER and self.taken)  # (probing: one row at a time)

    def take(self, model: str) -> None:
        self.taken += 1
        self.in_flight += 1
        self.spent += self.price(model) or 0
        self.ready_in += self.interval

    def rank(self, model: str) -> tuple[int, float, float, int]:
        """Lower first: its priority, its price, when its next slot comes, the rows this claim
        gave it already (without rates, a claim's rows go round the accounts in turn)."""
        price = self.price(model)
        return (self.priority, float("inf") if price is None else price, self.ready_in, self.taken)

    def state(self, model: str, now: datetime, money: Callable[[int], str]) -> str:
        """This account's state for a row of `model`, in words (for a pause's reason)."""
        if not self.serves(model):
            return f"does not serve {model}"
        if self.paused is not None:
            return f"paused ({self.paused})"
        if self.over_budget(model):
            price = self.price(model)
            if price is None:
                return f"has no price for {model}, and its daily budget cannot count it"
            return (
                f"daily budget spent ({money(self.spent)} of {money(self.daily_budget or 0)} "
                "today, UTC)"
            )
        if self.cooling(now):
            return f"cooling down until {self.cool_until:%H:%M:%S} UTC"
        if self.cap is not None and self.in_flight >= self.cap:
            return f"at its cap of {self.cap} in flight"
        return "has room"


class Row(NamedTuple):
    id: int
    batch_id: int
    model: str
    refused_by: frozenset[str] = frozenset()  # accounts whose API cannot take it (`fitting`)


@dataclass(slots=True)
class Routing:
    """What a claim does with its rows: the account each goes through, those that wait (and
    how long), and the batches no account will take (each with why)."""

    going: dict[int, str] = field(default_factory=dict)
    waiting: list[int] = field(default_factory=list)
    retry_in: float = WAIT
    stuck: dict[int, str] = field(default_factory=dict)


def route(
    rows: Sequence[Row],
    candidates: Sequence[Candidate],
    now: datetime,
    money: Callable[[int], str] = str,
) -> Routing:
    """The account of each of `rows`, in order (see the module's docstring)."""
    routing = Routing()
    retry: list[float] = []
    for row in rows:
        if row.batch_id in routing.stuck:
            routing.waiting.append(row.id)
            continue
        serving = [c for c in candidates if c.serves(row.model) and c.name not in row.refused_by]
        open_ = [c for c in serving if c.has_room(row.model, now)]
        if open_:
            soon = [c for c in open_ if c.ready_in <= HORIZON] or open_
            best = min(soon, key=lambda c: c.rank(row.model))
            best.take(row.model)
            routing.going[row.id] = best.name
            continue
        routing.waiting.append(row.id)
        later = [c for c in serving if c.paused is None and not c.over_budget(row.model)]
        if later:  # full or cooling: room comes back by itself
            ends = [
                (c.cool_until - now).total_seconds()
                for c in later
                if c.cool_until is not None and c.cooling(now)
            ]
            retry.append(min(ends) if len(ends) == len(later) else WAIT)
            continue
        able = [c for c in candidates if c.name not in row.refused_by]
        if able:
            routing.stuck[row.batch_id] = why_stuck(row.model, able, now, money)
        else:
            routing.stuck[row.batch_id] = (
                f"no account's API can take some of its rows (refused by "
                f"{', '.join(sorted(row.refused_by))}: an image that is a link, or a field that "
                "API does not take); add an account that can take them, then resume"
            )
    if retry:
        routing.retry_in = max(min(retry), 0.1)
    return routing


def why_stuck(
    model: str, candidates: Sequence[Candidate], now: datetime, money: Callable[[int], str]
) -> str:
    """Why no account will take a row of `model`: the one account's state, or each one's."""
    serving = [c for c in candidates if c.serves(model)]
    if len(candidates) == 1 and serving and serving[0].paused is not None:
        return serving[0].paused  # (one account: its own words, as they always were)
    if not serving:
        names = ", ".join(c.name for c in candidates)
        return (
            f"no account serves {model} (accounts: {names}): add it to an account's models in "
            "VEO_ACCOUNTS, then resume"
        )
    states = "; ".join(f"{c.name}: {c.state(model, now, money)}" for c in candidates)
    return (
        f"no account can take its rows ({states}); `veo-batch accounts` shows them: resume an "
        "account or raise its budget, then resume the batch"
    )
