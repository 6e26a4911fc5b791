"""The `veo-batch` command line: one click group (`app.py`), its commands in a module each
by subject. Importing this package registers every command."""

from veobatch.cli import (  # noqa: F401 - they register commands
    accounts,
    batches,
    checks,
    files,
    run,
    servers,
)
from veobatch.cli.app import cli, main

__all__ = ["cli", "main"]
