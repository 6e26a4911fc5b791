"""What the commands print, on rich: tables and a live progress display on a terminal, with
colour; plain aligned lines in a pipe or a CI log (no colour, no box, no cut columns); JSON
for scripts (`--json`)."""

from __future__ import annotations

import io
import json
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, TextIO

import click
from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn
from rich.progress import Progress as Display
from rich.table import Table
from rich.text import Text

from veobatch.pricing import money
from veobatch.states import BatchState, JobStatus
from veobatch.visible import visible

if TYPE_CHECKING:
    from veobatch.lifecycle.progress import Progress
    from veobatch.lifecycle.spend_rules import Estimate
    from veobatch.store.queries import BatchSummary

PLAIN_EVERY: Final = 10.0  # seconds between progress lines in a pipe or a log
PLAIN_WIDTH: Final = 100_000  # a pipe has no width: never wrap or cut a line there


def _console(stream: TextIO) -> Console:
    return Console(file=stream, highlight=False, soft_wrap=False)


def echo(text: str = "", *, err: bool = False, nl: bool = True) -> None:
    """A line printed (to stderr if `err`), every character that would act on a terminal
    rather than show shown escaped (`veobatch.visible`): its text may come from a relay."""
    click.echo(visible(text), err=err, nl=nl)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], *, err: bool = False) -> None:
    """Rows under their headers: boxed on a terminal, aligned plain text elsewhere (East Asian
    wide characters take two columns either way)."""
    stream = sys.stderr if err else sys.stdout
    grid = Table(box=box.SIMPLE_HEAD, header_style="bold", pad_edge=False)
    for header in headers:
        grid.add_column(header, overflow="fold")
    for row in rows:
        grid.add_row(*_cells(row))
    terminal = _console(stream)
    if terminal.is_terminal:
        terminal.print(grid)
        return
    click.echo(_plain(grid), err=err)  # (cells escaped)


def table_text(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """The plain table as text (for reports written to files)."""
    grid = Table(box=None, pad_edge=False)
    for header in headers:
        grid.add_column(header)
    for row in rows:
        grid.add_row(*_cells(row))
    return _plain(grid)


def _cells(row: Sequence[object]) -> list[Text]:
    """A row's cells as plain text (never read as rich markup), hidden characters escaped."""
    return [Text(visible("" if cell is None else str(cell))) for cell in row]


def _plain(grid: Table) -> str:
    grid.box = None
    grid.header_style = ""
    buffer = io.StringIO()
    Console(file=buffer, width=PLAIN_WIDTH, color_system=None, highlight=False).print(grid)
    return "\n".join(line.rstrip() for line in buffer.getvalue().splitlines())


def one_line(text: str | None, limit: int) -> str:
    """`text` on one line, cut to at most `limit` terminal columns (with an ellipsis)."""
    line = Text(visible(" ".join((text or "").split())))
    line.truncate(limit, overflow="ellipsis")
    return line.plain


def when(moment: datetime | None) -> str:
    """A time as the tables show it: UTC to the second."""
    return "" if moment is None else f"{moment:%Y-%m-%d %H:%M:%S}"


def print_json(data: Any) -> None:
    """`data` as JSON on standard output, for scripts (times as ISO 8601, text as it is)."""
    click.echo(json.dumps(data, ensure_ascii=False, indent=2, default=_json_value))


def _json_value(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


@contextmanager
def live_progress(title: str, every: float = PLAIN_EVERY) -> Iterator[Callable[[Progress], None]]:
    """A function that shows a batch's progress: on a terminal a live bar (done/total, a
    count per status, rate, ETA, videos on disk) on standard error; elsewhere a plain line
    at most every `every` seconds."""
    if not sys.stderr.isatty():
        shown = [time.monotonic()]

        def line(progress: Progress) -> None:
            if time.monotonic() - shown[0] >= every:
                shown[0] = time.monotonic()
                echo(describe_progress(progress), err=True)

        yield line
        return
    display = Display(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[counts]}"),
        TextColumn("[dim]{task.fields[speed]}"),
        console=_console(sys.stderr),
        transient=False,
    )
    task = display.add_task(title, total=None, counts="", speed="")

    def bar(progress: Progress) -> None:
        display.update(
            task,
            total=progress.total or None,
            completed=progress.done,
            counts=_counts(progress),
            speed=_speed(progress),
        )

    with display:
        yield bar


def describe_progress(p: Progress) -> str:
    """`12/40 done: waiting 20, submitting 2, generating 6 (41%), succeeded 10, failed 1,
    in doubt 1; 2 videos on disk; 0.8 rows/s, ETA 35 s`"""
    line = f"{p.done:,}/{p.total:,} done: {_counts(p)}"
    if p.state != BatchState.ACTIVE:
        return f"{line} [{p.state}]"
    return f"{line}; {_speed(p)}"


def _counts(p: Progress) -> str:
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
    text = ", ".join(parts)
    if p.downloading:
        text += f"; {p.downloaded:,} videos on disk"
        if p.download_errors:
            text += f" ({p.download_errors:,} downloads failing)"
    return text


def _speed(p: Progress) -> str:
    if p.state != BatchState.ACTIVE:
        return p.state
    eta = ""
    if p.eta is not None:
        eta = f", ETA {p.eta / 60:.0f} min" if p.eta >= 60 else f", ETA {p.eta:.0f} s"
    return f"{p.rate:.1f} rows/s{eta}"


def spend_line(summary: BatchSummary, currency: str) -> str | None:
    """`spent USD 12.50, in flight USD 0.50; budget USD 20.00, left USD 7.00`, or None when
    the batch has neither spent anything nor a budget."""
    if not summary.committed and summary.budget is None:
        return None
    line = f"spent {money(summary.spent, currency)}"
    if summary.held:
        line += f", in flight {money(summary.held, currency)}"
    if summary.budget is not None:
        line += f"; budget {money(summary.budget, currency)}, left {money(summary.left, currency)}"
    return line


def print_estimate(estimate: Estimate) -> None:
    """Rows per model with their price, the total, and the requests they need."""
    from veobatch.lifecycle.spend_rules import TYPICAL_GENERATION  # noqa: PLC0415

    price = estimate.currency
    rows = [
        (m.model, f"{m.rows:,}", money(m.price, price), money(m.total, price))
        for m in estimate.models
    ]
    if rows:
        table(["MODEL", "ROWS", "PRICE", "TOTAL"], rows)
    else:
        echo("nothing left to send")
    total = money(estimate.priced_total, price)
    if not rows:
        total = money(0, price)
    unpriced_rows = sum(m.rows for m in estimate.models if m.price is None)
    if not unpriced_rows:
        echo(f"total: {total} for {estimate.rows:,} rows")
    else:
        echo(
            f"total: {total} for {estimate.rows - unpriced_rows:,} priced rows; "
            f"{unpriced_rows:,} more of {', '.join(estimate.unpriced)} have no price in "
            "VEO_PRICES (unpriced, not free)"
        )
    polls = estimate.rows * estimate.polls_per_task
    echo(
        f"requests: {estimate.rows:,} submissions + about {polls:,} polls "
        f"({estimate.polls_per_task} per task of ~{TYPICAL_GENERATION:.0f} s) = "
        f"{estimate.requests:,}"
    )
    if estimate.committed or estimate.budget is not None:
        line = f"spent so far: {money(estimate.spent, price)}"
        if estimate.budget is not None:
            line += f"; budget {money(estimate.budget, price)}, left {money(estimate.left, price)}"
        echo(line)
    if estimate.left is not None and estimate.total is not None and estimate.total > estimate.left:
        click.secho(
            f"the budget covers only part of it: the batch will pause with reason budget "
            f"after about {money(estimate.left, price)}",
            fg="yellow",
        )
