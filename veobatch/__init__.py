"""veo-batch: batches of Veo image-to-video jobs, from rows to videos.

The Python API is `Client` (see `veobatch.python_api`); the command line is `veo-batch`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from veobatch.errors import InvalidJobs
    from veobatch.python_api import Client, Intake

# A library logs only where its user configured logging (the worker, the scheduler and
# `serve` do, through `veobatch.logs`); `run` and Python callers see no stray lines.
logging.getLogger("veobatch").addHandler(logging.NullHandler())

__all__ = ["Client", "Intake", "InvalidJobs"]


def __getattr__(name: str) -> Any:
    """`veobatch.Client` and the rest, imported when first asked for: a command of the
    command line imports only what it uses (the Python API imports the whole engine)."""
    if name in ("Client", "Intake"):
        from veobatch import python_api  # noqa: PLC0415

        return getattr(python_api, name)
    if name == "InvalidJobs":
        from veobatch.errors import InvalidJobs  # noqa: PLC0415

        return InvalidJobs
    raise AttributeError(f"module 'veobatch' has no attribute {name!r}")
