"""veo-batch: batches of Veo image-to-video jobs, from rows to videos.

The Python API is `Client` (see `veobatch.client`); the command line is `veo-batch`.
"""

from veobatch.client import Client, Intake, InvalidJobs

__all__ = ["Client", "Intake", "InvalidJobs"]
