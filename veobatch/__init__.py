"""veo-batch: batches of Veo image-to-video jobs, from rows to videos.

The Python API is `Client` (see `veobatch.python_api`); the command line is `veo-batch`.
"""

import logging

from veobatch.errors import InvalidJobs
from veobatch.python_api import Client, Intake

# A library logs only where its user configured logging (the worker, the scheduler and
# `serve` do, through `veobatch.logs`); `run` and Python callers see no stray lines.
logging.getLogger("veobatch").addHandler(logging.NullHandler())

__all__ = ["Client", "Intake", "InvalidJobs"]
