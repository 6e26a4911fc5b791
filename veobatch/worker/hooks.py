"""What a worker does as it starts and stops, hooked to Celery's signals.

- Logging: `veobatch.logs` (VEO_LOG_FORMAT, every secret redacted) instead of Celery's own.
- A heartbeat in Redis while the worker consumes (`veobatch.heartbeat`), for `veo-batch
  health`; it goes at once when the worker stops.
- A graceful stop, bounded. On SIGTERM Celery's main process stops taking messages and waits
  for the tasks its pool children are running (its "warm shutdown"). `STOPPING`, an event
  made before the children are forked and so shared with them, is set then too: a task
  waiting for its rate slot gives up at once and its row goes back to `pending` unsent
  (`submit_rows` with `wait=stoppable_wait`); a poll or a download in flight is given up at
  once (a thread in each child waits for `STOPPING`, then abandons them: the row is handed
  back, due again, a download's `.part` removed); a submission already sent is finished and
  recorded, within its whole deadline. So a stop leaves no row `submitting` to expire into
  `in_doubt`. The children ignore SIGTERM themselves (a signal to the whole process group
  reaches them too; billiard's default would end them mid-request): the main process's warm
  shutdown is what stops them. Should it still run `Settings.stop_grace` seconds after the
  SIGTERM (a submission's deadline plus STOP_SLACK: 80 s by default), the main process goes
  on to Celery's cold shutdown (SIGQUIT), which ends the children.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from typing import Any, Final

import redis
from celery import signals

from veobatch import heartbeat, logs
from veobatch.lifecycle.download import abandon
from veobatch.process import opened_process
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

    def stopping(**_: Any) -> None:
        """The main process begins its warm shutdown: bounded by `stop_grace`."""
        STOPPING.set()
        while _beating:
            _beating.pop().stop()
        cold = threading.Timer(settings.stop_grace, os.kill, (os.getpid(), signal.SIGQUIT))
        cold.daemon = True
        cold.start()

    signals.worker_shutting_down.connect(stopping, weak=False, dispatch_uid="veo-batch-stop")
    signals.worker_process_init.connect(_child, weak=False, dispatch_uid="veo-batch-child")


def _child(**_: Any) -> None:
    """In each pool child, as it starts: SIGTERM is for the main process to act on (billiard
    keeps a handler that is SIG_IGN, and replaces any other with one that exits); a thread
    gives up the child's polls and downloads in flight once the worker is stopping."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    threading.Thread(target=_abandon_when_stopping, name="veo-batch-stop", daemon=True).start()


def _abandon_when_stopping() -> None:
    STOPPING.wait()
    held = opened_process()
    if held is not None:
        held.sender.abandon()
        abandon(held.videos)
