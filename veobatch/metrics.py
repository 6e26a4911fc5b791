"""Prometheus metrics: every name in one place, counted where the thing happens.

Counters and histograms live in the process that counts (prometheus_client's default
registry). A Celery prefork worker has many processes: `veo-batch worker --metrics-port`
starts with PROMETHEUS_MULTIPROC_DIR set (prometheus_client's multiprocess mode), so each
child writes its counts to a file there and the worker's metrics server adds them up.

What SQL knows (rows by status, tasks generating, money) is read when Prometheus scrapes
(`veobatch.store.gauges`), by `serve` and the scheduler only; the scheduler's own series are
in `veobatch.scheduler.metrics`, so that no other process shows them stuck at 0.

Names follow Prometheus' conventions: one prefix, base units (seconds), `_total` on counters
(prometheus_client adds it), money in the currency's units (VEO_CURRENCY).
"""

from __future__ import annotations

import functools
import os
import tempfile
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from prometheus_client import Counter, Histogram

MULTIPROCESS_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS: Final = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
WAIT_BUCKETS: Final = (0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass(frozen=True)
class Series:
    """Every series this module counts, registered in prometheus_client's default registry."""

    provider_requests: Counter
    provider_latency: Histogram
    rate_limited: Counter
    rate_wait: Histogram
    cool_downs: Counter
    row_changes: Counter
    webhook_deliveries: Counter


_making = threading.Lock()


def series() -> Series:
    """The series, made on first use: prometheus_client is imported then, so a command that
    counts nothing (`status`, a refused file) does not wait for it. Whatever serves
    /metrics calls this first, so that every series shows, at 0 until counted. The lock
    makes them once when the first counts come from several threads at a time (a second
    registration of a name is refused)."""
    with _making:
        return _made()


@functools.cache
def _made() -> Series:
    from prometheus_client import Counter, Histogram  # noqa: PLC0415

    return Series(
        provider_requests=Counter(
            "veobatch_provider_requests",
            "Requests to the provider, by kind (submit, poll, download), HTTP status class "
            "(none: no answer came), error kind (empty on success) and relay account (empty "
            "for video hosts).",
            ["kind", "status_class", "error_kind", "account"],
        ),
        provider_latency=Histogram(
            "veobatch_provider_request_duration_seconds",
            "Time from sending a request to the provider to its answer (or its failure).",
            ["kind", "account"],
            buckets=LATENCY_BUCKETS,
        ),
        rate_limited=Counter(
            "veobatch_provider_rate_limited",
            "Answers 429 (too many requests) from the provider, by kind and relay account.",
            ["kind", "account"],
        ),
        rate_wait=Histogram(
            "veobatch_rate_limit_wait_seconds",
            "Time a request waited for its slot of the shared rate limit.",
            ["kind"],
            buckets=WAIT_BUCKETS,
        ),
        cool_downs=Counter(
            "veobatch_rate_limit_cool_downs", "Shared cool-downs started after a 429."
        ),
        row_changes=Counter(
            "veobatch_row_changes",
            "Rows a request moved to a status (submitted, failed, in_doubt, pending again, ...).",
            ["status"],
        ),
        webhook_deliveries=Counter(
            "veobatch_webhook_deliveries", "Webhook calls made, by outcome.", ["outcome"]
        ),
    )


def status_class(http_status: int | None) -> str:
    """`2xx`, `4xx`, ... of an HTTP status; `none` when no answer came."""
    return f"{http_status // 100}xx" if http_status else "none"


def count_request(
    kind: str,
    seconds: float,
    http_status: int | None,
    error_kind: str | None = None,
    account: str = "",
) -> None:
    """One request to the provider's `account` (or to a video host, for `download`) and how
    it ended."""
    counted = series()
    counted.provider_requests.labels(
        kind, status_class(http_status), error_kind or "", account
    ).inc()
    counted.provider_latency.labels(kind, account).observe(seconds)
    if http_status == 429:
        counted.rate_limited.labels(kind, account).inc()


def count_row_change(status: str) -> None:
    """One row moved to `status` by a request."""
    series().row_changes.labels(status).inc()


def count_webhook(delivered: bool) -> None:
    """One webhook call, delivered or failed."""
    series().webhook_deliveries.labels("delivered" if delivered else "failed").inc()


def count_rate_wait(kind: str, seconds: float) -> None:
    """How long a request of `kind` waited for its rate slot."""
    series().rate_wait.labels(kind).observe(seconds)


def count_cool_down() -> None:
    """A shared cool-down started after a 429."""
    series().cool_downs.inc()


def multiprocess_dir() -> str:
    """A fresh, empty folder for the counts of a prefork worker's children."""
    return tempfile.mkdtemp(prefix="veo-batch-metrics-")


def serve_worker_metrics(port: int, host: str = "0.0.0.0") -> None:
    """The worker's metrics server: the counts of every process of it, from their files."""
    from prometheus_client import CollectorRegistry, start_http_server  # noqa: PLC0415
    from prometheus_client.multiprocess import MultiProcessCollector  # noqa: PLC0415

    series()
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=os.environ[MULTIPROCESS_ENV])  # type: ignore[no-untyped-call]
    start_http_server(port, addr=host, registry=registry)
