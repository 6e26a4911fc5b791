"""`veo-batch accounts`: the relay accounts, their state and load; a pause or a resume."""

from __future__ import annotations

from shlex import quote
from typing import Any

import click

from veobatch.cli.app import App, cli, pass_app
from veobatch.cli.output import echo, one_line, print_json, table, when


@cli.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per account, in a list.")
@click.pass_context
def accounts(ctx: click.Context, as_json: bool) -> None:
    """The relay accounts (VEO_ACCOUNTS, or the one of VEO_API_BASE, named default): each
    one's state and why (active, cooling after failures in a row, paused, removed from the
    file), its rate, rows in flight against its cap, what it spent today against its budget,
    requests sent in the last minute, its last error.

    \b
    Examples:
      veo-batch accounts
      veo-batch accounts pause relay-b        # send nothing more through it
      veo-batch accounts resume relay-b
    """
    if ctx.invoked_subcommand is not None:
        return
    app = ctx.find_object(App)
    assert app is not None
    views = app.service.accounts()
    if as_json:
        print_json(views)
        return
    if not views:
        echo("no account: set VEO_API_BASE and VEO_API_KEY, or VEO_ACCOUNTS (a file of them)")
        return
    table(
        ["account", "host", "state", "rate", "in flight", "spent today", "last min", "last error"],
        [_row(view) for view in views],
    )
    for view in views:
        if view["reason"]:
            echo(f"{view['name']}: {view['state']}: {view['reason']}")


def _row(view: dict[str, Any]) -> list[object]:
    cap = view["max_in_flight"]
    budget = view["daily_budget"]
    error = view["last_error"]
    return [
        view["name"],
        f"{view['host']} ({view['dialect']})"
        if view["dialect"] == "gemini"
        else view["host"] or "",
        view["state"],
        view["rate"] or "none",
        f"{view['in_flight']}/{cap}" if cap else view["in_flight"],
        f"{view['spent_today']} of {budget}" if budget else view["spent_today"],
        view["sent_last_minute"],
        f"{when(view['last_error_at'])} {one_line(error, 60)}" if error else "",
    ]


def _host(view: dict[str, Any]) -> str:
    host = view["host"] or ""
    return f"{host} (Google)" if view["dialect"] == "gemini" else host


@accounts.command("pause")
@click.argument("name")
@click.option("--reason", default="paused by hand", show_default=True, help="Said with its state.")
@pass_app
def pause_account(app: App, name: str, reason: str) -> None:
    """Send nothing more through account NAME: rows go through the others (requests in flight
    finish; its tasks are still followed)."""
    app.service.pause_account(name, reason)
    echo(
        f"account {name!r} paused; `veo-batch accounts resume {quote(name)}` sends through it again"
    )


@accounts.command("resume")
@click.argument("name")
@pass_app
def resume_account(app: App, name: str) -> None:
    """Send through account NAME again (a balance topped up, a key fixed)."""
    app.service.resume_account(name)
    echo(f"account {name!r} resumed")
