"""`veo-batch run`: load a file (or take a stored batch), then take its rows to videos, here or
by the workers."""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from shlex import quote

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
from veobatch.embedded_runner import EmbeddedRunner
from veobatch.errors import BatchStateError, ExitCode
from veobatch.lifecycle.download import check_directory
from veobatch.lifecycle.progress import Progress
from veobatch.process import RUN_CONCURRENCY, Process
from veobatch.settings import Secret, Settings
from veobatch.states import STATUS_ORDER, BatchState, JobStatus
from veobatch.store.export import export_format, write_export
from veobatch.store.queries import BatchSummary

MOCK_TASK_SECONDS = 3.0  # how long `run --mock` takes to "generate" a video
MOCK_KEY = "mock-key"


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
    name = _stored_or_loaded(
        app, file, batch_name, file_format, skip_invalid, webhook_url, budget, strict
    )
    batch = app.service.status(name)
    if batch.state == BatchState.CANCELLED:
        raise BatchStateError(f"batch {batch.name!r} is cancelled: nothing to run", batch.state)
    if batch.state == BatchState.PAUSED:
        _exit_paused(batch.name, batch.pause_reason)
    settings = app.settings
    videos = download_dir or settings.download_dir
    path = output or f"{name}.results.csv"
    workers = bool(settings.redis_url and not mock)
    try:
        with stops_as_ctrl_c():
            if workers:
                progress = _follow_workers(app, batch, wait, bool(videos), path)
            else:
                if videos:
                    check_directory(Path(videos))
                folder = Path(videos) if videos else None
                progress = _run_here(app, batch, mock, concurrency, wait, folder)
                _call_webhooks(app)
    except KeyboardInterrupt:
        progress = _stopped(app, name, wait, bool(videos), path, workers)
    try:
        with stops_as_ctrl_c():
            _print_run(app, name, progress, path)
    except KeyboardInterrupt:
        echo(
            "stopped before the results were written: "
            f"veo-batch export {quote(name)} -o {quote(path)}",
            err=True,
        )
        sys.exit(ExitCode.INTERRUPTED)


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


def _follow_workers(
    app: App, batch: BatchSummary, wait: bool, downloads: bool, path: str
) -> Progress:
    """Follow the batch while the scheduler and the workers take it to videos; with
    `downloads` (and `wait`), until every video of its succeeded rows is on disk or given up,
    so the results name them."""
    echo(
        "VEO_REDIS_URL is set: the rows go to the workers (`veo-batch scheduler` and "
        "`veo-batch worker` must be running); following the batch",
        err=True,
    )
    if downloads:
        echo(
            "the workers download the videos, each into its own VEO_DOWNLOAD_DIR (set it on "
            "the scheduler and the workers)" + ("; the results wait for them" if wait else ""),
            err=True,
        )
        if wait:
            app.service.retry_downloads(batch.name)  # those given up on are asked for again
    progress = None
    with live_progress(batch.name) as show:
        watching = app.service.watch(
            batch.name,
            wait_for_videos=wait,
            downloading=downloads or None,
            wait_for_downloads=downloads and wait,
        )
        told = False
        for progress in watching:
            show(progress)
            if not told and progress.downloads_left and not progress.of(*progress.open_statuses):
                told = True
                echo(
                    f"every row has ended; waiting for the workers to save "
                    f"{plural(progress.downloads_left, 'video')} (Ctrl-C stops waiting; they go "
                    f"on, and `veo-batch export {quote(batch.name)} -o {quote(path)}` writes the "
                    "final "
                    "results later)",
                    err=True,
                )
    assert progress is not None  # watch yields at least once
    if not wait:
        echo(
            f"the workers go on ({'polls and downloads' if downloads else 'polls'}): once "
            f"`veo-batch status {quote(batch.name)} --watch` has ended"
            + (" and shows every video on disk" if downloads else "")
            + f", `veo-batch export {quote(batch.name)} -o {quote(path)}` writes the final results",
            err=True,
        )
    return progress


def _run_here(
    app: App, batch: BatchSummary, mock: bool, concurrency: int, wait: bool, videos: Path | None
) -> Progress:
    """Work on the batch from this process (with the mock provider with `mock`)."""
    with contextlib.ExitStack() as stack:
        settings = app.settings
        if mock:
            from veobatch.provider.mock import MockConfig, MockProvider  # noqa: PLC0415 - only here

            provider = stack.enter_context(
                MockProvider(
                    MockConfig(api_key=MOCK_KEY, task_seconds=MOCK_TASK_SECONDS, clips=True)
                )
            )
            settings = _on_mock(settings, provider.url)
            echo(f"sending to the mock provider at {provider.url} (nothing is spent)", err=True)
        held = Process.open(settings, engine=app.engine, shared=False)
        stack.callback(held.client.close)
        stack.callback(held.videos.close)
        show = stack.enter_context(live_progress(batch.name))
        runner = EmbeddedRunner.for_process(
            held,
            batch.id,
            concurrency=concurrency,
            wait_for_videos=wait,
            download_dir=videos,
            on_progress=show,
        )
        return runner.run()


def _stopped(
    app: App, name: str, wait: bool, downloads: bool, path: str, workers: bool
) -> Progress:
    """After Ctrl-C (SIGTERM, SIGHUP): if nothing was left for the run (every row finished,
    every video asked for on disk or given up), its batch is finished by the one rule and
    the run ends as a normal end would; else it says how to go on and exits 130."""
    progress = None
    try:
        with stops_as_ctrl_c():  # a second stop: how to go on, as below
            app.service.finish_batches()
            progress = next(
                app.service.watch(
                    name,
                    wait_for_videos=wait,
                    downloading=downloads or None,
                    wait_for_downloads=downloads and wait,
                )
            )
    except KeyboardInterrupt:
        pass
    if progress is not None and progress.done == progress.total and not progress.downloads_left:
        echo("stopped, with nothing left to do: writing the results", err=True)
        return progress
    if workers:
        echo(
            f"stopped following; the workers go on: once `veo-batch status {quote(name)} --watch` "
            f"has ended, `veo-batch export {quote(name)} -o {quote(path)}` writes the final "
            "results",
            err=True,
        )
    else:
        echo(
            "stopped: submissions in flight were recorded; polls and downloads in "
            "flight are due again; rows not sent are pending again. Run the same "
            "command to go on.",
            err=True,
        )
    sys.exit(ExitCode.INTERRUPTED)


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


def _on_mock(settings: Settings, url: str) -> Settings:
    """The settings pointed at the mock provider; its videos take MOCK_TASK_SECONDS, so no
    need to wait longer than that for the first poll."""
    return dataclasses.replace(
        settings,
        api_base=url,
        api_key=Secret(MOCK_KEY),
        poll_delay=min(settings.poll_delay, MOCK_TASK_SECONDS),
    )


def _call_webhooks(app: App) -> None:
    """The webhook calls due (this batch finished or paused): one try each, here; a call
    that fails is tried again by the next run or by the scheduler."""
    arrived = app.service.deliver_webhooks()
    if arrived:
        echo(f"webhook told ({arrived:,} call{'s' if arrived > 1 else ''})", err=True)


def _print_run(app: App, name: str, progress: Progress, path: str) -> None:
    batch = app.service.status(name)
    write_export(path, app.service.export(name, export_format(path, None)))
    counts = [(status, batch.counts.get(status, 0)) for status in STATUS_ORDER]
    table(["STATUS", "ROWS"], [(s, f"{n:,}") for s, n in counts if n])
    if batch.error_kinds:
        kinds = ", ".join(f"{kind} ×{count:,}" for kind, count in batch.error_kinds)
        echo(f"errors: {kinds}")
    if (spent := spend_line(batch, app.settings.currency)) is not None:
        echo(spent)
    echo(f"results: {path}")
    if batch.state == BatchState.PAUSED:
        _exit_paused(name, batch.pause_reason)
    succeeded = batch.counts.get(JobStatus.SUCCEEDED, 0)
    # Videos given up on (still due ones are being fetched, by the workers).
    unsaved = (
        succeeded - progress.downloaded - progress.downloads_due if progress.downloading else 0
    )
    if progress.downloading:
        echo(f"videos on disk: {progress.downloaded:,} of {succeeded:,}")
        if unsaved:
            echo(
                f"{plural(unsaved, 'video')} not saved (the rows stay succeeded; "
                f"`veo-batch jobs {quote(name)} --status succeeded` shows download_error); run "
                "again "
                "to retry them",
                err=True,
            )
    unfinished = batch.counts.get(JobStatus.FAILED, 0) + batch.counts.get(JobStatus.IN_DOUBT, 0)
    if unfinished:
        echo(
            f"{rows_text(unfinished)} failed or {is_are(unfinished)} in doubt: "
            f"`veo-batch jobs {quote(name)} --status "
            f"failed` says why; `veo-batch rerun {quote(name)}` sends them again "
            "(`--kind timeout`: "
            "polls their tasks again)",
            err=True,
        )
        sys.exit(ExitCode.ROWS_FAILED)
    if unsaved:
        sys.exit(ExitCode.DOWNLOADS_FAILED)


def _exit_paused(name: str, reason: str | None) -> None:
    click.secho(f"batch {name!r} is paused: {reason}", err=True, fg="red")
    echo(f"fix the cause, then: veo-batch resume {quote(name)} && veo-batch run ...", err=True)
    sys.exit(ExitCode.PAUSED)
