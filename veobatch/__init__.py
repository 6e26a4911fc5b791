"""veo-batch: batches of Veo image-to-video jobs, from rows to videos.

The Python API is `Client` (see `veobatch.python_api`); the command line is `veo-batch`.
"""

from veobatch.errors import InvalidJobs
from veobatch.python_api import Client, Intake

__all__ = ["Client", "Intake", "InvalidJobs"]
