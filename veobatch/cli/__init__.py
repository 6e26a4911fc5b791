"""The `veo-batch` command line: one click group (`app.py`), its commands in a module each
by subject. Importing this package registers every command."""

from veobatch.cli import batches, checks, files, run, servers  # noqa: F401 - they register commands
from veobatch.cli.app import cli, main

__all__ = ["cli", "main"]
