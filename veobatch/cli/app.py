"""The command group every command belongs to: settings, the database, errors as exit codes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from veobatch.errors import EXIT_CODE_MEANINGS, DatabaseError, ExitCode, VeoBatchError
from veobatch.service import BatchService
from veobatch.settings import SETTINGS, Settings
from veobatch.store import database

F = TypeVar("F", bound=Callable[..., Any])

EXIT_CODES_HELP = "\b\nExit codes:\n" + "\n".join(
    f"  {code.value:<3}  {meaning}" for code, meaning in EXIT_CODE_MEANINGS.items()
)


class App:
    """What every command shares: the settings, and the database opened on first use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._engine: Engine | None = None

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = database.open_database(self.settings.database_url)
        return self._engine

    @property
    def service(self) -> BatchService:
        """The operations every face calls, over this command's database."""
        return BatchService(self.engine, self.settings)


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
    provider's rate limits, follow every task to its video, and keep every row's outcome.

    \b
    Quick start:
      veo-batch run jobs.example.yaml --mock --download videos   # offline demo
      veo-batch load jobs.example.yaml --dry-run                 # check a file
      veo-batch status jobs.example --watch                      # follow a batch
      veo-batch export jobs.example -o out.csv

    Every setting is an environment variable (VEO_...) or the option before the command.
    """
    try:
        ctx.obj = App(Settings.from_values(values))
    except VeoBatchError as exc:
        click.secho(f"error: {exc}", err=True, fg="red")
        ctx.exit(exc.exit_code)


pass_app = click.make_pass_decorator(App)


def main() -> None:
    cli(prog_name="veo-batch")
