"""What a worker does as it starts and stops, hooked to Celery's signals.

- Logging: `veobatch.logs` (VEO_LOG_FORMAT, every secret redacted) instead of Celery's own.
- A heartbeat in Redis while the worker consumes (`veobatch.heartbeat`), for `veo-batch
  health`; it goes at once when the worker stops.
- A graceful stop. On SIGTERM Celery's main process stops taking messages and waits for the
  tasks its pool children are running (its "warm shutdown"). `STOPPING`, an event made
  before the children are forked and so shared with them, is set then too: a task waiting
  for its rate slot gives up at once and its row goes back to `pending` unsent (`submit_one`
  with `wait=stoppable_wait`), while a request already sent is finished and recorded. So a
  stop leaves no row `submitting` to expire into `in_doubt`. The children ignore SIGTERM
  themselves (a signal to the whole process group reaches them too; billiard's default would
  end them mid-request): the main process's warm shutdown is what stops them.
"""

from __future__ import annotations

import multiprocessing
import signal
from typing import Any, Final

import redis
from celery import signals

from veobatch import heartbeat, logs
from veobatch.settings import Settings

STOPPING: Final = multiprocessing.get_context("fork").Event()
_beating: list[heartbeat.Beating] = []


def stoppable_wait(seconds: float) -> bool:
    """Wait `seconds` for a rate slot; False (give up) as soon as the worker is stopping."""
    return not STOPPING.wait(seconds)


def install(settings: Settings) -> None:
    """Connect the hooks for a worker with `settings` (once per process)."""
    secrets = logs.secrets_of(settings)

    def setup_logging(**_: Any) -> None:
        logs.configure(settings.log_format, secrets=secrets)

    def ready(**_: Any) -> None:
        if settings.redis_url and not _beating:
            beating = heartbeat.Beating(redis.Redis.from_url(settings.redis_url), "worker")
            beating.start()
            _beating.append(beating)

    signals.setup_logging.connect(setup_logging, weak=False, dispatch_uid="veo-batch-logs")
    signals.worker_ready.connect(ready, weak=False, dispatch_uid="veo-batch-beat")
    signals.worker_shutting_down.connect(_stopping, weak=False, dispatch_uid="veo-batch-stop")
    signals.worker_process_init.connect(_child, weak=False, dispatch_uid="veo-batch-child")


def _stopping(**_: Any) -> None:
    """The main process begins its warm shutdown."""
    STOPPING.set()
    while _beating:
        _beating.pop().stop()


def _child(**_: Any) -> None:
    """In each pool child, as it starts: SIGTERM is for the main process to act on (billiard
    keeps a handler that is SIG_IGN, and replaces any other with one that exits)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
