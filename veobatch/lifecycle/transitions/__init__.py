"""The row state changes, each one conditional SQL statement (or one short transaction).

Every change names the state it expects (`WHERE status = 'queued'`), so a message delivered
twice, two schedulers, or a worker that comes back late change nothing they should not.
Times are UTC and come from the caller, which keeps these functions easy to test.

One module per thing changed: `sending` (a row on its way: release, claim, leases),
`recording` (what a submission answered), `polls`, `downloads`, `batches` (a batch's life and
settings) and `reviews` (reviews and reruns). Callers use them through this package
(`transitions.release`, `transitions.record`, ...).
"""

from __future__ import annotations

from veobatch.lifecycle.transitions.batches import (
    cancel,
    finish_batches,
    pause,
    reopen,
    resume,
    set_budget,
    set_webhook,
)
from veobatch.lifecycle.transitions.downloads import (
    downloaded,
    due_downloads,
    hand_back_download,
    retry_downloads,
)
from veobatch.lifecycle.transitions.polls import due_polls, hand_back_polls, polled
from veobatch.lifecycle.transitions.recording import Attempted, record
from veobatch.lifecycle.transitions.reviews import rerun, set_review
from veobatch.lifecycle.transitions.sending import (
    batch_state,
    claim,
    claim_rows,
    expire_leases,
    extend_leases,
    has_tasks,
    hold,
    release,
    requeue,
    unclaim,
    utcnow,
)

__all__ = [
    "Attempted",
    "batch_state",
    "cancel",
    "claim",
    "claim_rows",
    "downloaded",
    "due_downloads",
    "due_polls",
    "expire_leases",
    "extend_leases",
    "finish_batches",
    "hand_back_download",
    "hand_back_polls",
    "has_tasks",
    "hold",
    "pause",
    "polled",
    "record",
    "release",
    "reopen",
    "requeue",
    "rerun",
    "resume",
    "retry_downloads",
    "set_budget",
    "set_review",
    "set_webhook",
    "unclaim",
    "utcnow",
]
