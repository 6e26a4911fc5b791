"""The live progress line of `run` and `status --watch`."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import click

from veobatch.engine.progress import Progress as RunProgress
from veobatch.states import BatchState, JobStatus


def progress_line(every: float = 10.0) -> Callable[[RunProgress], None]:
    """A live line on a terminal; elsewhere a line every `every` seconds."""
    last = [time.monotonic()]  # the first line after `every` seconds (a terminal: at once)
    tty = sys.stderr.isatty()

    def show(p: RunProgress) -> None:
        now = time.monotonic()
        if not tty and now - last[0] < every:
            return
        last[0] = now
        line = describe_progress(p)
        click.echo(f"\r\033[K{line}" if tty else line, nl=not tty, err=True)

    return show


def describe_progress(p: RunProgress) -> str:
    """`12/40 done: waiting 20, submitting 2, generating 6 (41%), succeeded 10, failed 1,
    in doubt 1; 2 videos on disk; 0.8 rows/s, ETA 35 s`"""
    generating = f"generating {p.of(JobStatus.SUBMITTED):,}"
    if p.average_progress is not None:
        generating += f" ({p.average_progress:.0f}%)"
    parts = [
        f"waiting {p.of(JobStatus.PENDING, JobStatus.QUEUED):,}",
        f"submitting {p.of(JobStatus.SUBMITTING):,}",
        generating if p.waits_for_videos else f"with a task {p.of(JobStatus.SUBMITTED):,}",
        f"succeeded {p.of(JobStatus.SUCCEEDED):,}",
        f"failed {p.of(JobStatus.FAILED):,}",
        f"in doubt {p.of(JobStatus.IN_DOUBT):,}",
    ]
    if p.of(JobStatus.CANCELLED):
        parts.append(f"cancelled {p.of(JobStatus.CANCELLED):,}")
    line = f"{p.done:,}/{p.total:,} done: " + ", ".join(parts)
    if p.downloading:
        line += f"; {p.downloaded:,} videos on disk"
        if p.download_errors:
            line += f" ({p.download_errors:,} downloads failing)"
    eta = ""
    if p.eta is not None:
        eta = f", ETA {p.eta / 60:.0f} min" if p.eta >= 60 else f", ETA {p.eta:.0f} s"
    if p.state != BatchState.ACTIVE:
        return f"{line} [{p.state}]"
    return f"{line}; {p.rate:.1f} rows/s{eta}"
