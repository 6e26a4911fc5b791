"""The `veo-batch` command line."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import click
import redis
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from veobatch import db, transitions
from veobatch.errors import (
    BatchStateError,
    ConfigError,
    DatabaseError,
    ExitCode,
    JobFileError,
    VeoBatchError,
)
from veobatch.export import EXPORT_FORMATS, export_format, export_rows, write_export
from veobatch.loader import LoadResult, Progress, load_rows
from veobatch.mockapi import MockConfig, MockProvider
from veobatch.polling import Pacing, claim_for
from veobatch.problems import DEFAULT_MAX_PROBLEMS
from veobatch.provider import ProviderClient
from veobatch.ratelimit import LocalRateLimiter
from veobatch.runner import EmbeddedRunner, snapshot, watch
from veobatch.runner import Progress as RunProgress
from veobatch.services import lease_for
from veobatch.settings import SETTINGS, Secret, Settings
from veobatch.sources import FORMATS, open_job_file
from veobatch.states import BatchState, ErrorKind, JobStatus
from veobatch.store import (
    STATUS_ORDER,
    attempts_of,
    batch_id,
    batch_summaries,
    count_jobs,
    error_kinds,
    select_jobs,
    stream_jobs,
    utc,
)
from veobatch.table import clip, render

F = TypeVar("F", bound=Callable[..., Any])

MOCK_TASK_SECONDS = 3.0  # how long `run --mock` takes to "generate" a video

EXIT_CODES_HELP = """\b
Exit codes:
  0  done
  1  the job file has invalid rows; nothing was stored
  2  usage error (a bad option or argument)
  3  the file is not a readable job file (syntax, encoding, binary, empty)
  4  the database cannot be reached or is not migrated
  5  no such batch
  6  a setting is malformed
  7  the batch's state forbids the operation (e.g. it was cancelled)
  8  run: some rows failed or are in doubt
  9  run: the batch is paused (the message says why)
"""


class App:
    """What every command shares: the settings, and the database opened on first use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._engine: Engine | None = None

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = db.open_database(self.settings.database_url)
        return self._engine


class VeoGroup(click.Group):
    """Turns our errors into one clear line on stderr and the documented exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except VeoBatchError as exc:
            click.secho(f"error: {exc}", err=True, fg="red")
            ctx.exit(exc.exit_code)
        except OperationalError as exc:
            click.secho(
                f"error: {DatabaseError(f'database error: {exc.orig}')}", err=True, fg="red"
            )
            ctx.exit(ExitCode.DATABASE)


def setting_options(command: F) -> F:
    for spec in reversed(SETTINGS):
        command = click.option(
            f"--{spec.name.replace('_', '-')}",
            spec.name,
            envvar=spec.env,
            show_envvar=True,
            help=spec.help,
            metavar="TEXT",
        )(command)
    return command


@click.group(
    cls=VeoGroup, epilog=EXIT_CODES_HELP, context_settings={"help_option_names": ["-h", "--help"]}
)
@setting_options
@click.version_option(package_name="veo-batch")
@click.pass_context
def cli(ctx: click.Context, /, **values: str | None) -> None:
    """Run batches of Veo image-to-video jobs: load a job file, submit its rows under the
    provider's rate limits, and keep every row's task id or error.

    \b
    Quick start:
      veo-batch load jobs.example.yaml      # check and store the jobs
      veo-batch status                      # batches and their counts
      veo-batch export jobs.example -o out.csv

    Every setting is an environment variable (VEO_...) or the option before the command.
    """
    try:
        ctx.obj = App(Settings.from_values(values))
    except VeoBatchError as exc:
        click.secho(f"error: {exc}", err=True, fg="red")
        ctx.exit(exc.exit_code)


pass_app = click.make_pass_decorator(App)


# ---------------------------------------------------------------------------------- load

batch_option = click.option(
    "--batch",
    "-b",
    "batch_name",
    metavar="NAME",
    help="Batch name (default: the file name without its extension).",
)
format_option = click.option(
    "--format",
    "file_format",
    type=click.Choice(FORMATS),
    help="File format, when the extension does not say (required for stdin).",
)


@cli.command()
@click.argument("file", metavar="FILE")
@batch_option
@format_option
@click.option(
    "--skip-invalid",
    is_flag=True,
    help="Store the valid rows and keep invalid ones as failed (error kind 'invalid').",
)
@click.option("--dry-run", is_flag=True, help="Check every row and print a summary; store nothing.")
@click.option(
    "--max-problems",
    default=DEFAULT_MAX_PROBLEMS,
    show_default=True,
    metavar="N",
    type=click.IntRange(min=1),
    help="How many problems to list before only counting.",
)
@pass_app
def load(
    app: App,
    file: str,
    batch_name: str | None,
    file_format: str | None,
    skip_invalid: bool,
    dry_run: bool,
    max_problems: int,
) -> None:
    """Check every row of FILE (CSV, YAML or JSON Lines; `-` for stdin) and store it as a batch.

    By default a file with any invalid row stores nothing: every problem is listed as
    FILE:LINE: FIELD: what is wrong. Loading the same file into the same batch again adds only
    the rows the batch does not have (rows are matched by their `id`, else their line).

    \b
    Examples:
      veo-batch load jobs.yaml --dry-run
      veo-batch load products.csv --batch spring-sale
      generate-jobs | veo-batch load - --format jsonl --batch nightly
    """
    result = _load_file(app, file, batch_name, file_format, skip_invalid, dry_run, max_problems)
    if result.rejected:
        sys.exit(ExitCode.INVALID_ROWS)
    if not dry_run:
        click.echo(f"next: veo-batch status {result.batch}")


def _load_file(
    app: App,
    file: str,
    batch_name: str | None,
    file_format: str | None,
    skip_invalid: bool,
    dry_run: bool = False,
    max_problems: int = DEFAULT_MAX_PROBLEMS,
) -> LoadResult:
    """What `load` does, and `run` before it submits: check, store, report."""
    name = _batch_name(batch_name, file)
    started = time.monotonic()
    engine = None if dry_run else app.engine
    with open_job_file(file, file_format) as job_file:
        result = load_rows(
            engine,
            job_file.rows(),
            batch=name,
            source=job_file.name if job_file.name == "<stdin>" else str(Path(file).resolve()),
            models=app.settings.models,
            skip_invalid=skip_invalid,
            dry_run=dry_run,
            max_problems=max_problems,
            progress=_progress_printer(job_file.size),
            position=job_file.position,
        )
        _print_load(job_file.name, result, dry_run, time.monotonic() - started)
    return result


def _batch_name(given: str | None, file: str) -> str:
    """The --batch name, else the file's name without its extension."""
    if given is None:
        if file == "-":
            raise JobFileError("<stdin>", "name the batch with --batch when reading standard input")
        given = Path(file).name.rsplit(".", 1)[0] or Path(file).name
    if not given.strip() or given != given.strip() or len(given) > 200:
        raise click.BadParameter(
            "a batch name is 1 to 200 characters, without spaces around it", param_hint="--batch"
        )
    return given


def _progress_printer(size: int | None) -> Progress | None:
    """Rows checked so far (and how much of the file) on stderr, when it is a terminal."""
    if not sys.stderr.isatty():
        return None

    def show(rows: int, position: int | None) -> None:
        share = f" ({100 * position / size:.0f}%)" if position is not None and size else ""
        click.echo(f"\rchecked {rows:,} rows{share}", nl=False, err=True)

    return show


def _print_load(name: str, result: LoadResult, dry_run: bool, seconds: float) -> None:
    if sys.stderr.isatty():
        click.echo("\r\033[K", nl=False, err=True)
    report = result.report
    for line in report.lines():
        click.echo(line, err=True)
    click.echo(
        f"{name}: {result.rows:,} rows checked, {result.valid:,} valid"
        + (f", {report.invalid_rows:,} invalid ({report.total:,} problems)" if report else "")
    )
    if result.models:
        click.echo("  models: " + ", ".join(f"{m} ×{n:,}" for m, n in result.models.most_common()))
        click.echo(
            "  images per job: "
            + ", ".join(f"{k} ×{n:,}" for k, n in sorted(result.image_counts.items()))
        )
    if result.ignored_fields:
        click.echo(
            f"  ignored result columns of an export: {', '.join(sorted(result.ignored_fields))}"
        )
    if dry_run:
        click.echo("dry run: nothing was stored")
        return
    if result.rejected:
        click.secho(
            "nothing was stored: fix the rows above and load again, or load the valid rows "
            "with --skip-invalid (invalid rows are then kept as failed)",
            err=True,
            fg="red",
        )
        return
    rate = f" ({result.rows / seconds:,.0f} rows/s)" if result.rows >= 10_000 else ""
    kind = "new" if result.created else "existing"
    click.echo(
        f"batch {result.batch!r} ({kind}): stored {result.stored:,} "
        f"rows in {seconds:.1f} s{rate}"
        + (
            f"; {result.already_present:,} were already in the batch"
            if result.already_present
            else ""
        )
    )
    if result.invalid_kept:
        click.echo(
            f"  {result.invalid_kept:,} invalid rows stored as failed (error kind 'invalid')"
        )
    if result.invalid_kept < report.invalid_rows:
        skipped = report.invalid_rows - result.invalid_kept
        click.echo(f"  {skipped:,} rows not stored: their id was already taken in the file")


# ---------------------------------------------------------------------------------- status


@cli.command()
@click.argument("name", required=False)
@click.option(
    "--watch",
    "-w",
    is_flag=True,
    help="Follow batch NAME live: waiting, submitting, generating (with the provider's "
    "progress), succeeded, failed, in doubt; rate and ETA. Ends when nothing is left to do.",
)
@click.option(
    "--every",
    default=2.0,
    show_default=True,
    type=click.FloatRange(min=0.2),
    help="Seconds between updates with --watch.",
)
@pass_app
def status(app: App, name: str | None, watch: bool, every: float) -> None:
    """Batches with their row counts per status (one batch, with its errors, if NAME is given).

    \b
    Examples:
      veo-batch status
      veo-batch status spring-sale
      veo-batch status spring-sale --watch
    """
    if watch:
        if name is None:
            raise click.UsageError("--watch follows one batch: veo-batch status NAME --watch")
        _watch_status(app, name, every)
        return
    with app.engine.connect() as conn:
        summaries = batch_summaries(conn, name)
        kinds = error_kinds(conn, summaries[0].id) if name else []
    if not summaries:
        click.echo("no batches yet: veo-batch load FILE")
        return
    headers = ["BATCH", "STATE", "TOTAL", *(s.upper() for s in STATUS_ORDER)]
    rows = [
        [s.name, s.state, f"{s.total:,}", *(f"{s.counts.get(st, 0):,}" for st in STATUS_ORDER)]
        for s in summaries
    ]
    click.echo(render(headers, rows))
    for summary in summaries:
        if summary.pause_reason:
            click.echo(f"{summary.name}: paused: {summary.pause_reason}")
    if kinds:
        click.echo("errors: " + ", ".join(f"{kind} ×{count:,}" for kind, count in kinds))


def _watch_status(app: App, name: str, every: float) -> None:
    with app.engine.connect() as conn:
        bid = batch_id(conn, name)
    tty = sys.stderr.isatty()
    show = _progress_line(every=0.0)
    progress = snapshot(app.engine, bid)
    progress.downloading = app.settings.download_dir is not None or progress.downloaded > 0
    progress.done_at_start = progress.done
    try:
        while True:
            show(progress)
            if progress.state != BatchState.ACTIVE or not progress.of(*transitions.OPEN):
                break
            time.sleep(every)
            progress = snapshot(app.engine, bid, progress)
    except KeyboardInterrupt:
        pass
    if tty:
        click.echo("", err=True)


# ---------------------------------------------------------------------------------- jobs


def _split(values: Sequence[str]) -> list[str]:
    """Values given as repeated options and/or separated by commas."""
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def _one_of(allowed: Sequence[str], what: str) -> Callable[..., list[str]]:
    """A click callback: the option's values, split on commas, each one of `allowed`."""

    def check(_ctx: click.Context, _param: click.Parameter, values: Sequence[str]) -> list[str]:
        chosen = _split(values)
        unknown = [v for v in chosen if v not in allowed]
        if unknown:
            raise click.BadParameter(
                f"unknown {what} {', '.join(unknown)}; one of {', '.join(allowed)}"
            )
        return chosen

    return check


ERROR_KINDS = tuple(kind.value for kind in ErrorKind)
status_option = click.option(
    "--status",
    "-s",
    "statuses",
    multiple=True,
    metavar="STATUS",
    callback=_one_of(STATUS_ORDER, "status"),
    help=f"Only rows in this status (repeat or comma-separate): {', '.join(STATUS_ORDER)}.",
)
kind_option = click.option(
    "--kind",
    "-k",
    "kinds",
    multiple=True,
    metavar="KIND",
    callback=_one_of(ERROR_KINDS, "error kind"),
    help=f"Only rows with this error kind: {', '.join(ERROR_KINDS)}.",
)


@cli.command()
@click.argument("name")
@status_option
@kind_option
@click.option("--id", "refs", multiple=True, metavar="REF", help="Only the row with this id.")
@click.option(
    "--limit",
    default=100,
    show_default=True,
    type=click.IntRange(min=0),
    help="Show at most this many rows (0: all).",
)
@pass_app
def jobs(
    app: App,
    name: str,
    statuses: Sequence[str],
    kinds: Sequence[str],
    refs: Sequence[str],
    limit: int,
) -> None:
    """The rows of batch NAME with their status, task id and error; with --id, each row's
    whole story: its video (URL, file, size, sha256) and every submission, poll (the ones
    that changed something) and download, with time, HTTP status, remote status and error.

    \b
    Examples:
      veo-batch jobs spring-sale --status failed
      veo-batch jobs spring-sale --kind invalid,server --limit 0
      veo-batch jobs spring-sale --id sku-4512
    """
    history: list[list[object]] = []
    with app.engine.connect() as conn:
        query = select_jobs(batch_id(conn, name), statuses, kinds, _split(refs))
        total = count_jobs(conn, query)
        if refs:
            history = [
                [job_ref, utc(a.at), a.action, a.http_status, a.task_id, a.remote_status,
                 a.error_kind, clip(a.error or "", 70)]
                for job_ref, a in attempts_of(conn, query)
            ]  # fmt: skip
        rows = []
        details: list[str] = []
        for job in stream_jobs(conn, query.limit(limit) if limit else query):
            if refs:
                details.append(_job_details(job))
            rows.append(
                [
                    job.ref,
                    job.line,
                    job.status,
                    job.model,
                    job.task_id,
                    job.error_kind,
                    job.http_status,
                    clip(job.error or "", 90),
                ]
            )
    if not rows:
        click.echo("no rows match")
        return
    click.echo(render(["ID", "LINE", "STATUS", "MODEL", "TASK_ID", "KIND", "HTTP", "ERROR"], rows))
    if total > len(rows):
        click.echo(f"showing {len(rows):,} of {total:,} rows; --limit 0 shows all")
    for block in details:
        click.echo("\n" + block)
    if history:
        headers = ["ID", "AT", "ACTION", "HTTP", "TASK_ID", "REMOTE", "KIND", "ERROR"]
        click.echo("\n" + render(headers, history))


def _job_details(job: Any) -> str:
    """One row's result fields, one per line (only those that are set)."""
    fields = {
        "remote status": " ".join(p for p in (job.remote_status, job.progress) if p),
        "polls": job.polls or "",
        "submitted at": utc(job.submitted_at) or "",
        "finished at": utc(job.finished_at) or "",
        "video url": job.video_url or "",
        "video file": job.video_path or "",
        "video bytes": f"{job.video_bytes:,}" if job.video_bytes is not None else "",
        "video sha256": job.video_sha256 or "",
        "download error": job.download_error or "",
        "error": job.error or "",
    }
    lines = [f"  {key}: {value}" for key, value in fields.items() if value != ""]
    return "\n".join([f"{job.ref} ({job.status}):", *lines])


# ---------------------------------------------------------------------------------- export


@cli.command()
@click.argument("name")
@click.option(
    "--output",
    "-o",
    required=True,
    metavar="FILE",
    help="Where to write: a .csv or .jsonl path, or - for standard output.",
)
@click.option(
    "--format",
    "out_format",
    type=click.Choice(EXPORT_FORMATS),
    help="Output format, when the extension does not say.",
)
@status_option
@kind_option
@pass_app
def export(
    app: App,
    name: str,
    output: str,
    out_format: str | None,
    statuses: Sequence[str],
    kinds: Sequence[str],
) -> None:
    """Write every row of batch NAME with its input fields and its outcome: status, task_id,
    error, error_kind, http_status, timestamps and video_url.

    \b
    Examples:
      veo-batch export spring-sale -o results.csv
      veo-batch export spring-sale -o failed.jsonl --status failed
    """
    fmt = export_format(output, out_format) if output != "-" else (out_format or "csv")
    with app.engine.connect() as conn:
        columns, rows = export_rows(conn, select_jobs(batch_id(conn, name), statuses, kinds))
        count = write_export(output, fmt, columns, rows, stdout=sys.stdout)
    if output != "-":
        click.echo(f"wrote {count:,} rows to {output}", err=True)


# ---------------------------------------------------------------------------------- db


@cli.group("db")
def db_group() -> None:
    """Database schema: migrate and inspect (SQLite migrates itself on first use)."""


@db_group.command()
@click.pass_obj
def upgrade(app: App) -> None:
    """Migrate the database (VEO_DATABASE_URL) to the newest schema."""
    url = app.settings.database_url
    engine = db.open_database(url, migrate=True)
    click.echo(f"{db.safe_url(url)}: at revision {db.current_revision(engine)} (newest)")


@db_group.command()
@click.pass_obj
def current(app: App) -> None:
    """Print the database's schema revision and the newest one."""
    url = app.settings.database_url
    revision = db.current_revision(db.create_engine(url))
    click.echo(
        f"{db.safe_url(url)}: at revision {revision or 'none'}; newest is {db.head_revision()}"
    )


# ---------------------------------------------------------------------------------- mock-api


@cli.command("mock-api")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8787, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--key",
    envvar="VEO_API_KEY",
    default="mock-key",
    show_default=True,
    help="The API key it accepts (default: VEO_API_KEY when set).",
)
@click.option("--limit", type=click.IntRange(min=1), help="Requests allowed per --window.")
@click.option(
    "--window",
    default=60.0,
    show_default=True,
    type=click.FloatRange(min=0.001),
    help="Seconds of the sliding request window.",
)
@click.option("--balance", type=click.IntRange(min=0), help="Tasks it creates before 403 quota.")
@click.option(
    "--task-seconds",
    default=0.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="How long a task takes to finish.",
)
@click.option(
    "--failure-rate",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Share of tasks that end in FAILURE.",
)
@click.option(
    "--video-bytes",
    default=64 * 1024,
    show_default=True,
    type=click.IntRange(min=1),
    help="Size of each video it serves.",
)
@click.option("--seed", default=0, show_default=True, help="Seed of the failure draw.")
def mock_api(
    host: str,
    port: int,
    key: str,
    limit: int | None,
    window: float,
    balance: int | None,
    task_seconds: float,
    failure_rate: float,
    video_bytes: int,
    seed: int,
) -> None:
    """Serve a local stand-in for the Veo relay API: both endpoints, its error shapes and
    limits, and faults on demand. Nothing is spent; use it for dry runs, demos and tests.

    A marker in a job's prompt asks for a fault: [mock:status=502], [mock:drop-before],
    [mock:drop-after], [mock:slow=SECONDS], [mock:fail], [mock:no-task-id],
    [mock:cut-video] (the first download of its video stops halfway). GET /_mock/stats
    tells requests, polls, 429s, the busiest window, tasks per prompt and the most tasks
    generating at once.

    \b
    Examples:
      veo-batch mock-api --port 8787 --limit 20 --window 60
      VEO_API_BASE=http://127.0.0.1:8787 VEO_API_KEY=mock-key veo-batch ...
    """
    config = MockConfig(
        api_key=key,
        limit=limit,
        window=window,
        balance=balance,
        task_seconds=task_seconds,
        failure_rate=failure_rate,
        video_bytes=video_bytes,
        seed=seed,
    )
    server = MockProvider(config, host, port)
    where = "from VEO_API_KEY" if key != "mock-key" else "mock-key"
    click.echo(f"mock provider on {server.url} (key: {where}); Ctrl-C stops it", err=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


# ---------------------------------------------------------------------------------- distributed


def _export_settings(values: dict[str, str | None]) -> None:
    """Hand the resolved settings to the processes a command starts (Celery's children)."""
    for spec in SETTINGS:
        value = values.get(spec.name)
        if value:
            os.environ[spec.env] = value


@cli.command(context_settings={"ignore_unknown_options": True})
@click.option(
    "--concurrency",
    "-c",
    default=4,
    show_default=True,
    type=click.IntRange(min=1),
    help="Worker processes (each sends one request at a time).",
)
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def worker(ctx: click.Context, concurrency: int, celery_args: tuple[str, ...]) -> None:
    """Start a Celery worker that submits rows (needs VEO_REDIS_URL, VEO_DATABASE_URL on
    PostgreSQL, VEO_API_BASE and VEO_API_KEY). Run one per host, as many hosts as you like;
    they share one rate limit through Redis. Extra arguments go to `celery worker`.

    \b
    Examples:
      veo-batch worker --concurrency 8
      celery -A worker worker --concurrency 8      # the same, with celery's own command
    """
    app: App = ctx.obj
    if not app.settings.redis_url:
        raise ConfigError("a worker needs VEO_REDIS_URL (the queue and the shared rate limit)")
    app.engine  # noqa: B018 - fail here, clearly, if the database is not migrated
    _export_settings(ctx.parent.params if ctx.parent else {})
    from worker.app import make_app  # noqa: PLC0415 - built from the settings just exported

    make_app(Settings.from_env(os.environ)).worker_main(
        ["worker", "--loglevel=INFO", f"--concurrency={concurrency}", *celery_args]
    )


@cli.command("scheduler")
@click.option(
    "--tick",
    default=1.0,
    show_default=True,
    type=click.FloatRange(min=0.05),
    help="Seconds between rounds.",
)
@click.option(
    "--depth",
    type=click.IntRange(min=1),
    help="Rows kept queued for the workers (default: ten seconds at VEO_RATE).",
)
@pass_app
def scheduler_command(app: App, tick: float, depth: int | None) -> None:
    """Release pending rows to the workers as fast as the rate allows (and never more than
    VEO_MAX_IN_FLIGHT generating), send due polls in groups, send downloads (if
    VEO_DOWNLOAD_DIR is set: set it on the workers too), re-send rows whose message was
    lost, mark rows whose worker died mid-request as in doubt, and finish batches. Run one;
    a second one started by mistake waits for the first.

    \b
    Example:
      VEO_REDIS_URL=redis://localhost:6379/0 veo-batch scheduler
    """
    settings = app.settings
    if not settings.redis_url:
        raise ConfigError("the scheduler needs VEO_REDIS_URL")
    from scheduler.loop import Scheduler, poll_group, queue_depth  # noqa: PLC0415
    from worker.app import make_app  # noqa: PLC0415

    depth = depth or queue_depth(settings.rate)
    loop = Scheduler(
        app.engine, redis.Redis.from_url(settings.redis_url), make_app(settings),
        depth=depth, tick=tick, max_in_flight=settings.max_in_flight,
        poll_group=poll_group(settings.poll_rate or settings.rate),
        poll_claim=claim_for(settings.poll_rate or settings.rate, depth),
        downloads=settings.download_dir is not None,
    )  # fmt: skip
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    cap = settings.max_in_flight or "none"
    click.echo(
        f"scheduler running (tick {tick}s, depth {loop.depth}, in-flight cap {cap}, downloads "
        f"{'on' if loop.downloads else 'off'}); Ctrl-C stops it",
        err=True,
    )
    with contextlib.suppress(KeyboardInterrupt):
        loop.run(stop)


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
    result = _load_file(app, file, batch_name, file_format, skip_invalid)
    if result.rejected:
        sys.exit(ExitCode.INVALID_ROWS)
    settings = app.settings
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
        try:
            progress = watch(
                app.engine, batch.id, wait_for_videos=wait,
                downloading=settings.download_dir is not None, on_progress=_progress_line(),
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
            on_progress=_progress_line(),
        )  # fmt: skip
        progress = _run_embedded(settings, app.engine, batch.id, mock, runner)
    _print_run(app, result.batch, progress, output)


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


def _progress_line(every: float = 10.0) -> Callable[[RunProgress], None]:
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


# ---------------------------------------------------------------------------------- batches


@cli.command()
@click.argument("name")
@click.option(
    "--status",
    "-s",
    "statuses",
    multiple=True,
    metavar="STATUS",
    callback=_one_of(STATUS_ORDER, "status"),
    help="Rows in this status (default: failed).",
)
@kind_option
@click.option(
    "--in-doubt",
    is_flag=True,
    help="Also rows in doubt: they may already have a paid task (asks first).",
)
@click.option("--dry-run", is_flag=True, help="Count the rows; change nothing.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask (for scripts).")
@pass_app
def rerun(
    app: App,
    name: str,
    statuses: Sequence[str],
    kinds: Sequence[str],
    in_doubt: bool,
    dry_run: bool,
    yes: bool,
) -> None:
    """Put rows of batch NAME back to work: the next run (or the workers) sends them again
    as new tasks, except rows that timed out, whose task is polled again (nothing is paid
    twice for them). Their attempts stay in the history.

    \b
    Examples:
      veo-batch rerun spring-sale                      # the failed rows
      veo-batch rerun spring-sale --kind remote        # generation failed: new tasks
      veo-batch rerun spring-sale --kind timeout       # poll the same tasks again
      veo-batch rerun spring-sale --kind server,network
      veo-batch rerun spring-sale --in-doubt --yes     # may pay twice for some rows
    """
    chosen = list(statuses) or [JobStatus.FAILED.value]
    if in_doubt:
        chosen.append(JobStatus.IN_DOUBT.value)
    with app.engine.connect() as conn:
        query = select_jobs(batch_id(conn, name), chosen, kinds)
        count = count_jobs(conn, query)
    if dry_run or count == 0:
        click.echo(f"{count:,} rows match; nothing changed")
        return
    if in_doubt and not yes:
        click.confirm(
            f"{count:,} rows include rows in doubt: the provider may already have created (and "
            "billed) their tasks, and a resend pays again. Go on?",
            abort=True,
            err=True,
        )
    deadline = timedelta(seconds=app.settings.poll_deadline)
    with app.engine.begin() as conn:
        bid = batch_id(conn, name)
        sent, polled = transitions.rerun(
            conn, bid, transitions.utcnow(), chosen, kinds, deadline=deadline
        )
        state = transitions.reopen(conn, bid, transitions.utcnow())
    if sent:
        click.echo(f"{sent:,} rows are pending again; `veo-batch run` or the workers send them")
    if polled:
        click.echo(
            f"{polled:,} rows that timed out are generating again: their tasks are polled "
            "(for another VEO_POLL_DEADLINE) by `veo-batch run` or the workers"
        )
    if state == BatchState.PAUSED:
        click.echo(f"the batch is paused: `veo-batch resume {name}` once its cause is fixed")


def _set_state(app: App, name: str, change: Callable[..., object], done: str) -> None:
    with app.engine.begin() as conn:
        changed = change(conn, batch_id(conn, name), transitions.utcnow())
    if not changed:
        raise BatchStateError(f"batch {name!r} is not in a state that allows this")
    click.echo(done)


@cli.command()
@click.argument("name")
@pass_app
def pause(app: App, name: str) -> None:
    """Stop sending rows of batch NAME (requests in flight finish)."""
    _set_state(app, name, lambda conn, bid, now: transitions.pause(conn, bid, "paused by hand",
               now), f"batch {name!r} paused; `veo-batch resume {name}` goes on")  # fmt: skip


@cli.command()
@click.argument("name")
@pass_app
def resume(app: App, name: str) -> None:
    """Let batch NAME send again after a pause (fix what paused it first)."""
    _set_state(app, name, transitions.resume, f"batch {name!r} is active again")


@cli.command()
@click.argument("name")
@click.option("--yes", "-y", is_flag=True, help="Do not ask.")
@pass_app
def cancel(app: App, name: str, yes: bool) -> None:
    """Cancel batch NAME: rows not yet sent become cancelled (requests in flight finish)."""
    if not yes:
        click.confirm(f"cancel batch {name!r}? Its unsent rows will never be sent", abort=True)
    with app.engine.begin() as conn:
        rows = transitions.cancel(conn, batch_id(conn, name), transitions.utcnow())
    click.echo(f"batch {name!r} cancelled; {rows:,} rows will not be sent")


def main() -> None:
    cli(prog_name="veo-batch")


if __name__ == "__main__":
    main()
