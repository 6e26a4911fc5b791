"""Options and option checks shared by several commands."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import click

from veobatch.errors import VeoBatchError
from veobatch.intake.readers import FORMATS
from veobatch.pricing import amount
from veobatch.states import STATUS_ORDER, ErrorKind

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


def plural(count: int, word: str) -> str:
    """`1 row`, `2 rows`, `1,000 problems`."""
    return f"{count:,} {word}" if count == 1 else f"{count:,} {word}s"


def rows_text(count: int) -> str:
    return plural(count, "row")


def is_are(count: int) -> str:
    return "is" if count == 1 else "are"


def split_values(values: Sequence[str]) -> list[str]:
    """Values given as repeated options and/or separated by commas."""
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def one_of(allowed: Sequence[str], what: str) -> Callable[..., list[str]]:
    """A click callback: the option's values, split on commas, each one of `allowed`."""

    def check(_ctx: click.Context, _param: click.Parameter, values: Sequence[str]) -> list[str]:
        chosen = split_values(values)
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
    callback=one_of(STATUS_ORDER, "status"),
    help=f"Only rows in this status (repeat or comma-separate): {', '.join(STATUS_ORDER)}.",
)
kind_option = click.option(
    "--kind",
    "-k",
    "kinds",
    multiple=True,
    metavar="KIND",
    callback=one_of(ERROR_KINDS, "error kind"),
    help=f"Only rows with this error kind: {', '.join(ERROR_KINDS)}.",
)


def _http_url(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """A webhook URL's shape, checked before any work (the service checks its target)."""
    from veobatch.lifecycle.webhooks import check_target  # noqa: PLC0415 - httpx: when given

    try:
        return None if value is None else check_target(value, allow_private=True)
    except VeoBatchError as exc:
        raise click.BadParameter(str(exc)) from None


webhook_option = click.option(
    "--webhook",
    "webhook_url",
    metavar="URL",
    callback=_http_url,
    help="Tell URL when the batch finishes or pauses: a JSON summary POSTed, signed with "
    "VEO_WEBHOOK_SECRET (HMAC-SHA256), retried until it answers 2xx.",
)

json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print JSON (for scripts) instead of a table."
)


def _amount(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """A budget's shape, checked before any work (the service turns it into micro-units)."""
    if value is not None:
        try:
            amount(value)
        except ValueError as exc:
            raise click.BadParameter(f"{value!r} {exc}") from None
    return value


budget_option = click.option(
    "--budget",
    metavar="AMOUNT",
    callback=_amount,
    help="The most this batch may spend, in VEO_CURRENCY (every model it uses then needs a "
    "price in VEO_PRICES). A row is only sent while its price fits; then the batch pauses "
    "with reason budget. `veo-batch budget NAME AMOUNT` changes it.",
)
strict_option = click.option(
    "--strict",
    is_flag=True,
    help="Refuse rows whose prompt is mostly not in Latin script while enhance_prompt is not "
    "true (Veo takes English prompts), instead of warning.",
)
