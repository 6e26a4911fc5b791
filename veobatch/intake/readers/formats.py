"""What every job file shares, whatever its format: the formats, the file extensions that name
them, the shape of a reader, and the limits on what a file may hold.

A reader is a function `(text, name) -> rows`: it takes the decoded text of the file and the
name to put in error messages, and yields one `RawJob` per row with the line where the row
starts. `detect_format` picks the format from `--format` or, failing that, from the extension.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Final, TypeAlias

from veobatch.errors import JobFileError

if TYPE_CHECKING:
    from veobatch.intake.raw_job import RawJob

FORMATS: Final = ("csv", "yaml", "jsonl")
EXTENSIONS: Final = {
    ".csv": "csv",
    ".yaml": "yaml",
    ".yml": "yaml",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}

Reader: TypeAlias = "Callable[[IO[str], str], Iterator[RawJob]]"

# Limits. A CSV field holds at most CSV_FIELD_LIMIT characters: data: URIs of images up to
# 20 MB sit in one field. YAML nested deeper than MAX_YAML_DEPTH is refused; a YAML job (or
# `defaults:`) past the other two, aliases expanded, is refused too, so that a few hundred
# bytes of nested aliases cannot grow into gigabytes in memory.
CSV_FIELD_LIMIT: Final = 64 * 1024 * 1024
MAX_YAML_DEPTH: Final = 64  # nesting of a YAML job file
MAX_JOB_NODES: Final = 10_000  # values in one job (or `defaults:`), aliases expanded
MAX_JOB_TEXT: Final = 64 * 1024 * 1024  # its text: three 20 MB data: URIs fit


def detect_format(path: str, format: str | None) -> str:
    """The format of the job file `path` (`-`: standard input): `format` if given, else the
    one its extension names; a `JobFileError` says what to do when neither settles it."""
    if format:
        if format not in FORMATS:
            raise JobFileError(path, f"unknown format {format!r}; use one of {', '.join(FORMATS)}")
        return format
    if path == "-":
        raise JobFileError("<stdin>", "say which format standard input is: --format csv|yaml|jsonl")
    suffix = Path(path).suffix.lower()
    if suffix == ".json":
        raise JobFileError(
            path, "plain JSON is not read; use JSON Lines (.jsonl, one job per line)"
        )
    try:
        return EXTENSIONS[suffix]
    except KeyError:
        raise JobFileError(
            path,
            f"cannot tell the format from {suffix or 'no extension'!r}; name it .csv, "
            ".yaml or .jsonl, or pass --format",
        ) from None
