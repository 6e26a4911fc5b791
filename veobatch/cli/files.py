"""Commands that read and write job files: `load`, `export`."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path
from shlex import quote
from typing import TYPE_CHECKING

import click

from veobatch.cli.app import App, cli, pass_app
from veobatch.cli.options import (
    batch_option,
    budget_option,
    format_option,
    kind_option,
    plural,
    rows_text,
    status_option,
    strict_option,
    webhook_option,
)
from veobatch.cli.output import echo, print_estimate
from veobatch.errors import ExitCode, JobFileError, VeoBatchError
from veobatch.intake.problems import DEFAULT_MAX_PROBLEMS
from veobatch.store.export_columns import EXPORT_FORMATS

if TYPE_CHECKING:
    from veobatch.intake.loader import LoadResult, ReadProgress

# ---------------------------------------------------------------------------------- load


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
@webhook_option
@budget_option
@strict_option
@pass_app
def load(
    app: App,
    file: str,
    batch_name: str | None,
    file_format: str | None,
    skip_invalid: bool,
    dry_run: bool,
    max_problems: int,
    webhook_url: str | None,
    budget: str | None,
    strict: bool,
) -> None:
    """Check every row of FILE (CSV, YAML or JSON Lines; `-` for stdin) and store it as a batch.

    Images are paths of PNG, JPEG or WebP files (relative to FILE's folder, or absolute),
    http(s) links or data: URIs; each file is checked now and its path and sha256 kept
    (VEO_IMAGE_MODE says how it is sent).

    By default a file with any invalid row stores nothing: every problem is listed as
    FILE:LINE: FIELD: what is wrong. Loading the same file into the same batch again adds only
    the rows the batch does not have (rows are matched by their `id`, else their line).

    \b
    With VEO_PRICES set, --dry-run also prints what the rows will cost per model and the
    requests they need.

    \b
    Examples:
      veo-batch load jobs.yaml --dry-run
      veo-batch load products.csv --batch spring-sale --budget 120
      generate-jobs | veo-batch load - --format jsonl --batch nightly
    """
    result = load_file(
        app,
        file,
        batch_name,
        file_format,
        skip_invalid,
        dry_run,
        max_problems,
        webhook_url,
        budget=budget,
        strict=strict,
    )
    if result.rejected:
        sys.exit(ExitCode.INVALID_ROWS)
    if not dry_run:
        echo(f"next: veo-batch status {quote(result.batch)}")


def load_file(
    app: App,
    file: str,
    batch_name: str | None,
    file_format: str | None,
    skip_invalid: bool,
    dry_run: bool = False,
    max_problems: int = DEFAULT_MAX_PROBLEMS,
    webhook_url: str | None = None,
    *,
    budget: str | None = None,
    strict: bool = False,
) -> LoadResult:
    """What `load` does, and `run` before it submits: check, store, report (with
    `dry_run`, the estimate too)."""
    from veobatch.intake.readers import open_job_file  # noqa: PLC0415 - when a file is read
    from veobatch.service import BatchService  # noqa: PLC0415

    name = _batch_name(batch_name, file)
    started = time.monotonic()
    service = BatchService(None, app.settings) if dry_run else app.service
    with open_job_file(file, file_format) as job_file:
        result = service.load(
            job_file,
            name,
            source=job_file.name if job_file.name == "<stdin>" else str(Path(file).resolve()),
            skip_invalid=skip_invalid,
            dry_run=dry_run,
            max_problems=max_problems,
            webhook_url=webhook_url,
            progress=_progress_printer(job_file.size),
            budget=budget,
            strict=strict,
        )
        _print_load(job_file.name, result, dry_run, time.monotonic() - started)
    if dry_run and result.models and not result.rejected:
        print_estimate(service.estimate_rows(result.models))
    return result


def _batch_name(given: str | None, file: str) -> str:
    """The --batch name, else the file's name without its extension."""
    from veobatch.intake.batch_name import check_batch_name  # noqa: PLC0415 - with the checks

    if given is None:
        if file == "-":
            raise JobFileError("<stdin>", "name the batch with --batch when reading standard input")
        given = Path(file).name.rsplit(".", 1)[0] or Path(file).name
    try:
        return check_batch_name(given)
    except VeoBatchError as exc:
        raise click.BadParameter(str(exc), param_hint="--batch") from None


def _progress_printer(size: int | None) -> ReadProgress | None:
    """Rows checked so far (and how much of the file) on stderr, when it is a terminal."""
    if not sys.stderr.isatty():
        return None

    def show(rows: int, position: int | None) -> None:
        share = f" ({100 * position / size:.0f}%)" if position is not None and size else ""
        echo(f"\rchecked {rows_text(rows)}{share}", nl=False, err=True)

    return show


def _stored_before(result: LoadResult, dry_run: bool) -> bool:
    """Every row of the file was already in the batch: nothing new was stored."""
    return not dry_run and not result.rejected and not result.stored and bool(result.offered)


def _print_load(name: str, result: LoadResult, dry_run: bool, seconds: float) -> None:
    if sys.stderr.isatty():
        echo("\r\033[K", nl=False, err=True)
    report = result.report
    for line in report.lines():
        echo(line, err=True)
    if _stored_before(result, dry_run) and report.warning_count:
        # A resume loads the same file again: its warnings were given when its rows were stored.
        given = plural(report.warning_count, "warning")
        echo(f"({given}, given when these rows were first stored)", err=True)
    else:
        for line in report.warning_lines():
            click.secho(line, err=True, fg="yellow")
    echo(
        f"{name}: {rows_text(result.rows)} checked, {result.valid:,} valid"
        + (
            f", {report.invalid_rows:,} invalid ({plural(report.total, 'problem')})"
            if report
            else ""
        )
    )
    if result.models:
        echo("  models: " + ", ".join(f"{m} ×{n:,}" for m, n in result.models.most_common()))
        echo(
            "  images per job: "
            + ", ".join(f"{k} ×{n:,}" for k, n in sorted(result.image_counts.items()))
        )
    files, size, made = result.local_images
    if files:
        copies = f", {made:,} scaled down or turned upright" if made else ""
        echo(
            f"  local images: {plural(files, 'file')}, {size / 2**20:,.1f} MB{copies} "
            "(the rows keep their paths and hashes, not their bytes)"
        )
    if result.ignored_fields:
        echo(f"  ignored result columns of an export: {', '.join(sorted(result.ignored_fields))}")
    if dry_run:
        echo("dry run: nothing was stored")
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
    echo(
        f"batch {result.batch!r} ({kind}): stored {rows_text(result.stored)} "
        f"in {seconds:.1f} s{rate}"
        + (
            f"; {result.already_present:,} {'was' if result.already_present == 1 else 'were'} "
            "already in the batch"
            if result.already_present
            else ""
        )
    )
    if result.invalid_kept:
        echo(
            f"  {result.invalid_kept:,} invalid {rows_text(result.invalid_kept).split()[1]} stored "
            "as failed (error kind 'invalid')"
        )
    if result.invalid_kept < report.invalid_rows:
        skipped = report.invalid_rows - result.invalid_kept
        echo(f"  {rows_text(skipped)} not stored: their id was already taken in the file")


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
    from veobatch.store.export import export_format, write_export  # noqa: PLC0415

    fmt = export_format(output, out_format) if output != "-" else (out_format or "csv")
    text = app.service.export(name, fmt, statuses=statuses, kinds=kinds)
    sys.stdout.flush()
    write_export(output, text.chunks(), stdout=sys.stdout.buffer)
    if output != "-":
        echo(f"wrote {rows_text(text.rows)} to {output}", err=True)
