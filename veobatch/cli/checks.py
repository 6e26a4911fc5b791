"""Commands for the people who run a deployment: `health` and `doctor`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING

import click

from veobatch.cli.app import App, cli, pass_app
from veobatch.cli.output import print_json
from veobatch.errors import ExitCode
from veobatch.roles import ROLES

if TYPE_CHECKING:
    from veobatch.health import Check

MARKS = {"ok": "[green]✓[/]", "warning": "[yellow]![/]", "failed": "[red]✗[/]"}


def _report(checks: Sequence[Check], as_json: bool) -> None:
    """Print the checks; exit CHECK_FAILED if one failed (warnings do not)."""
    failed = any(check.failed for check in checks)
    if as_json:
        print_json({"ok": not failed, "checks": [asdict(check) for check in checks]})
    else:
        from rich.console import Console  # noqa: PLC0415 - only a terminal needs it

        console = Console(highlight=False, soft_wrap=True)
        for check in checks:
            state = "ok" if check.ok else "warning" if check.warning else "failed"
            mark = MARKS[state] if console.is_terminal else state.upper()
            line = f"{mark} {check.name}: {check.detail}"
            console.print(line + (f"\n    → {check.fix}" if check.fix else ""), markup=True)
    if failed:
        raise SystemExit(ExitCode.CHECK_FAILED)


@cli.command()
@click.option(
    "--role",
    type=click.Choice(ROLES),
    default="all",
    show_default=True,
    help="What to check: all (the deployment), or one service's own process (api, "
    "scheduler, worker: what its container's healthcheck asks).",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of lines.")
@pass_app
def health(app: App, role: str, as_json: bool) -> None:
    """Check a deployment: the database (reachable, migrated), Redis (reachable), a
    scheduler (ticking, one holding the leader lock), the workers (alive, by their
    heartbeats in Redis). Exit 0 if healthy, 12 if a check failed.

    \b
    Examples:
      veo-batch health
      veo-batch health --role worker      # in a worker's container: is this host's worker up?
    """
    from veobatch.health import checks_for  # noqa: PLC0415 - Redis and the database: here

    _report(checks_for(app.settings, role), as_json)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of lines.")
@pass_app
def doctor(app: App, as_json: bool) -> None:
    """Check that this machine can send to the relay, spending nothing: the settings, the
    relay reachable and the key accepted (it asks for a task that does not exist), the clock
    against the relay's, the image mode (in url mode, the bucket), then the database and
    Redis (whether a scheduler and workers run is `veo-batch health`'s question).
    Each problem says what to do. Exit 12 if something must be fixed (warnings do not).

    \b
    Example:
      VEO_API_BASE=https://relay.example VEO_API_KEY=sk-... veo-batch doctor
    """
    from veobatch.doctor import doctor_checks  # noqa: PLC0415 - the relay's client: here

    _report(doctor_checks(app.settings), as_json)
