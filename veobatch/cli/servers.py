"""Long-running and operator commands: `db`, `mock-api`, `worker`, `scheduler`."""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import sys
import threading

import click

from veobatch.cli.app import App, cli, pass_app
from veobatch.cli.output import echo
from veobatch.concurrency import REQUESTS_AT_ONCE, worker_processes
from veobatch.errors import (
    ConfigError,
)
from veobatch.settings import SETTINGS, Settings

# ---------------------------------------------------------------------------------- db


@cli.group("db")
def db_group() -> None:
    """Database schema: migrate and inspect (SQLite migrates itself on first use).

    \b
    Examples:
      VEO_DATABASE_URL=postgresql://veo@db/veo veo-batch db upgrade
      veo-batch db current
    """


@db_group.command()
@click.pass_obj
def upgrade(app: App) -> None:
    """Migrate the database (VEO_DATABASE_URL) to the newest schema. Safe to run again: a
    database already at the newest schema is left as it is.

    \b
    Example:
      veo-batch --database-url postgresql://veo@db/veo db upgrade
    """
    from veobatch.store import database  # noqa: PLC0415 - each command imports what it uses

    url = app.settings.database_url
    engine = database.open_database(url, migrate=True)
    echo(f"{database.safe_url(url)}: at revision {database.current_revision(engine)} (newest)")


@db_group.command()
@click.pass_obj
def current(app: App) -> None:
    """Print the database's schema revision and the newest one.

    \b
    Example:
      veo-batch db current     # sqlite:///./veo-batch.db: at revision 0003; newest is 0003
    """
    from veobatch.store import database  # noqa: PLC0415

    url = app.settings.database_url
    revision = database.current_revision(database.create_engine(url))
    echo(
        f"{database.safe_url(url)}: at revision {revision or 'none'}; "
        f"newest is {database.head_revision()}"
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
    "--down",
    type=click.IntRange(500, 599),
    help="Answer every request with this status, as a relay that is down (502: an HTML page).",
)
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
@click.option(
    "--clips/--text-videos",
    default=True,
    show_default=True,
    help="Serve each video as a real 3 s MP4 of a slow zoom over the job's first image (made "
    "once per image), or as --video-bytes of text (cheaper, for load tests).",
)
def mock_api(
    host: str,
    port: int,
    key: str,
    limit: int | None,
    window: float,
    balance: int | None,
    down: int | None,
    task_seconds: float,
    failure_rate: float,
    video_bytes: int,
    seed: int,
    clips: bool,
) -> None:
    """Serve a local stand-in for the Veo relay API: both endpoints, its error shapes and
    limits, and faults on demand. Nothing is spent; use it for dry runs, demos and tests.

    A marker in a job's prompt asks for a fault: [mock:status=502], [mock:drop-before],
    [mock:drop-after], [mock:slow=SECONDS], [mock:fail], [mock:no-task-id],
    [mock:task-id-size=N] (a task id N characters long), [mock:cut-video] (the first
    download of its video stops halfway), [mock:echo-key] (a 400 that echoes the caller's
    key), [mock:echo-key-poll] (poll answers that echo it).
    GET /_mock/stats tells requests, polls, 429s, the busiest window, tasks per prompt and
    the most tasks generating at once.

    \b
    Examples:
      veo-batch mock-api --port 8787 --limit 20 --window 60
      VEO_API_BASE=http://127.0.0.1:8787 VEO_API_KEY=mock-key veo-batch ...
    """
    from veobatch.provider.mock import MockConfig, MockProvider  # noqa: PLC0415 - only here

    config = MockConfig(
        api_key=key,
        limit=limit,
        window=window,
        balance=balance,
        down=down,
        task_seconds=task_seconds,
        failure_rate=failure_rate,
        video_bytes=video_bytes,
        seed=seed,
        clips=clips,
    )
    server = MockProvider(config, host, port)
    where = "from VEO_API_KEY" if key != "mock-key" else "mock-key"
    echo(f"mock provider on {server.url} (key: {where}); Ctrl-C stops it", err=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


# ---------------------------------------------------------------------------------- distributed


def _export_settings(values: dict[str, str | None]) -> None:
    """Hand the resolved settings to the processes a command starts (Celery's children)."""
    for spec in SETTINGS:
        value = values.get(spec.name)
        if value:
            os.environ[spec.env] = value


METRICS_PORT_HELP = "Serve Prometheus metrics on this port (default: none)."


@cli.command(context_settings={"ignore_unknown_options": True})
@click.option(
    "--concurrency",
    "-c",
    default=worker_processes,
    show_default="one per CPU",
    type=click.IntRange(min=1),
    help=f"Worker processes; each sends the rows of its messages {REQUESTS_AT_ONCE} at a time.",
)
@click.option("--metrics-port", type=click.IntRange(1, 65535), help=METRICS_PORT_HELP)
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def worker(
    ctx: click.Context, concurrency: int, metrics_port: int | None, celery_args: tuple[str, ...]
) -> None:
    """Start a Celery worker that submits rows, polls their tasks and downloads their videos
    (needs VEO_REDIS_URL, VEO_DATABASE_URL on PostgreSQL, VEO_API_BASE and VEO_API_KEY;
    VEO_DOWNLOAD_DIR for downloads). Run one per host, as many hosts as you like;
    they share one rate limit through Redis. Extra arguments go to `celery worker`.

    SIGTERM stops it gracefully, within VEO_CONNECT_TIMEOUT + VEO_READ_TIMEOUT + 10
    seconds (80 by default; then Celery's cold shutdown): no new message is taken,
    submissions already sent are finished and recorded (each ends within both timeouts
    together), polls and downloads in flight are given up at once and handed back, rows
    still waiting for their rate slot go back to pending.
    `--metrics-port` serves the counts of all its processes (prometheus_client's
    multiprocess mode, in a folder of its own).

    \b
    Examples:
      veo-batch worker --concurrency 8 --metrics-port 9101
      celery -A veobatch.worker worker --concurrency 8      # the same, with celery's own command
    """
    from veobatch import metrics  # noqa: PLC0415
    from veobatch.accounts.spec import accounts_of  # noqa: PLC0415

    app: App = ctx.obj
    if not app.settings.redis_url:
        raise ConfigError("a worker needs VEO_REDIS_URL (the queue and the shared rate limit)")
    if app.settings.accounts is not None:  # refused at start, not at the first row
        accounts_of(app.settings)
    app.service  # noqa: B018 - fail here, clearly, if the database is not migrated
    if metrics_port is not None and not os.environ.get(metrics.MULTIPROCESS_ENV):
        # The folder must be set before prometheus_client is first imported: start again.
        folder = metrics.multiprocess_dir()
        environ = {**os.environ, metrics.MULTIPROCESS_ENV: folder}
        os.execve(sys.executable, [sys.executable, "-m", "veobatch", *sys.argv[1:]], environ)
    _export_settings(ctx.parent.params if ctx.parent else {})
    from veobatch.worker.app import make_app  # noqa: PLC0415 - built from the settings just exported

    if metrics_port is not None:
        try:
            metrics.serve_worker_metrics(metrics_port)
        except OSError as exc:
            raise ConfigError(f"--metrics-port {metrics_port}: {exc.strerror}") from None
        atexit.register(shutil.rmtree, os.environ[metrics.MULTIPROCESS_ENV], True)
    make_app(Settings.from_env(os.environ)).worker_main(
        ["worker", "--loglevel=INFO", f"--concurrency={concurrency}", *celery_args]
    )


@cli.command("scheduler")
@click.option(
    "--tick",
    default=1.0,
    show_default=True,
    type=click.FloatRange(min=0.05),
    help="Seconds between rounds while nothing is sent (while rows flow, 0.05).",
)
@click.option(
    "--depth",
    type=click.IntRange(min=1),
    help="Rows kept queued for the workers (default: ten seconds at VEO_RATE).",
)
@click.option("--metrics-port", type=click.IntRange(1, 65535), help=METRICS_PORT_HELP)
@pass_app
def scheduler_command(app: App, tick: float, depth: int | None, metrics_port: int | None) -> None:
    """Release pending rows to the workers as fast as the rate allows (and never more than
    VEO_MAX_IN_FLIGHT generating), send due polls in groups, send downloads (if
    VEO_DOWNLOAD_DIR is set: set it on the workers too), re-send rows whose message was
    lost, mark rows whose worker died mid-request as in doubt, and finish batches. Run one;
    a second one started by mistake waits for the first, and takes over when it stops
    (SIGTERM frees the lock at once). `--metrics-port` serves its counts and the rows of
    the batches at work, read from the database when scraped.

    \b
    Example:
      VEO_REDIS_URL=redis://localhost:6379/0 veo-batch scheduler --metrics-port 9102
    """
    import redis  # noqa: PLC0415
    from prometheus_client import REGISTRY, start_http_server  # noqa: PLC0415

    from veobatch import logs, metrics  # noqa: PLC0415
    from veobatch.store.gauges import StoreCollector  # noqa: PLC0415

    settings = app.settings
    if not settings.redis_url:
        raise ConfigError("the scheduler needs VEO_REDIS_URL")
    from veobatch.scheduler.loop import Scheduler  # noqa: PLC0415
    from veobatch.worker.app import make_app  # noqa: PLC0415

    logs.configure(settings.log_format, secrets=logs.secrets_of(settings))
    broker = redis.Redis.from_url(settings.redis_url)
    loop = Scheduler.for_settings(
        settings, app.service.engine, broker, make_app(settings), tick=tick, depth=depth
    )
    if metrics_port is not None:
        metrics.series()  # shown at 0 until counted
        REGISTRY.register(StoreCollector(app.service.engine, settings.max_in_flight))
        try:
            start_http_server(metrics_port)
        except OSError as exc:
            raise ConfigError(f"--metrics-port {metrics_port}: {exc.strerror}") from None
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    cap = settings.max_in_flight or "none"
    echo(
        f"scheduler running (tick {tick}s, depth {loop.depth}, in-flight cap {cap}, downloads "
        f"{'on' if loop.downloads else 'off'}); Ctrl-C stops it",
        err=True,
    )
    with contextlib.suppress(KeyboardInterrupt):
        loop.run(stop)


# ---------------------------------------------------------------------------------- serve


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--no-auth", is_flag=True, help="Serve without tokens (only on a loopback address).")
@click.option(
    "--max-body-mb",
    default=20,
    show_default=True,
    type=click.IntRange(min=1),
    help="Largest request body accepted (a JSON batch or an uploaded job file).",
)
@pass_app
def serve(app: App, host: str, port: int, no_auth: bool, max_body_mb: int) -> None:
    """Serve the dashboard at / and the HTTP API beside it: queue batches (JSON or an
    uploaded job file), read their progress and rows, review videos, rerun, pause, resume,
    cancel, export. The OpenAPI schema is at /openapi.json, its pages at /docs. Callers send
    `Authorization: Bearer TOKEN`, one of VEO_API_TOKENS (VEO_API_READ_TOKENS: look only);
    the dashboard's login form takes the same tokens.

    \b
    Examples:
      VEO_API_TOKENS=$(openssl rand -hex 24) veo-batch serve --host 0.0.0.0 --port 8000
      curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8000/batches
    """
    from veobatch import logs  # noqa: PLC0415

    settings = app.settings
    if not settings.api_tokens and not no_auth:
        raise ConfigError(
            "set VEO_API_TOKENS (the tokens callers present), or pass --no-auth "
            "to serve on a loopback address without them"
        )
    if no_auth and host not in ("127.0.0.1", "localhost", "::1"):
        raise ConfigError(f"--no-auth only on a loopback address, not {host}")
    import uvicorn  # noqa: PLC0415 - only this command needs the web stack

    from veobatch.httpapi import create_app  # noqa: PLC0415

    logs.configure(settings.log_format, secrets=logs.secrets_of(settings))
    api = create_app(app.service, max_body=max_body_mb * 1024 * 1024)
    echo(
        f"serving on http://{host}:{port} (dashboard: /, schema: /openapi.json, docs: /docs)",
        err=True,
    )
    uvicorn.run(api, host=host, port=port, log_level="info", log_config=None)
