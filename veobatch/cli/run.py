"""`veo-batch run`: load a file, then take its rows to videos (here, or by the workers)."""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path

import click
import httpx
from sqlalchemy.engine import Engine

from veobatch.cli.app import App, cli, pass_app
from veobatch.cli.files import load_file
from veobatch.cli.options import batch_option, format_option, webhook_option
from veobatch.cli.progress import progress_line
from veobatch.cli.table import render
from veobatch.embedded_runner import EmbeddedRunner, watch
from veobatch.embedded_runner import Progress as RunProgress
from veobatch.engine import transitions, webhooks
from veobatch.engine.poll_rules import Pacing, claim_for
from veobatch.engine.rate_limit import LocalRateLimiter
from veobatch.errors import (
    BatchStateError,
    ConfigError,
    ExitCode,
)
from veobatch.process import lease_for
from veobatch.provider.client import ProviderClient
from veobatch.provider.mock import MockConfig, MockProvider
from veobatch.settings import Secret, Settings
from veobatch.states import BatchState, JobStatus
from veobatch.store.export import export_format, export_rows, write_export
from veobatch.store.queries import (
    STATUS_ORDER,
    batch_id,
    batch_summaries,
    error_kinds,
    select_jobs,
)

MOCK_TASK_SECONDS = 3.0  # how long `run --mock` takes to "generate" a video

# ---------------------------------------------------------------------------------- run


@cli.command()
@click.argument("file", metavar="FILE")
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
    default=4,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Requests in flight at once (the rate limit still applies).",
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
@pass_app
def run(
    app: App,
    file: str,
    batch_name: str | None,
    file_format: str | None,
    skip_invalid: bool,
    mock: bool,
    concurrency: int,
    output: str | None,
    download_dir: str | None,
    wait: bool,
    webhook_url: str | None,
) -> None:
    """Load FILE, submit its rows and follow each task to its video, in this process
    (SQLite by default, no Redis needed); then print a summary and export the results.

    Every row ends with a video URL (and, with --download, the file with its size and
    sha256) or an error that explains itself: the provider's reason when generation failed,
    `timeout` after VEO_POLL_DEADLINE. A row whose request may have reached the provider
    without an answer is left `in_doubt` and never resent on its own (the provider has no
    idempotency key: a resend may pay twice). A 401 or an empty balance pauses the batch.
    Ctrl-C stops cleanly; running the same command again resumes: it sends nothing twice
    and polls the tasks already made.

    \b
    Exit codes: 0 every row succeeded (with --no-wait: has a task); 8 some rows failed or
    are in doubt; 9 the batch is paused (the message says why); 130 stopped with Ctrl-C.
    A video that could not be downloaded is reported but does not fail the row.

    \b
    Examples:
      veo-batch run jobs.example.yaml --mock --download videos
      VEO_API_BASE=https://relay.example VEO_API_KEY=sk-... VEO_RATE=10/min veo-batch run jobs.csv
      veo-batch --max-in-flight 20 run jobs.csv --no-wait
    """
    result = load_file(app, file, batch_name, file_format, skip_invalid)
    if result.rejected:
        sys.exit(ExitCode.INVALID_ROWS)
    settings = app.settings
    if webhook_url is not None:
        with app.engine.begin() as conn:
            transitions.set_webhook(conn, batch_id(conn, result.batch), webhook_url)
    with app.engine.connect() as conn:
        batch = batch_summaries(conn, result.batch)[0]
    if batch.state == BatchState.CANCELLED:
        raise BatchStateError(f"batch {batch.name!r} was cancelled")
    if batch.state == BatchState.PAUSED:
        _exit_paused(batch.name, batch.pause_reason)
    if settings.redis_url and not mock:
        click.echo(
            "VEO_REDIS_URL is set: the rows go to the workers (`veo-batch scheduler` and "
            "`veo-batch worker` must be running); following the batch",
            err=True,
        )
        if download_dir:
            click.echo(
                "--download is for runs in this process: the workers download into their "
                "own VEO_DOWNLOAD_DIR (set it on the scheduler and the workers)",
                err=True,
            )
        try:
            progress = watch(
                app.engine, batch.id, wait_for_videos=wait,
                downloading=settings.download_dir is not None, on_progress=progress_line(),
            )  # fmt: skip
        except KeyboardInterrupt:
            click.echo(f"\nstopped following; the workers go on: veo-batch status {batch.name}",
                       err=True)  # fmt: skip
            sys.exit(130)
    else:
        videos = download_dir or settings.download_dir
        runner = partial(
            EmbeddedRunner, concurrency=concurrency, lease=lease_for(settings),
            pacing=_pacing(settings, mock), max_in_flight=settings.max_in_flight,
            poll_claim=claim_for(settings.poll_rate or settings.rate, 4 * concurrency),
            wait_for_videos=wait, download_dir=Path(videos) if videos else None,
            on_progress=progress_line(),
        )  # fmt: skip
        progress = _run_embedded(settings, app.engine, batch.id, mock, runner)
        _call_webhooks(app)
    _print_run(app, result.batch, progress, output)


def _call_webhooks(app: App) -> None:
    """The webhook calls due (this batch finished or paused): one try each, here; a call
    that fails is tried again by the next run or by the scheduler."""
    with httpx.Client() as http:
        arrived = webhooks.deliver_due(
            app.engine, http, app.settings.webhook_secret, transitions.utcnow()
        )
    if arrived:
        click.echo(f"webhook told ({arrived:,} call{'s' if arrived > 1 else ''})", err=True)


def _pacing(settings: Settings, mock: bool) -> Pacing:
    """The settings' pacing; the mock's videos take MOCK_TASK_SECONDS, so no need to wait
    longer than that for the first poll."""
    pacing = Pacing.of(settings)
    return (
        dataclasses.replace(pacing, delay=min(pacing.delay, MOCK_TASK_SECONDS)) if mock else pacing
    )


def _run_embedded(
    settings: Settings,
    engine: Engine,
    batch: int,
    mock: bool,
    runner: Callable[..., EmbeddedRunner],
) -> RunProgress:
    """Work on the batch from this process (with the mock provider with `mock`)."""
    with contextlib.ExitStack() as stack:
        if mock:
            config = MockConfig(api_key="mock-key", task_seconds=MOCK_TASK_SECONDS)
            provider = stack.enter_context(MockProvider(config))
            base, key = provider.url, Secret("mock-key")
            click.echo(f"sending to the mock provider at {base} (nothing is spent)", err=True)
        elif settings.api_base is None or settings.api_key is None:
            raise ConfigError(
                "set VEO_API_BASE and VEO_API_KEY to send to the provider, or try --mock"
            )
        else:
            base, key = settings.api_base, settings.api_key
        client = stack.enter_context(
            ProviderClient(
                base,
                key,
                connect_timeout=settings.connect_timeout,
                read_timeout=settings.read_timeout,
            )
        )
        limiter = LocalRateLimiter.for_rate(settings.rate)
        poll_limiter = LocalRateLimiter.for_rate(settings.poll_rate) if settings.poll_rate else None
        try:
            return runner(engine, client, limiter, batch, poll_limiter=poll_limiter).run()
        except KeyboardInterrupt:
            click.echo(
                "\nstopped: requests in flight were recorded; rows not sent are "
                "pending again. Run the same command to go on.",
                err=True,
            )
            sys.exit(130)


def _print_run(app: App, name: str, progress: RunProgress, output: str | None) -> None:
    if sys.stderr.isatty():
        click.echo("", err=True)
    with app.engine.connect() as conn:
        batch = batch_summaries(conn, name)[0]
        kinds = error_kinds(conn, batch.id)
        path = output or f"{name}.results.csv"
        columns, rows = export_rows(conn, select_jobs(batch.id))
        write_export(path, export_format(path, None), columns, rows)
    counts = [(status, batch.counts.get(status, 0)) for status in STATUS_ORDER]
    click.echo(render(["STATUS", "ROWS"], [(s, f"{n:,}") for s, n in counts if n]))
    if kinds:
        click.echo("errors: " + ", ".join(f"{kind} ×{count:,}" for kind, count in kinds))
    click.echo(f"results: {path}")
    if batch.state == BatchState.PAUSED:
        _exit_paused(name, batch.pause_reason)
    if progress.downloaded or progress.downloads_due:
        click.echo(
            f"videos on disk: {progress.downloaded:,} of {batch.counts.get('succeeded', 0):,}"
        )
        if progress.download_errors:
            click.echo(
                f"{progress.download_errors:,} downloads failed (the rows stay succeeded; "
                "`veo-batch jobs NAME --status succeeded` shows download_error); run again to "
                "retry them",
                err=True,
            )
    unfinished = batch.counts.get(JobStatus.FAILED, 0) + batch.counts.get(JobStatus.IN_DOUBT, 0)
    if unfinished:
        click.echo(
            f"{unfinished:,} rows failed or are in doubt: `veo-batch jobs {name} --status "
            f"failed` says why; `veo-batch rerun {name}` sends them again (`--kind timeout`: "
            "polls their tasks again)",
            err=True,
        )
        sys.exit(ExitCode.ROWS_FAILED)


def _exit_paused(name: str, reason: str | None) -> None:
    click.secho(f"batch {name!r} is paused: {reason}", err=True, fg="red")
    click.echo(f"fix the cause, then: veo-batch resume {name} && veo-batch run ...", err=True)
    sys.exit(ExitCode.PAUSED)
