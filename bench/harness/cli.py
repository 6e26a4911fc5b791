"""The command-line conventions the benchmarks share: `--keep` for the temporary directory,
`--redis-url` for the Redis database a script flushes, comma-separated lists, and a main that
runs in a workspace and exits 1 when a measurement fails or a check does not pass.

Every entry script puts the repository's root on `sys.path` itself, before it imports
anything from `bench`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from bench.harness.processes import BenchError, Children, workspace


def add_keep(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")


def add_redis_url(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument(
        "--redis-url",
        default=default,
        help="the Redis database to use; it is flushed before and after (default: %(default)s)",
    )


def comma_separated(text: str) -> list[str]:
    """`"a, b,,c"` → `["a", "b", "c"]`."""
    return [item.strip() for item in text.split(",") if item.strip()]


def run_in_workspace(prefix: str, keep: bool, body: Callable[[Path, Children], bool | None]) -> int:
    """Run `body` in a workspace (see processes.workspace): the exit code, 1 when it raised a
    BenchError (printed by the workspace) or returned False (a check failed), else 0."""
    try:
        with workspace(prefix, keep) as (work, children):
            passed = body(work, children)
    except BenchError:
        return 1  # printed by workspace()
    if passed is False:
        print("error: a check failed (CHECK column)", file=sys.stderr)
        return 1
    return 0
