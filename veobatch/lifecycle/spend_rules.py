"""Spending: what a claim may commit, and what a batch will cost. Pure rules, no I/O.

What counts as spent, at each row's model's price: every row with a task (generating,
succeeded, failed remotely), every row `in_doubt` (it may have been billed), and every row
being submitted now (its claim holds the price until the outcome says whether a task was
made). A rerun pays again, so it counts again. A claim only goes through if its price still
fits the batch's budget and the day's cap (`spending.reserve`, in the claim's transaction).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from shlex import quote
from typing import Final

from veobatch.lifecycle.poll_rules import Pacing
from veobatch.pricing import money
from veobatch.settings import Settings

# A typical generation, for the polls an estimate expects (docs/relay-api.md: about 100 s).
TYPICAL_GENERATION: Final = 100.0


@dataclass(frozen=True, slots=True)
class Spending:
    """The prices and the daily cap of one deployment (VEO_PRICES, VEO_DAILY_BUDGET)."""

    prices: Mapping[str, int] = field(default_factory=dict)
    daily_cap: int | None = None
    currency: str = "USD"

    @classmethod
    def of(cls, settings: Settings) -> Spending:
        return cls(settings.prices, settings.daily_budget, settings.currency)

    def price_of(self, model: str) -> int | None:
        return self.prices.get(model)

    def money(self, amount: int | None) -> str:
        return money(amount, self.currency)

    def needs_price(self, budget: int | None) -> bool:
        """Whether every row must be priced: a budget or a daily cap cannot count a row whose
        price is unknown."""
        return budget is not None or self.daily_cap is not None


def unpriced(model: str) -> str:
    return (
        f"{model} has no price in VEO_PRICES, and a budget (or VEO_DAILY_BUDGET) cannot count "
        f"a row it cannot price: add {model}=PRICE to VEO_PRICES"
    )


def over_budget(spending: Spending, name: str, price: int, committed: int, budget: int) -> str:
    return (
        f"budget: the next row ({spending.money(price)}) does not fit: "
        f"{spending.money(committed)} of the budget of {spending.money(budget)} is spent or "
        f"being spent; raise it with `veo-batch budget {quote(name)} AMOUNT`, then resume"
    )


def over_daily_cap(spending: Spending, price: int, committed: int, day: str) -> str:
    cap = spending.daily_cap or 0
    return (
        f"daily budget: the next row ({spending.money(price)}) does not fit: "
        f"{spending.money(committed)} of VEO_DAILY_BUDGET={spending.money(cap)} is spent or "
        f"being spent on {day} (UTC); resume tomorrow, or raise VEO_DAILY_BUDGET"
    )


def expected_polls(pacing: Pacing, seconds: float = TYPICAL_GENERATION) -> int:
    """The polls `pacing` makes of a task that takes `seconds` and reports its progress as it
    goes (as relays do): the requests an estimate adds to each submission."""
    elapsed, polls = pacing.delay, 1
    while elapsed < seconds and elapsed < pacing.deadline:
        wait = pacing.next_in(polls, elapsed, min(99.0, 100 * elapsed / seconds))
        elapsed += wait
        polls += 1
    return polls


@dataclass(frozen=True)
class ModelCost:
    model: str
    rows: int
    price: int | None  # micro-units per request; None: unpriced

    @property
    def total(self) -> int | None:
        return None if self.price is None else self.price * self.rows


@dataclass(frozen=True)
class Estimate:
    """What rows will cost before they are sent, per model, and the requests they need."""

    models: list[ModelCost]
    polls_per_task: int
    currency: str
    spent: int = 0  # what the batch has spent already (or may have)
    committed: int = 0  # spent plus what claims hold now
    budget: int | None = None

    @property
    def rows(self) -> int:
        return sum(m.rows for m in self.models)

    @property
    def total(self) -> int | None:
        """The price of every row to send; None if a model is unpriced."""
        totals = [m.total for m in self.models]
        return None if None in totals else sum(t for t in totals if t is not None)

    @property
    def priced_total(self) -> int:
        return sum(m.total or 0 for m in self.models)

    @property
    def unpriced(self) -> list[str]:
        return [m.model for m in self.models if m.price is None]

    @property
    def requests(self) -> int:
        """Submissions plus the polls expected for their tasks."""
        return self.rows * (1 + self.polls_per_task)

    @property
    def left(self) -> int | None:
        return None if self.budget is None else self.budget - self.committed


def estimate(
    counts: Mapping[str, int],
    spending: Spending,
    pacing: Pacing,
    *,
    spent: int = 0,
    committed: int = 0,
    budget: int | None = None,
) -> Estimate:
    """The estimate of sending `counts` rows per model."""
    models = [
        ModelCost(model, rows, spending.price_of(model))
        for model, rows in sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        if rows
    ]
    return Estimate(models, expected_polls(pacing), spending.currency, spent, committed, budget)
