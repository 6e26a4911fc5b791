"""Gauges read from SQL when Prometheus scrapes: rows of each batch at work by status, tasks
generating against the cap, each such batch's money, each relay account's rows in flight and
whether it is paused. Registered by `serve` and the scheduler
(not by every worker, which would repeat them). Labels are only the batches still at work
(active or paused), so they stay few; never a row or task id.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.engine import Engine

from veobatch.accounts import store as accounts
from veobatch.pricing import MICROS
from veobatch.states import BatchState, JobStatus
from veobatch.store.queries import batch_summaries


class StoreCollector(Collector):
    """The gauges above, one set of queries per scrape (the dashboard's own, by index)."""

    def __init__(self, engine: Engine, max_in_flight: int | None) -> None:
        self.engine = engine
        self.max_in_flight = max_in_flight

    def collect(self) -> Iterator[Metric]:
        with self.engine.connect() as conn:
            summaries = batch_summaries(conn, states=[BatchState.ACTIVE, BatchState.PAUSED])
            generating = sum(s.counts.get(JobStatus.SUBMITTED, 0) for s in summaries)
            known = accounts.all_states(conn)
            out = accounts.in_flight(conn)
        rows = GaugeMetricFamily(
            "veobatch_rows",
            "Rows of each active or paused batch, by status.",
            labels=["batch", "status"],
        )
        spent = GaugeMetricFamily(
            "veobatch_batch_spent", "What each active or paused batch spent.", labels=["batch"]
        )
        held = GaugeMetricFamily(
            "veobatch_batch_held", "Prices held by the batch's rows being sent.", labels=["batch"]
        )
        paused = GaugeMetricFamily(
            "veobatch_batch_paused",
            "1 while the batch is paused (its reason: `veo-batch status NAME`).",
            labels=["batch"],
        )
        budget = GaugeMetricFamily(
            "veobatch_batch_budget", "The batch's budget (batches that have one).", labels=["batch"]
        )
        for summary in summaries:
            for status in JobStatus:
                rows.add_metric([summary.name, status.value], summary.counts.get(status, 0))
            paused.add_metric([summary.name], int(summary.state == BatchState.PAUSED))
            spent.add_metric([summary.name], summary.spent / MICROS)
            held.add_metric([summary.name], summary.held / MICROS)
            if summary.budget is not None:
                budget.add_metric([summary.name], summary.budget / MICROS)
        yield from (rows, paused, spent, held, budget)
        account_out = GaugeMetricFamily(
            "veobatch_account_in_flight",
            "Rows being sent or generating through each relay account.",
            labels=["account"],
        )
        account_paused = GaugeMetricFamily(
            "veobatch_account_paused",
            "1 while the relay account is paused (its reason: `veo-batch accounts`).",
            labels=["account"],
        )
        for row in known:
            account_out.add_metric([row.name], out.get(row.name, 0))
            account_paused.add_metric([row.name], int(row.state == accounts.PAUSED))
        yield from (account_out, account_paused)
        yield GaugeMetricFamily(
            "veobatch_tasks_generating",
            "Rows submitted whose video is not ready yet, in every batch at work.",
            value=generating,
        )
        if self.max_in_flight is not None:
            yield GaugeMetricFamily(
                "veobatch_tasks_generating_cap",
                "VEO_MAX_IN_FLIGHT: the most rows queued, being sent or generating at once.",
                value=self.max_in_flight,
            )


def store_registry(engine: Engine, max_in_flight: int | None) -> CollectorRegistry:
    """A registry of the SQL gauges alone (`serve` adds it to its `/metrics`)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(engine, max_in_flight))
    return registry
