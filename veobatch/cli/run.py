"""`veo-batch run`: load a file (or take a stored batch), then take its rows to videos, here or
by the workers."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from shlex import quote
from typing import TYPE_CHECKING

import click

from veobatch.cli.app import App, cli, pass_app
from veobatch.cli.files import load_file
from veobatch.cli.options import (
    batch_option,
    budget_option,
    format_option,
    is_are,
    plural,
    rows_text,
    strict_option,
    webhook_option,
)
from veobatch.cli.output import echo, live_progress, print_estimate, spend_line, table
from veobatch.concurrency import RUN_CONCURRENCY
from veobatch.errors import BatchPaused, ExitCode, RunStopped
from veobatch.states import STATUS_ORDER, BatchState, ErrorKind, JobStatus

if TYPE_CHECKING:
    from veobatch.running import RunOutcome


@cli.command()
@click.argument("file", metavar="[FILE]", required=False)
@batch_option
@format_option
@click.option(
    "--skip-invalid",
    is_flag=True,
    help="Submit the valid rows; keep invalid ones as failed (error kind 'invalid').",
)
@click.option(
    "--mock", is_flag=True, help="Send to a mock provider started in this process: spends nothing."
)
@click.option(
    "--concurrency",
    "-c",
    default=RUN_CONCURRENCY,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Requests in flight at once (the rate limit still applies), shared by submit lanes: "
    "one process per CPU, each sending its share of the rows.",
)
@click.option(
    "--output",
    "-o",
    metavar="FILE",
    help="Where to export the results (default: NAME.results.csv).",
)
@click.option(
    "--download",
    "download_dir",
    metavar="DIR",
    help="Download each video into DIR/BATCH/ID.mp4 (default: VEO_DOWNLOAD_DIR, else none).",
)
@click.option(
    "--wait/--no-wait",
    default=True,
    show_default=True,
    help="Wait for the videos (poll each task until it ends), or stop once every row has a "
    "task id (a later run, or the scheduler, follows them).",
)
@webhook_option
@budget_option
@strict_option
@click.option(
    "--dry-run",
    is_flag=True,
    help="Check FILE and print what it will cost and the requests it needs; send nothing.",
)
@pass_app
def run(
    app: App,
    file: str | None,
    batch_name: str | None,
    file_format: str | None,
    skip_invalid: bool,
    mock: bool,
    concurrency: int,
    output: str | None,
    download_dir: str | None,
    wait: bool,
    webhook_url: str | None,
    budget: str | None,
    strict: bool,
    dry_run: bool,
) -> None:
    """Load FILE, submit its rows and follow each task to its video, in this process
    (SQLite by default, no Redis needed); then print a summary and export the results.
    Without FILE, `--batch NAME` runs a stored batch (one queued over HTTP, from Python or
    by a Celery client, or a rerun).

    Every row ends with a video URL (and, with --download, the file with its size and
    sha256) or an error that explains itself: the provider's reason when generation failed,
    `timeout` after VEO_POLL_DEADLINE. A row whose request may have reached the provider
    without an answer is left `in_doubt` and never resent on its own (the provider has no
    idempotency key: a resend may pay twice). A 401 or an empty balance pauses the batch.
    Ctrl-C (or SIGTERM, SIGHUP) stops cleanly within VEO_CONNECT_TIMEOUT +
    VEO_READ_TIMEOUT + 10 seconds (80 by default): submissions in flight are recorded (each
    ends within both timeouts together), polls and downloads in flight are given up at once
    and due again. Running the same command again resumes: it sends nothing twice and polls
    the tasks already made (a run stopped with nothing left ends as usual, its results
    written). With VEO_REDIS_URL the workers do the work and, with --download, fetch the
    videos into their own VEO_DOWNLOAD_DIR: the run waits for them before the results.

    Exit codes: `veo-batch --help` lists every one, as veobatch/errors.py holds them (0: every
    row succeeded; with --no-wait, every row has a task).

    \b
    Examples:
      veo-batch run jobs.csv --dry-run               # the cost per model, nothing sent
      veo-batch run jobs.csv --budget 120            # pauses before spending past 120
      veo-batch run jobs.example.yaml --mock --download videos
      VEO_API_BASE=https://relay.example VEO_API_KEY=sk-... VEO_RATE=10/min veo-batch run jobs.csv
      veo-batch --max-in-flight 20 run jobs.csv --no-wait
      veo-batch run --batch nightly            # a batch queued over HTTP or from Python
    """
    if dry_run:
        _dry_run(app, file, batch_name, file_format, budget, strict)
        return
    from veobatch.accounts.spec import accounts_of  # noqa: PLC0415 - the engine: when it runs
    from veobatch.running import run_batch  # noqa: PLC0415

    if not mock:  # a file of accounts that cannot be used is refused before anything is stored
        accounts_of(app.settings, keys=app.settings.redis_url is None)
    name = _stored_or_loaded(
        app, file, batch_name, file_format, skip_invalid, webhook_url, budget, strict
    )
    path = output or f"{name}.results.csv"
    try:
        with stops_as_ctrl_c(), live_progress(name) as show:
            outcome = run_batch(
                app.service,
                name,
                concurrency=concurrency,
                wait=wait,
                download_dir=download_dir,
                mock=mock,
                results=path,
                on_progress=show,
                on_note=lambda text: echo(text, err=True),
            )
    except BatchPaused as paused:
        _exit_paused(name, paused.reason)
    except RunStopped as stopped:
        echo(str(stopped), err=True)
        sys.exit(ExitCode.INTERRUPTED)
    except KeyboardInterrupt:  # a stop while the results were written
        echo(
            "stopped before the results were written: "
            f"veo-batch export {quote(name)} -o {quote(path)}",
            err=True,
        )
        sys.exit(ExitCode.INTERRUPTED)
    _print_run(app, outcome)


def _dry_run(
    app: App,
    file: str | None,
    batch_name: str | None,
    file_format: str | None,
    budget: str | None,
    strict: bool,
) -> None:
    """`run --dry-run`: FILE checked with its estimate, or a stored batch's estimate."""
    if file is None:
        print_estimate(app.service.estimate(_stored(batch_name)))
        return
    result = load_file(
        app, file, batch_name, file_format, False, dry_run=True, budget=budget, strict=strict
    )
    if result.rejected:
        sys.exit(ExitCode.INVALID_ROWS)


def _stored(batch_name: str | None) -> str:
    if batch_name is None:
        raise click.UsageError(
            "name a job file (veo-batch run jobs.csv) or a stored batch "
            "(veo-batch run --batch NAME)"
        )
    return batch_name


def _stored_or_loaded(
    app: App,
    file: str | None,
    batch_name: str | None,
    file_format: str | None,
    skip_invalid: bool,
    webhook_url: str | None,
    budget: str | None,
    strict: bool,
) -> str:
    """The batch to run: FILE loaded (exit 1 if it has invalid rows), or the stored batch."""
    if file is None:
        name = _stored(batch_name)
        if webhook_url is not None:
            app.service.set_webhook(name, webhook_url)
        if budget is not None:
            app.service.set_budget(name, budget)
        return name
    result = load_file(
        app,
        file,
        batch_name,
        file_format,
        skip_invalid,
        webhook_url=webhook_url,
        budget=budget,
        strict=strict,
    )
    if result.rejected:
        sys.exit(ExitCode.INVALID_ROWS)
    return result.batch


@contextmanager
def stops_as_ctrl_c() -> Iterator[None]:
    """SIGTERM (kill, a container stopping) and SIGHUP (a closed terminal) stop the run as
    Ctrl-C does: submissions in flight are recorded, polls and downloads in flight handed
    back, nothing is left claimed, exit 130."""

    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield  # signals reach the main thread only
        return
    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _print_run(app: App, outcome: RunOutcome) -> None:
    """The run's summary: rows per status, errors, money, videos on disk, what to do next;
    then its exit code."""
    batch, progress = outcome.batch, outcome.progress
    name = batch.name
    counts = [(status, batch.counts.get(status, 0)) for status in STATUS_ORDER]
    table(["STATUS", "ROWS"], [(s, f"{n:,}") for s, n in counts if n])
    if batch.error_kinds:
        kinds = ", ".join(f"{kind} ×{count:,}" for kind, count in batch.error_kinds)
        echo(f"errors: {kinds}")
    if (spent := spend_line(batch, app.settings.currency)) is not None:
        echo(spent)
    if dict(batch.error_kinds).get(ErrorKind.FILTERED):
        echo(
            "filtered: a safety filter stopped those videos; the reasons are in the results "
            "file (error); change the prompts, then "
            f"`veo-batch rerun {quote(name)} --kind filtered`",
            err=True,
        )
    echo(f"results: {outcome.results}")
    if batch.state == BatchState.PAUSED:
        _exit_paused(name, batch.pause_reason)
    if progress.downloading:
        succeeded = progress.counts.get(JobStatus.SUCCEEDED, 0)  # the snapshot of `downloaded`
        echo(f"videos on disk: {progress.downloaded:,} of {succeeded:,}")
        if outcome.unsaved:
            echo(
                f"{plural(outcome.unsaved, 'video')} not saved (the rows stay succeeded; "
                f"`veo-batch jobs {quote(name)} --status succeeded` shows download_error); run "
                "again to retry them",
                err=True,
            )
    if outcome.unfinished:
        echo(
            f"{rows_text(outcome.unfinished)} failed or {is_are(outcome.unfinished)} in doubt: "
            f"`veo-batch jobs {quote(name)} --status failed` says why; "
            f"`veo-batch rerun {quote(name)}` sends them again (`--kind timeout`: polls their "
            "tasks again)",
            err=True,
        )
    if outcome.exit_code != ExitCode.OK:
        sys.exit(outcome.exit_code)


def _exit_paused(name: str, reason: str | None) -> None:
    click.secho(f"batch {name!r} is paused: {reason}", err=True, fg="red")
    echo(f"fix the cause, then: veo-batch resume {quote(name)} && veo-batch run ...", err=True)
    sys.exit(ExitCode.PAUSED)
