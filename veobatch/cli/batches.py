"""Commands about stored batches: `status`, `jobs`, `rerun`, `pause`, `resume`, `cancel`.

Each one parses its options, calls one method of the service, and formats the answer."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from functools import partial
from shlex import quote
from typing import TYPE_CHECKING, Any

import click

from veobatch import pricing
from veobatch.cli.app import App, cli, pass_app
from veobatch.cli.options import (
    is_are,
    json_option,
    kind_option,
    one_of,
    rows_text,
    split_values,
    status_option,
)
from veobatch.cli.output import (
    echo,
    live_progress,
    one_line,
    print_estimate,
    print_json,
    spend_line,
    table,
    when,
)
from veobatch.errors import ExitCode, NotFoundError, UnconfirmedRerun
from veobatch.pricing import decimal_text, money
from veobatch.settings import Settings
from veobatch.states import STATUS_ORDER, BatchState, JobStatus

if TYPE_CHECKING:
    from veobatch.store.queries import BatchSummary

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
@json_option
@pass_app
def status(app: App, name: str | None, watch: bool, every: float, as_json: bool) -> None:
    """Batches with their row counts per status (one batch, with its errors, if NAME is given).

    \b
    Examples:
      veo-batch status
      veo-batch status spring-sale
      veo-batch status spring-sale --watch
      veo-batch status spring-sale --json | jq .counts
    """
    if watch:
        if name is None:
            raise click.UsageError("--watch follows one batch: veo-batch status NAME --watch")
        _watch_status(app, name, every)
        return
    summaries = [app.service.status(name)] if name else app.service.batches()
    if as_json:
        print_json(
            [_batch_json(s, app.settings.currency) for s in summaries]
            if name is None
            else _batch_json(summaries[0], app.settings.currency)
        )
        return
    if not summaries:
        echo("no batches yet: veo-batch load FILE")
        return
    headers = ["BATCH", "STATE", "TOTAL", *(s.upper() for s in STATUS_ORDER)]
    rows = [
        [s.name, s.state, f"{s.total:,}", *(f"{s.counts.get(st, 0):,}" for st in STATUS_ORDER)]
        for s in summaries
    ]
    table(headers, rows)
    for summary in summaries:
        if summary.pause_reason:
            echo(f"{summary.name}: paused: {summary.pause_reason}")
        if (spent := spend_line(summary, app.settings.currency)) is not None:
            echo(f"{summary.name}: {spent}")
        if summary.error_kinds:
            kinds = ", ".join(f"{kind} ×{count:,}" for kind, count in summary.error_kinds)
            echo(f"errors: {kinds}")
    if name is not None:
        for account, count in app.service.stranded(name).items():
            echo(
                f"{name}: {count:,} task{'s' if count != 1 else ''} of account {account!r} wait: "
                "it is no longer in VEO_ACCOUNTS, and a task is asked about only through the "
                "account that made it (put it back in the file to follow them)"
            )


def _batch_json(summary: BatchSummary, currency: str) -> dict[str, Any]:
    def text(amount: int | None) -> str | None:
        return None if amount is None else decimal_text(amount)

    return {
        "name": summary.name,
        "state": summary.state,
        "pause_reason": summary.pause_reason,
        "created_at": summary.created_at,
        "total": summary.total,
        "counts": summary.counts,
        "errors": dict(summary.error_kinds),
        "currency": currency,
        "spent": text(summary.spent),
        "held": text(summary.held),
        "budget": text(summary.budget),
        "left": text(summary.left),
    }


@cli.command()
@click.argument("name")
@json_option
@pass_app
def estimate(app: App, name: str, as_json: bool) -> None:
    """What the rows of batch NAME not sent yet will cost, per model (VEO_PRICES), what it
    has spent, its budget, and the requests left (submissions plus the polls expected).

    \b
    Examples:
      veo-batch estimate spring-sale
      veo-batch --prices veo3.1=0.25 estimate spring-sale --json
    """
    found = app.service.estimate(name)
    if as_json:
        from veobatch.views import estimate_view  # noqa: PLC0415

        print_json(estimate_view(found))
        return
    print_estimate(found)


def _amount_or_none(ctx: click.Context, param: click.Parameter, value: str) -> str | None:
    if value.lower() == "none":
        return None
    try:
        pricing.amount(value)
    except ValueError as exc:
        raise click.BadParameter(f"{value!r} {exc}; or `none` for no cap") from None
    return value


@cli.command()
@click.argument("name")
@click.argument("amount", callback=_amount_or_none)
@pass_app
def budget(app: App, name: str, amount: str | None) -> None:
    """Set the most batch NAME may spend to AMOUNT (in VEO_CURRENCY), or `none` for no cap.

    Every model the batch uses must have a price in VEO_PRICES. A batch paused by its budget
    goes on after `veo-batch resume NAME`.

    \b
    Examples:
      veo-batch budget spring-sale 200
      veo-batch budget spring-sale 200 && veo-batch resume spring-sale
      veo-batch budget spring-sale none
    """
    summary = app.service.set_budget(name, amount)
    echo(f"{name}: {spend_line(summary, app.settings.currency)}")
    if summary.state == BatchState.PAUSED:
        echo(f"{name} is paused ({summary.pause_reason}): veo-batch resume {quote(name)}")


def _watch_status(app: App, name: str, every: float) -> None:
    try:
        with live_progress(name, every=0.0) as show:
            for progress in app.service.watch(name, every=every):
                show(progress)
    except KeyboardInterrupt:
        sys.exit(ExitCode.INTERRUPTED)


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
@json_option
@pass_app
def jobs(
    app: App,
    name: str,
    statuses: Sequence[str],
    kinds: Sequence[str],
    refs: Sequence[str],
    limit: int,
    as_json: bool,
) -> None:
    """The rows of batch NAME with their status, task id and error; with --id, each row's
    whole story: its video (URL, file, size, sha256) and every submission, poll (the ones
    that changed something) and download, with time, HTTP status, remote status and error.

    \b
    Examples:
      veo-batch jobs spring-sale --status failed
      veo-batch jobs spring-sale --kind invalid,server --limit 0
      veo-batch jobs spring-sale --id sku-4512
      veo-batch jobs spring-sale --status failed --json | jq '.jobs[].error'
    """
    chosen = split_values(refs)
    service = app.service
    rows = service.jobs(name, statuses=statuses, kinds=kinds, refs=chosen, limit=limit)
    if not rows and chosen:
        raise NotFoundError(f"batch {name!r} has no job {', '.join(map(repr, chosen))}")
    total = service.count(name, statuses=statuses, kinds=kinds, refs=chosen)
    if as_json:
        if chosen:
            rows = [service.job(name, row["id"]) for row in rows]
        print_json({"total": total, "jobs": rows})
        return
    if not rows:
        echo("no rows match")
        return
    grid = [
        [
            job["id"],
            job["line"],
            job["status"],
            job["model"],
            job["task_id"],
            job["error_kind"],
            job["http_status"],
            one_line(job["error"] or "", 90),
        ]
        for job in rows
    ]
    table(["ID", "LINE", "STATUS", "MODEL", "TASK_ID", "KIND", "HTTP", "ERROR"], grid)
    if total > len(rows):
        echo(f"showing {len(rows):,} of {total:,} rows; --limit 0 shows all")
    if chosen:
        _stories(app, name, rows)


def _stories(app: App, name: str, rows: list[dict[str, Any]]) -> None:
    """Each row's result fields, then one table of every row's history."""
    history = []
    for job in rows:
        echo("\n" + _job_details(job))
        history += [
            [
                job["id"],
                when(a["at"]),
                a["action"],
                a["account"] or "",
                a["http_status"],
                a["task_id"],
                a["remote_status"],
                a["error_kind"],
                one_line(a["error"] or "", 70),
            ]
            for a in app.service.job(name, job["id"])["history"]
        ]
    if history:
        headers = ["ID", "AT", "ACTION", "ACCOUNT", "HTTP", "TASK_ID", "REMOTE", "KIND", "ERROR"]
        echo()
        table(headers, history)


def _job_details(job: dict[str, Any]) -> str:
    """One row's result fields, one per line (only those that are set)."""
    size = job["video_bytes"]
    fields = {
        "account": job["account"] or "",
        "remote status": " ".join(p for p in (job["remote_status"], job["progress"]) if p),
        "polls": job["polls"] or "",
        "submitted at": when(job["submitted_at"]),
        "finished at": when(job["finished_at"]),
        "video url": job["video_url"] or "",
        "video file": job["video_path"] or "",
        "video bytes": f"{size:,}" if size is not None else "",
        "video sha256": job["video_sha256"] or "",
        "download error": job["download_error"] or "",
        "error": job["error"] or "",
    }
    lines = [f"  {key}: {value}" for key, value in fields.items() if value != ""]
    return "\n".join([f"{job['id']} ({job['status']}):", *lines])


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
@click.option(
    "--id", "refs", multiple=True, metavar="REF", help="Only these rows (repeat or comma-separate)."
)
@click.option(
    "--review",
    "reviews",
    multiple=True,
    callback=one_of(("approved", "rejected"), "review"),
    help="Only rows whose video was reviewed so: rejected (with --status succeeded).",
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
    refs: Sequence[str],
    reviews: Sequence[str],
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
      veo-batch rerun spring-sale --kind filtered      # stopped by a safety filter: new tasks
      veo-batch rerun spring-sale --kind server,network
      veo-batch rerun spring-sale --in-doubt --yes     # may pay twice for some rows
      veo-batch rerun spring-sale --status succeeded --review rejected --yes
    """
    chosen = list(statuses) or [JobStatus.FAILED.value]
    if in_doubt:
        chosen.append(JobStatus.IN_DOUBT.value)
    rerun = partial(
        app.service.rerun, name, chosen, kinds, refs=split_values(refs), reviews=list(reviews)
    )
    if dry_run:
        look = rerun(dry_run=True)
        cost = _rerun_cost(look.adds, look.unpriced, app.settings)
        echo(f"{rows_text(look.matched)} match{cost}; nothing changed")
        return
    try:
        done = rerun(confirm_paid=yes)
    except UnconfirmedRerun as paid:  # nothing changed: ask, then confirm
        click.confirm(
            f"of the {rows_text(paid.matched)} chosen, those {' or '.join(paid.paid_for)}: "
            "the provider has (or may have) created and billed their tasks already, and a "
            f"new task pays again{_rerun_cost(paid.adds, paid.unpriced, app.settings)}. Go on?",
            abort=True,
            err=True,
        )
        done = rerun(confirm_paid=True)
    if done.matched == 0:
        echo(f"{rows_text(0)} match; nothing changed")
    if done.sent_again:
        echo(
            f"{rows_text(done.sent_again)} {is_are(done.sent_again)} pending again; "
            f"`veo-batch run --batch {quote(name)}` or the workers send them"
        )
    if done.polled_again:
        echo(
            f"{rows_text(done.polled_again)} that timed out {is_are(done.polled_again)} "
            "generating again: their tasks are polled (for another VEO_POLL_DEADLINE) by "
            "`veo-batch run` or the workers"
        )
    if done.state == BatchState.PAUSED:
        echo(f"the batch is paused: `veo-batch resume {quote(name)}` once its cause is fixed")


@cli.command()
@click.argument("name")
@click.option(
    "--id",
    "refs",
    multiple=True,
    required=True,
    metavar="REF",
    help="The rows (repeat or comma-separate).",
)
@click.option("--approve", "verdict", flag_value="approved", help="Their videos are good.")
@click.option("--reject", "verdict", flag_value="rejected", help="Their videos are bad.")
@click.option("--clear", "verdict", flag_value="none", help="Not reviewed.")
@pass_app
def review(app: App, name: str, refs: Sequence[str], verdict: str | None) -> None:
    """Mark the videos of rows of batch NAME approved or rejected (kept on the row, exported,
    and a filter of `jobs` and `rerun`).

    \b
    Examples:
      veo-batch review spring-sale --id sku-1,sku-7 --reject
      veo-batch rerun spring-sale --status succeeded --review rejected --yes
    """
    if verdict is None:
        raise click.UsageError("say --approve, --reject or --clear")
    marked = app.service.review(name, split_values(refs), None if verdict == "none" else verdict)
    echo(f"{rows_text(marked)} marked {verdict if verdict != 'none' else 'not reviewed'}")


def _rerun_cost(adds: int | None, unpriced: list[str], settings: Settings) -> str:
    """`; sending them again adds USD 1.25` (or says which models have no price); nothing
    when no prices are set."""
    if not settings.prices:
        return ""
    if unpriced:
        return (
            f"; {', '.join(unpriced)} ha{'s' if len(unpriced) == 1 else 've'} no price (VEO_PRICES)"
        )
    return f"; sending them again adds {money(adds, settings.currency)}" if adds else ""


@cli.command()
@click.argument("name")
@pass_app
def pause(app: App, name: str) -> None:
    """Stop sending rows of batch NAME (requests in flight finish; tasks made are followed).

    \b
    Example:
      veo-batch pause spring-sale && veo-batch resume spring-sale
    """
    app.service.pause(name, "paused by hand")
    echo(f"batch {name!r} paused; `veo-batch resume {quote(name)}` goes on")


@cli.command()
@click.argument("name")
@pass_app
def resume(app: App, name: str) -> None:
    """Let batch NAME send again after a pause (fix what paused it first: the key, the
    balance).

    \b
    Example:
      veo-batch resume spring-sale && veo-batch run --batch spring-sale
    """
    app.service.resume(name)
    echo(f"batch {name!r} is active again")


@cli.command()
@click.argument("name")
@click.option("--yes", "-y", is_flag=True, help="Do not ask.")
@pass_app
def cancel(app: App, name: str, yes: bool) -> None:
    """Cancel batch NAME: rows not yet sent become cancelled (requests in flight finish).

    \b
    Example:
      veo-batch cancel spring-sale --yes
    """
    if not yes:
        click.confirm(f"cancel batch {name!r}? Its unsent rows will never be sent", abort=True)
    rows = app.service.cancel(name)
    echo(f"batch {name!r} cancelled; {rows_text(rows)} will not be sent")
