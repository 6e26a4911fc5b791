"""The scheduler's own metrics: defined here, not in `veobatch.metrics`, so that only the
scheduler's process has them (a worker's /metrics showed them, stuck at 0)."""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Gauge

MESSAGES_RESENT: Final = Counter(
    "veobatch_messages_resent", "Queued rows whose message was lost (Redis) and sent again."
)
LEASES_EXPIRED: Final = Counter(
    "veobatch_leases_expired", "Rows whose worker stopped mid-request: now in_doubt."
)
SCHEDULER_TICKS: Final = Counter("veobatch_scheduler_ticks", "Rounds the leading scheduler ran.")
SCHEDULER_LEADER: Final = Gauge(
    "veobatch_scheduler_leader",
    "1 while this scheduler holds the leader lock.",
    multiprocess_mode="max",
)
QUEUE_MESSAGES: Final = Gauge(
    "veobatch_queue_messages",
    "Messages waiting in each queue (as the scheduler saw them on its last round).",
    ["queue"],
    multiprocess_mode="max",
)
