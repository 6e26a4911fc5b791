"""How much a process does at once by default: requests in flight, rows a message names,
processes a worker starts. Numbers only, so the command line's options know them without
importing the engine (`veobatch.process` builds what a process holds from them)."""

from __future__ import annotations

import os
from typing import Final

REQUESTS_AT_ONCE: Final = 16  # requests one worker process keeps in flight
SUBMIT_GROUP: Final = 32  # rows one submit message names
RUN_CONCURRENCY: Final = 16  # `veo-batch run`'s requests in flight by default (across its lanes)


def worker_processes() -> int:
    """A worker's processes by default: one per CPU (each keeps REQUESTS_AT_ONCE in flight,
    in threads that mostly wait; more processes than cores only contend for them)."""
    return os.cpu_count() or 2
