"""Readers of job files: CSV, YAML and JSON Lines, from a path or standard input.

Each reader streams: it yields one `RawJob` at a time with the line where the row starts, so a
file of a million rows never sits whole in memory. Anything that makes the file unusable as a
whole (not UTF-8, binary, a YAML syntax error, no `prompt` column) raises `JobFileError` with
the file name and line; a problem confined to one row travels with that row instead.

- `formats`: the formats and their extensions, the shape of a reader, the limits on a file;
- `job_file`: opening a file (or bytes), refusing binary or empty ones, and `JobFile.rows()`,
  which decodes the text and hands it to the reader of its format;
- `csv_reader`, `jsonl_reader`, `yaml_reader`: one reader per format;
- `yaml_composer`: builds the YAML reader's nodes one job at a time, within the limits.

Import from here: `from veobatch.intake.readers import open_job_file`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from veobatch.intake.readers.formats import (
    EXTENSIONS,
    FORMATS,
    MAX_JOB_NODES,
    MAX_JOB_TEXT,
    MAX_YAML_DEPTH,
    detect_format,
)

if TYPE_CHECKING:
    from veobatch.intake.readers.csv_reader import csv_delimiter, read_csv
    from veobatch.intake.readers.job_file import JobFile, job_file_from_bytes, open_job_file
    from veobatch.intake.readers.jsonl_reader import read_jsonl
    from veobatch.intake.readers.yaml_reader import read_yaml

# The readers, imported when first asked for: the formats' names are known (to the command
# line's options) without the checks of a row and what they import.
_LAZY = {
    "csv_delimiter": "csv_reader",
    "read_csv": "csv_reader",
    "JobFile": "job_file",
    "job_file_from_bytes": "job_file",
    "open_job_file": "job_file",
    "read_jsonl": "jsonl_reader",
    "read_yaml": "yaml_reader",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)


__all__ = [
    "EXTENSIONS",
    "FORMATS",
    "MAX_JOB_NODES",
    "MAX_JOB_TEXT",
    "MAX_YAML_DEPTH",
    "JobFile",
    "csv_delimiter",
    "detect_format",
    "job_file_from_bytes",
    "open_job_file",
    "read_csv",
    "read_jsonl",
    "read_yaml",
]
