"""The CSV reader: a header row naming the columns, then one job per row.

The delimiter is the first of `,` `;` tab that splits the header into a `prompt` column
(Excel saves with `;` or tabs in some settings), else a comma. Booleans may be written
true/yes/y/1/on or false/no/n/0/off; images are separated by `|`. A row with the wrong number
of values becomes a broken row, not an error for the whole file. The loop of `read_csv` runs
once per row of files of a million rows: keep it lean.
"""

from __future__ import annotations

import csv
import itertools
import operator
from collections.abc import Iterator
from typing import IO, Any, Final

from veobatch.errors import JobFileError
from veobatch.intake.field_rules import BOOL_FIELDS, field_name_problem
from veobatch.intake.raw_job import ID_ALIAS, JOB_FIELDS, RawJob
from veobatch.intake.readers.formats import CSV_FIELD_LIMIT
from veobatch.store.export_columns import FORMULA_STARTS

_REQUIRED_COLUMNS: Final = ("prompt", "model", "images")
_DELIMITERS: Final = (",", ";", "\t")
_FORMULA_CHARS: Final = "".join(FORMULA_STARTS)

# CSV spellings of booleans; any other text is left for the checker to reject.
_BOOL_TEXT: Final[dict[str, bool]] = {
    "true": True,
    "yes": True,
    "y": True,
    "1": True,
    "on": True,
    "false": False,
    "no": False,
    "n": False,
    "0": False,
    "off": False,
}

_new_raw_job: Final = tuple.__new__

csv.field_size_limit(CSV_FIELD_LIMIT)


def csv_delimiter(first_line: str) -> str:
    """The CSV's delimiter: a comma, unless the header only names the columns when split on
    `;` (Excel's CSV where the decimal mark is a comma) or on a tab (Excel's Unicode Text)."""
    for delimiter in _DELIMITERS:
        columns = {column.strip().strip('"') for column in first_line.split(delimiter)}
        if "prompt" in columns:
            return delimiter
    return ","


def read_csv(text: IO[str], name: str) -> Iterator[RawJob]:
    first_line = text.readline()
    reader = csv.reader(itertools.chain([first_line], text), delimiter=csv_delimiter(first_line))
    header = _csv_header(reader, name)
    width = len(header)
    # One C call picks the job fields out of a row; an absent column reads the None that is
    # appended to every row (index -1).
    pick = operator.itemgetter(*(header.index(f) if f in header else -1 for f in JOB_FIELDS))
    extra_columns = [(i, column) for i, column in enumerate(header) if column not in JOB_FIELDS]
    rows = 0
    while True:
        start = reader.line_num + 1
        try:
            row: list[Any] = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            message = (
                "holds binary data (NUL bytes)" if "NUL" in str(exc) else f"not valid CSV: {exc}"
            )
            raise JobFileError(name, message, start) from None
        rows += 1
        if len(row) != width:
            if not any(cell.strip() for cell in row):
                rows -= 1
                continue  # a blank line, or a line of bare commas
            message = f"the row has {len(row)} values, the header {width}"
            if len(row) > width:  # most often a prompt with a comma, written without quotes
                message += ': put a value that holds a comma in double quotes ("a, b")'
            yield RawJob.broken(start, message)
            continue
        # A cell an export escaped starts with a quote: looked for only in rows with a quote
        # (one search for one character is three times as fast as for two).
        if "'" in (joined := "\0".join(row)) and ("\0'" in joined or joined[0] == "'"):
            row = [_unescaped(cell) for cell in row]
        extras = (
            {column: _csv_value(column, row[i]) for i, column in extra_columns}
            if extra_columns
            else None
        )
        row.append(None)
        ref, prompt, model, cell, aspect, enhance = pick(row)
        images = cell.split("|") if cell else None
        if images and (" " in cell or "\t" in cell):
            images = [part.strip() for part in images]
        if enhance:
            enhance = _BOOL_TEXT.get(enhance.lower(), enhance)
        # tuple.__new__ skips the Python-level __new__ of a NamedTuple: this runs per row.
        yield _new_raw_job(
            RawJob, (start, ref, prompt, model, images, aspect, enhance, extras, None, ())
        )
    if rows == 0:
        raise JobFileError(name, "has a header but no rows: no jobs to load")


def _csv_header(reader: Iterator[list[str]], name: str) -> list[str]:
    """The header row, checked; the id column under its other name is called `id`."""
    try:
        header = [column.strip() for column in next(reader)]
    except StopIteration:
        raise JobFileError(name, "is empty: no header row") from None
    except csv.Error as exc:
        raise JobFileError(name, f"the header is not valid CSV: {exc}", 1) from None
    _check_header(header, name)
    if ID_ALIAS in header:
        header[header.index(ID_ALIAS)] = "id"
    return header


def _unescaped(cell: str) -> str:
    """A cell as it was before the export put a `'` before it (see FORMULA_STARTS)."""
    return cell[1:] if cell[:1] == "'" and cell[1:2] and cell[1] in _FORMULA_CHARS else cell


def _csv_value(column: str, text: str) -> Any:
    """A CSV cell of an extra column: booleans for the boolean fields we know, else text."""
    if column in BOOL_FIELDS and text:
        return _BOOL_TEXT.get(text.lower(), text)
    return text


def _check_header(header: list[str], name: str) -> None:
    problems = []
    seen: set[str] = set()
    for column in header:
        if not column:
            problems.append("a column has no name")
        elif column in seen:
            problems.append(f"column {column!r} appears twice")
        elif (message := field_name_problem(column)) is not None:
            problems.append(f"column {column!r}: {message}")
        seen.add(column)
    if {"id", ID_ALIAS} <= seen:
        problems.append(f"columns 'id' and {ID_ALIAS!r} are the same thing; keep one")
    missing = [column for column in _REQUIRED_COLUMNS if column not in seen]
    if missing:
        problems.append(
            f"no {' or '.join(repr(c) for c in missing)} column; the header has: "
            f"{', '.join(header)[:200]}"
        )
    if problems:
        raise JobFileError(name, "; ".join(problems), 1)
