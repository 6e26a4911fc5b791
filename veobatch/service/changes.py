"""Changes: reviews, reruns, budgets, pause, resume, cancel, and the webhook calls due."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from veobatch.errors import (
    BatchStateError,
    UnconfirmedRerun,
    VeoBatchError,
)
from veobatch.lifecycle import transitions, webhooks
from veobatch.lifecycle.spend_rules import unpriced
from veobatch.service.base import ServiceBase
from veobatch.states import JobStatus, Review
from veobatch.store.queries import (
    BatchSummary,
    RowFilter,
    batch_id,
    count_jobs,
    model_counts,
)
from veobatch.store.tables import Job


@dataclass(frozen=True)
class Rerun:
    """What a rerun matched and did (with `dry_run`, only `matched` and `paid_for`)."""

    matched: int  # rows in the chosen statuses and kinds
    paid_for: list[str]  # chosen statuses whose rows have (or may have) a paid task
    paid_rows: int = 0  # with `dry_run`: the matched rows in those statuses
    sent_again: int = 0  # rows back to pending: sent as new tasks
    polled_again: int = 0  # timed-out rows whose task is polled again
    state: str | None = None  # the batch's state afterwards
    adds: int | None = None  # with `dry_run`: what sending them again costs (None: unpriced)
    unpriced: list[str] = field(default_factory=list)  # their models that have no price


class Changing(ServiceBase):
    def review(self, batch: str, refs: Sequence[str], verdict: str | None) -> int:
        """Mark the videos of rows `refs` approved or rejected (None: not reviewed); how many
        rows were marked. The mark is kept on the row, exported, and filters `jobs`."""
        if verdict is not None and verdict not in tuple(Review):
            raise VeoBatchError(f"review: {verdict!r} is not approved, rejected or none")
        with self.engine.begin() as conn:
            return transitions.set_review(
                conn, batch_id(conn, batch), refs, verdict, transitions.utcnow()
            )

    def retry_downloads(self, batch: str) -> int:
        """The batch's videos whose downloads gave up are due again; how many."""
        with self.engine.begin() as conn:
            return transitions.retry_downloads(conn, batch_id(conn, batch), transitions.utcnow())

    def finish_batches(self) -> int:
        """Active batches with no row left to send or to follow become finished (as the
        scheduler and a run's end do); how many."""
        with self.engine.begin() as conn:
            return transitions.finish_batches(conn, transitions.utcnow())

    def rerun(
        self,
        batch: str,
        statuses: Sequence[str] = (JobStatus.FAILED,),
        kinds: Sequence[str] = (),
        *,
        refs: Sequence[str] = (),
        reviews: Sequence[str] = (),
        dry_run: bool = False,
        confirm_paid: bool = False,
    ) -> Rerun:
        """Rows back to work: sent again as new tasks, except timed-out rows, whose task is
        polled again. `refs` and `reviews` (say, the rows whose videos were rejected) narrow
        the choice. Sending a row that has (or may have) a paid task pays again: unless
        `confirm_paid`, such a rerun is refused with `UnconfirmedRerun` (which says how many
        rows and what they cost) and nothing changes. `dry_run` only looks."""
        rows = RowFilter(statuses, kinds, refs, reviews)
        paid = rows.paid()
        paid_for = list(paid.statuses) if paid is not None else []
        with self.engine.begin() as conn:  # counted and changed in one transaction
            bid = batch_id(conn, batch)
            paid_rows = count_jobs(conn, paid.query(bid)) if paid is not None else 0
            if dry_run or (paid_rows and not confirm_paid):
                matched = count_jobs(conn, rows.query(bid))
                adds = self.estimate_rows(model_counts(conn, bid, rows, resent_only=True))
                if dry_run:
                    return Rerun(
                        matched, paid_for, paid_rows, adds=adds.total, unpriced=adds.unpriced
                    )
                raise UnconfirmedRerun(matched, paid_rows, paid_for, adds.total, adds.unpriced)
            now = transitions.utcnow()
            deadline = timedelta(seconds=self.settings.poll_deadline)
            sent, polled = transitions.rerun(conn, bid, now, rows, deadline=deadline)
            if sent + polled:  # a finished batch with rows to follow again is active again
                state = transitions.reopen(conn, bid, now)
            else:
                state = transitions.batch_state(conn, bid)
        return Rerun(sent + polled, paid_for, paid_rows, sent, polled, state=state)

    def set_budget(self, batch: str, budget: object | None) -> BatchSummary:
        """The most batch `batch` may spend (in VEO_CURRENCY; None: no cap), from now on. Every
        model its rows use must have a price. Raising it does not resume a batch paused by
        its budget: `resume` does."""
        checks = self._money_checks(budget)
        with self.engine.begin() as conn:
            bid = batch_id(conn, batch)
            priced = checks["priced"]
            if priced is not None:
                used = conn.execute(sa.select(Job.model).where(Job.batch_id == bid).distinct())
                missing = sorted(set(used.scalars()) - set(priced))
                if missing:
                    raise VeoBatchError(
                        f"batch {batch!r}: " + "; ".join(unpriced(model) for model in missing)
                    )
            transitions.set_budget(conn, bid, checks["budget"])
        return self.status(batch)

    def pause(self, batch: str, reason: str = "paused by hand") -> str:
        """Stop sending the batch's rows (requests in flight finish); its state afterwards."""
        return self._change(batch, "pause", lambda c, b, n: transitions.pause(c, b, reason, n))

    def resume(self, batch: str) -> str:
        """Let a paused (or finished) batch send again; its state afterwards."""
        return self._change(batch, "resume", transitions.resume)

    def cancel(self, batch: str) -> int:
        """Cancel the batch; the number of rows that will not be sent (tasks made finish)."""
        with self.engine.begin() as conn:
            return transitions.cancel(conn, batch_id(conn, batch), transitions.utcnow())

    def deliver_webhooks(self) -> int:
        """Try each webhook call that is due once (a batch finished or paused); how many
        arrived. The scheduler does this on its own thread; `veo-batch run` at its end."""
        with webhooks.webhook_client(self.settings.webhook_allow_private) as http:
            return webhooks.deliver_due(
                self.engine,
                http,
                self.settings.webhook_secret,
                transitions.utcnow(),
                allow_private=self.settings.webhook_allow_private,
            )

    def _change(self, batch: str, action: str, change: Any) -> str:
        with self.engine.begin() as conn:
            bid = batch_id(conn, batch)
            changed = change(conn, bid, transitions.utcnow())
            state = transitions.batch_state(conn, bid) or ""
        if not changed:
            raise BatchStateError(f"batch {batch!r} is {state}: it cannot {action}", state)
        return state
