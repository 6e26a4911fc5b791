"""What every group of operations shares: the database, the settings, and the few
operations the others build on (a batch's status, its webhook, what rows will cost)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.engine import Engine

from veobatch import pricing
from veobatch.accounts.fitting import Fitting
from veobatch.accounts.spec import accounts_of
from veobatch.errors import DatabaseError, VeoBatchError
from veobatch.lifecycle import spend_rules, transitions, webhooks
from veobatch.lifecycle.poll_rules import Pacing
from veobatch.lifecycle.spend_rules import Estimate, Spending
from veobatch.settings import Settings
from veobatch.store.queries import (
    BatchSummary,
    batch_id,
    batch_summaries,
    error_kinds,
)


class ServiceBase:
    """The database (None: only checks that need none, a dry run) and the settings every
    operation uses."""

    def __init__(self, engine: Engine | None, settings: Settings) -> None:
        self._engine = engine  # None: only checks that need no database (a dry run)
        self.settings = settings

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            raise DatabaseError("this service was opened without a database")
        return self._engine

    def status(self, batch: str, *, errors: bool = True) -> BatchSummary:
        """One batch: its state, why it is paused, its counts per status and (unless not
        `errors`, which reads no row) its errors counted per kind."""
        with self.engine.connect() as conn:
            summary = batch_summaries(conn, batch)[0]
            if errors:
                summary.error_kinds = error_kinds(conn, summary.id)
        return summary

    def set_webhook(self, batch: str, url: str | None) -> None:
        """The URL told when the batch finishes or pauses (None: no longer told)."""
        if url is not None:
            self._check_webhook(url)
        with self.engine.begin() as conn:
            transitions.set_webhook(conn, batch_id(conn, batch), url)

    def estimate_rows(
        self,
        counts: Mapping[str, int],
        *,
        spent: int = 0,
        committed: int = 0,
        budget: int | None = None,
    ) -> Estimate:
        """What sending `counts` rows per model will cost (a dry run's estimate)."""
        return spend_rules.estimate(
            counts,
            Spending.of(self.settings),
            Pacing.of(self.settings),
            spent=spent,
            committed=committed,
            budget=budget,
        )

    def _money_checks(self, budget: object | None) -> dict[str, Any]:
        """`budget` in micro-units, and the models with a price when every row must have one
        (a budget, or VEO_DAILY_BUDGET), for the loader's checks."""
        amount: int | None = None
        if budget is not None:
            try:
                amount = pricing.amount(budget)
            except ValueError as exc:
                raise VeoBatchError(f"budget: {budget!r} {exc}") from None
        priced = self.settings.prices if Spending.of(self.settings).needs_price(amount) else None
        return {"budget": amount, "priced": priced}

    def _fitting(self) -> Fitting | None:
        """The accounts a load checks rows against (None: every one takes every row)."""
        return Fitting.of(accounts_of(self.settings, keys=False))

    def _check_webhook(self, url: str) -> str:
        return webhooks.check_target(url, allow_private=self.settings.webhook_allow_private)
