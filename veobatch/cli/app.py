"""The command group every command belongs to: settings, the database, errors as exit codes."""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

import click

from veobatch.errors import EXIT_CODE_MEANINGS, VeoBatchError
from veobatch.settings import SETTINGS, Settings

if TYPE_CHECKING:
    from veobatch.service import BatchService

F = TypeVar("F", bound=Callable[..., Any])

EXIT_CODES_HELP = "\b\nExit codes:\n" + "\n".join(
    f"  {code.value:<3}  {meaning}" for code, meaning in EXIT_CODE_MEANINGS.items()
)


class App:
    """What every command shares: the settings, and the database opened on first use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._service: BatchService | None = None
        self.made: Path | None = None  # the SQLite file this command made

    @property
    def service(self) -> BatchService:
        """The operations every face calls, over this command's database (opened, and
        migrated if new, on first use)."""
        if self._service is None:
            # Imported here: `--help`, a refused file and the commands that need no database
            # start without the engine (a command imports what it uses when it runs).
            with kept_for_good():
                from veobatch.service import BatchService  # noqa: PLC0415
                from veobatch.store import database  # noqa: PLC0415

            url = self.settings.database_url
            new_file = database.sqlite_file(url)
            if new_file is not None and new_file.exists():
                new_file = None
            self._service = BatchService(database.open_database(url), self.settings)
            if new_file is not None:
                self.made = new_file
        return self._service

    def close(self) -> None:
        """At the end of the command: say which database file it made, if it made one."""
        if self.made is not None:
            click.echo(
                f"made a new database: {self.made} (SQLite; VEO_DATABASE_URL chooses another)",
                err=True,
            )
        if self._service is not None and self._service.engine is not None:
            self._service.engine.dispose()


class VeoGroup(click.Group):
    """Takes the settings' options after the command too, and turns our errors into one
    clear line on stderr and the documented exit code."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, settings_first(args, self.commands))

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except VeoBatchError as exc:
            click.secho(f"error: {said(exc)}", err=True, fg="red")
            ctx.exit(exc.exit_code)
        except Exception as exc:
            database = sys.modules.get("veobatch.store.database")  # none opened: none failed
            if database is None or not isinstance(exc, database.database_errors()):
                raise
            app = ctx.find_object(App)
            problem = database.failure(exc, app.settings.database_url if app else "sqlite://")
            click.secho(f"error: {problem}", err=True, fg="red")
            ctx.exit(problem.exit_code)


SETTING_FLAGS: Final = frozenset(f"--{spec.name.replace('_', '-')}" for spec in SETTINGS)


def settings_first(args: list[str], commands: Mapping[str, click.Command]) -> list[str]:
    """`veo-batch status --database-url X` as `veo-batch --database-url X status`: a setting's
    option given after the command moves before it (unless that command has an option of the
    same name, or it comes after `--`)."""
    command_at = _command_position(args, commands)
    if command_at is None:
        return args
    own = {
        name for param in commands[args[command_at]].params for name in getattr(param, "opts", ())
    }
    before, after, moved = args[: command_at + 1], [], []
    rest = iter(args[command_at + 1 :])
    for arg in rest:
        if arg == "--":
            after += [arg, *rest]
            break
        flag = arg.split("=", 1)[0]
        if flag in SETTING_FLAGS and flag not in own:
            moved.append(arg)
            if "=" not in arg:
                value = next(rest, None)
                if value is None:
                    raise click.UsageError(f"option {flag} needs a value")
                moved.append(value)
        else:
            after.append(arg)
    return [*before[:-1], *moved, before[-1], *after]


def _command_position(args: list[str], commands: Mapping[str, click.Command]) -> int | None:
    """Where the command's name is in `args` (past the group's own options and values)."""
    index = 0
    while index < len(args):
        arg = args[index]
        if arg in commands:
            return index
        if arg in SETTING_FLAGS:
            index += 1  # its value
        elif not arg.startswith("-"):
            return None  # not a command: click says so
        index += 1
    return None


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

    Every setting is an environment variable (VEO_...) or an option, before or after the
    command.
    """
    try:
        ctx.obj = App(Settings.from_values(values))
        ctx.call_on_close(ctx.obj.close)
    except VeoBatchError as exc:
        click.secho(f"error: {said(exc)}", err=True, fg="red")
        ctx.exit(exc.exit_code)


pass_app = click.make_pass_decorator(App)


def said(error: VeoBatchError) -> str:
    """An error's message as the command line says it: with the CLI's hint, if it has one."""
    hint = getattr(error, "hint", None)
    return f"{error}; {hint}" if hint else str(error)


_ONE_COMMAND_PROCESS = False  # set by `main`: this process runs one command, then exits


@contextmanager
def kept_for_good() -> Iterator[None]:
    """Imports that live as long as the process: the cyclic collector is paused while they
    run (they make hundreds of thousands of objects and free none) and then told to leave
    every object made so far alone (`gc.freeze`), which also spares the walk over them all
    when the interpreter exits. Together about a fifth of a short command's time. Only in a
    process that runs one command (`main`): in one that runs many (a test session calling
    the commands), frozen garbage would never be freed."""
    if not _ONE_COMMAND_PROCESS:
        yield
        return
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def main() -> None:
    global _ONE_COMMAND_PROCESS  # noqa: PLW0603 - one process, one command: see kept_for_good
    _ONE_COMMAND_PROCESS = True
    gc.freeze()  # the command line's own modules, imported by now
    cli(prog_name="veo-batch")
