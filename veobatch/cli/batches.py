"""Commands about stored batches: `status`, `jobs`, `rerun`, `pause`, `resume`, `cancel`."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

import click

from veobatch.cli.app import App, cli, pass_app
from veobatch.cli.options import kind_option, one_of, split_values, status_option
from veobatch.cli.progress import progress_line
from veobatch.cli.table import clip, render
from veobatch.embedded_runner import snapshot
from veobatch.engine import transitions
from veobatch.errors import (
    BatchStateError,
)
from veobatch.states import BatchState, JobStatus
from veobatch.store.queries import (
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
    show = progress_line(every=0.0)
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
        query = select_jobs(batch_id(conn, name), statuses, kinds, split_values(refs))
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


# ---------------------------------------------------------------------------------- batches


@cli.command()
@click.argument("name")
@click.option(
    "--status",
    "-s",
    "statuses",
    multiple=True,
    metavar="STATUS",
    callback=one_of(STATUS_ORDER, "status"),
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
    paid = [s for s in chosen if s in PAID_FOR]
    if paid and not yes:
        click.confirm(
            f"{count:,} rows include rows {' or '.join(paid)}: the provider has (or may have) "
            "created and billed their tasks already, and a new task pays again. Go on?",
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


# Rows whose task exists (or may): sending them again pays again, so `rerun` asks first.
PAID_FOR = (JobStatus.IN_DOUBT, JobStatus.SUBMITTED, JobStatus.SUCCEEDED)


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
