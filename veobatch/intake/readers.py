"""Readers of job files: CSV, YAML and JSON Lines, from a path or standard input.

Each reader streams: it yields one `RawJob` at a time with the line where the row starts, so a
file of a million rows never sits whole in memory. Anything that makes the file unusable as a
whole (not UTF-8, binary, a YAML syntax error, no `prompt` column) raises `JobFileError` with
the file name and line; a problem confined to one row travels with that row instead.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import operator
import os
import sys
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final

import yaml

from veobatch.errors import JobFileError
from veobatch.images.files import ImageFolder
from veobatch.intake.job_spec import BOOL_FIELDS, ID_ALIAS, JOB_FIELDS, RawJob, field_name_problem
from veobatch.store.export import FORMULA_STARTS

FORMATS: Final = ("csv", "yaml", "jsonl")
EXTENSIONS: Final = {
    ".csv": "csv",
    ".yaml": "yaml",
    ".yml": "yaml",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}
_REQUIRED_COLUMNS: Final = ("prompt", "model", "images")
_BOM: Final = b"\xef\xbb\xbf"
_UTF16_BOMS: Final = (b"\xff\xfe", b"\xfe\xff")
_DELIMITERS: Final = (",", ";", "\t")
_FORMULA_CHARS: Final = "".join(FORMULA_STARTS)
MAX_YAML_DEPTH: Final = 64  # nesting of a YAML job file
MAX_JOB_NODES: Final = 10_000  # values in one job (or `defaults:`), aliases expanded
MAX_JOB_TEXT: Final = 64 * 1024 * 1024  # its text: three 20 MB data: URIs fit
_BINARY_SIGNATURES: Final = {
    b"PK\x03\x04": "a ZIP archive (an .xlsx workbook? save it as 'CSV UTF-8')",
    b"\xd0\xcf\x11\xe0": "an old Excel/Office file (save it as 'CSV UTF-8')",
    b"\x89PNG": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"%PDF": "a PDF document",
    b"\x1f\x8b": "a gzip archive (unpack it first)",
}

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

csv.field_size_limit(64 * 1024 * 1024)  # data: URIs of images up to 20 MB sit in one field


@dataclass
class JobFile:
    """An opened job file: `rows()` streams its jobs; `position()/size` drive progress."""

    name: str
    format: str
    stream: IO[bytes]
    size: int | None
    encoding: str = "utf-8-sig"  # UTF-16 when the file starts with its byte order mark
    # Where the paths of local images in it point; None: the file came as data (over HTTP),
    # and a path in it is refused, never opened.
    images: ImageFolder | None = None

    def rows(self) -> Iterator[RawJob]:
        # Decoding happens in C, a block at a time; only a file that is not UTF-8 costs a
        # second look, to say on which line it breaks.
        text = io.TextIOWrapper(self.stream, encoding=self.encoding, newline="")
        try:
            yield from _READERS[self.format](text, self.name)
        except UnicodeDecodeError as exc:
            raise self._decode_error(exc) from None
        finally:
            text.detach()

    def _decode_error(self, exc: UnicodeDecodeError) -> JobFileError:
        byte = exc.object[exc.start]
        if self.encoding == "utf-16":
            return JobFileError(self.name, "is not valid UTF-16 text; save it as UTF-8")
        advice = "save it as UTF-8 (in Excel: 'CSV UTF-8')"
        if not self.stream.seekable():
            return JobFileError(self.name, f"is not UTF-8 text (byte 0x{byte:02x}); {advice}")
        self.stream.seek(0)
        for number, raw in enumerate(self.stream, 1):
            try:
                (raw.removeprefix(_BOM) if number == 1 else raw).decode("utf-8")
            except UnicodeDecodeError as found:
                column, byte = found.start + 1, found.object[found.start]
                message = f"is not UTF-8 text (byte 0x{byte:02x} at column {column}); {advice}"
                return JobFileError(self.name, message, number)
        return JobFileError(self.name, f"is not UTF-8 text (byte 0x{byte:02x}); {advice}")

    def position(self) -> int | None:
        try:
            return self.stream.tell() if self.size else None
        except OSError:
            return None


def detect_format(path: str, format: str | None) -> str:
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


@contextmanager
def open_job_file(
    path: str, format: str | None = None, stdin: IO[bytes] | None = None
) -> Iterator[JobFile]:
    """Open `path` (`-` for standard input) and check that it looks like a text job file."""
    fmt = detect_format(path, format)
    if path == "-":
        raw: IO[bytes] = stdin if stdin is not None else sys.stdin.buffer
        stream = raw if hasattr(raw, "peek") else io.BufferedReader(raw)  # type: ignore[type-var]
        yield _checked(JobFile("<stdin>", fmt, stream, None, images=ImageFolder(Path.cwd())))
        return
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed below, after the caller is done
    except FileNotFoundError:
        raise JobFileError(path, "no such file") from None
    except IsADirectoryError:
        raise JobFileError(path, "is a directory, not a job file") from None
    except OSError as exc:
        raise JobFileError(path, f"cannot be read: {exc.strerror}") from None
    with handle:
        size = os.fstat(handle.fileno()).st_size
        folder = ImageFolder(Path(path).absolute().parent)
        yield _checked(JobFile(path, fmt, handle, size, images=folder))


def job_file_from_bytes(name: str, data: bytes, format: str | None = None) -> JobFile:
    """An uploaded job file, checked like a file on disk; problems name it `name`."""
    stream = io.BufferedReader(io.BytesIO(data))
    return _checked(JobFile(name, detect_format(name, format), stream, len(data)))


def _checked(job_file: JobFile) -> JobFile:
    head: bytes = job_file.stream.peek(4096)[:4096]  # type: ignore[attr-defined]
    if not head.strip(b" \t\r\n" + _BOM):
        raise JobFileError(job_file.name, "is empty: no jobs to load")
    for signature, what in _BINARY_SIGNATURES.items():
        if head.startswith(signature):
            raise JobFileError(job_file.name, f"is {what}, not a {job_file.format} job file")
    if head.startswith(_UTF16_BOMS):  # Excel's "Unicode Text", Notepad's "Unicode"
        job_file.encoding = "utf-16"
        return job_file
    if _looks_utf16(head):
        raise JobFileError(
            job_file.name,
            "is UTF-16 text without a byte order mark; save it as UTF-8 (in Excel: 'CSV UTF-8')",
        )
    if b"\x00" in head:
        raise JobFileError(
            job_file.name, f"holds binary data (NUL bytes), not a {job_file.format} job file"
        )
    return job_file


def _looks_utf16(head: bytes) -> bool:
    """Text in UTF-16 without its BOM: a NUL in every other byte of a mostly-ASCII start."""
    sample = head[:200]
    if len(sample) < 8:
        return False
    odd, even = sample[1::2], sample[0::2]
    return odd.count(0) >= 0.9 * len(odd) or even.count(0) >= 0.9 * len(even)


# ---------------------------------------------------------------------------------- CSV


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
            yield RawJob.broken(start, f"the row has {len(row)} values, the header {width}")
            continue
        if "'" in "".join(cell[:1] for cell in row):  # a cell an export kept from spreadsheets
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


# ---------------------------------------------------------------------------------- JSONL


def read_jsonl(text: IO[str], name: str) -> Iterator[RawJob]:
    rows = 0
    for number, line in enumerate(text, 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            if rows == 0:
                raise JobFileError(
                    name, f"is not JSON Lines: {exc.msg} at column {exc.colno}", number
                ) from None
            yield RawJob.broken(number, f"not valid JSON: {exc.msg} at column {exc.colno}")
        except RecursionError:  # a line nested thousands deep
            yield RawJob.broken(number, "the JSON is nested too deep to be a job")
        else:
            if not isinstance(value, dict):
                message = f"each line must be a JSON object, this one is {type(value).__name__}"
                if rows == 0:
                    raise JobFileError(name, message, number)
                yield RawJob.broken(number, message)
            else:
                yield RawJob.from_mapping(number, value)
        rows += 1
    if rows == 0:
        raise JobFileError(name, "is empty: no jobs to load")


# ---------------------------------------------------------------------------------- YAML

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_yaml(text: IO[str], name: str) -> Iterator[RawJob]:
    """`defaults:` (optional, before `jobs:`) and `jobs:`, or a bare list of jobs.

    Jobs are composed one at a time from the parser's events, keeping each field's line.
    """
    loader = _Loader(text)
    try:
        yield from _YamlJobs(loader, name).read()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise JobFileError(name, f"YAML syntax error: {exc.problem or exc.context}", line) from None
    except yaml.YAMLError as exc:
        raise JobFileError(name, f"YAML error: {exc}") from None
    finally:
        loader.dispose()


class _YamlJobs:
    def __init__(self, loader: Any, name: str) -> None:
        self.loader = loader
        self.name = name
        self.anchors: dict[str, yaml.Node] = {}
        self.defaults: dict[str, Any] = {}
        self.default_lines: dict[str, int] = {}

    def read(self) -> Iterator[RawJob]:
        loader = self.loader
        count: int
        loader.get_event()  # stream start
        if loader.check_event(yaml.StreamEndEvent):
            raise JobFileError(self.name, "is empty: no jobs to load")
        loader.get_event()  # document start
        if loader.check_event(yaml.SequenceStartEvent):
            count = yield from self._jobs()
        elif loader.check_event(yaml.MappingStartEvent):
            count = yield from self._top_mapping()
        else:
            node = self._compose()
            raise JobFileError(
                self.name,
                "expected `jobs:` (a list of jobs, optionally after `defaults:`); "
                f"found {_kind(node)}",
                node.start_mark.line + 1,
            )
        if count == 0:
            raise JobFileError(self.name, "`jobs:` is empty: no jobs to load")

    def _top_mapping(self) -> Generator[RawJob, None, int]:
        loader = self.loader
        loader.get_event()
        count: int | None = None
        while not loader.check_event(yaml.MappingEndEvent):
            key_node = self._compose()
            key, line = str(key_node.value), key_node.start_mark.line + 1
            if key == "jobs":
                if not loader.check_event(yaml.SequenceStartEvent):
                    raise JobFileError(self.name, "`jobs:` must be a list of jobs", line)
                count = yield from self._jobs()
            elif key == "defaults":
                if count is not None:
                    raise JobFileError(self.name, "`defaults:` must come before `jobs:`", line)
                node = self._compose()
                if not isinstance(node, yaml.MappingNode):
                    raise JobFileError(
                        self.name, "`defaults:` must be a mapping of job fields", line
                    )
                if (too_big := _expansion_problem(node)) is not None:
                    raise JobFileError(self.name, f"`defaults:` {too_big}", line)
                self.defaults, self.default_lines = self._fields(node)
            else:
                hint = " (did you mean 'jobs'?)" if key.lower().startswith("job") else ""
                raise JobFileError(
                    self.name,
                    f"unknown top-level key {key!r}{hint}; a job file has `defaults:` and `jobs:`",
                    line,
                )
        if count is None:
            raise JobFileError(self.name, "no `jobs:` list")
        return count

    def _jobs(self) -> Generator[RawJob, None, int]:
        loader = self.loader
        loader.get_event()  # sequence start
        count = 0
        while not loader.check_event(yaml.SequenceEndEvent):
            node = self._compose()
            line = node.start_mark.line + 1
            count += 1
            if not isinstance(node, yaml.MappingNode):
                message = f"each job must be a mapping of fields, this one is {_kind(node)}"
                yield RawJob.broken(line, message)
                continue
            if (too_big := _expansion_problem(node)) is not None:
                yield RawJob.broken(line, f"the job {too_big}")
                continue
            values, lines = self._fields(node)
            if self.defaults:
                values = {**self.defaults, **values}
                lines = {**self.default_lines, **lines}
            yield RawJob.from_mapping(line, values, lines)
        loader.get_event()
        return count

    def _fields(self, node: yaml.MappingNode) -> tuple[dict[str, Any], dict[str, int]]:
        loader = self.loader
        loader.flatten_mapping(node)  # applies `<<: *anchor` merge keys
        values: dict[str, Any] = {}
        lines: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(loader.construct_object(key_node, deep=True))
            values[key] = loader.construct_object(value_node, deep=True)
            lines[key] = value_node.start_mark.line + 1
        loader.constructed_objects = {}  # keep memory flat: nothing refers back to old rows
        return values, lines

    def _compose(self, depth: int = 0) -> yaml.Node:
        """Build one node (and its children) from parser events, as PyYAML's composer does."""
        loader = self.loader
        event: Any = loader.get_event()
        start: Any = event.start_mark
        if depth > MAX_YAML_DEPTH:
            message = f"is nested more than {MAX_YAML_DEPTH} levels deep"
            raise JobFileError(self.name, message, start.line + 1)
        if isinstance(event, yaml.AliasEvent):
            try:
                return self.anchors[str(event.anchor)]
            except KeyError:
                message = f"unknown alias *{event.anchor}"
                raise JobFileError(self.name, message, start.line + 1) from None
        kind = _NODE_OF_EVENT[type(event)]
        tag = event.tag
        if tag is None or tag == "!":
            tag = loader.resolve(kind, getattr(event, "value", None), event.implicit)
        node: yaml.Node
        if kind is yaml.ScalarNode:
            node = yaml.ScalarNode(tag, event.value, start, event.end_mark, event.style)
        elif kind is yaml.SequenceNode:
            node = yaml.SequenceNode(tag, [], start, None, event.flow_style)
            while not loader.check_event(yaml.SequenceEndEvent):
                node.value.append(self._compose(depth + 1))
            node.end_mark = loader.get_event().end_mark
        else:
            node = yaml.MappingNode(tag, [], start, None, event.flow_style)
            while not loader.check_event(yaml.MappingEndEvent):
                node.value.append((self._compose(depth + 1), self._compose(depth + 1)))
            node.end_mark = loader.get_event().end_mark
        if event.anchor is not None:
            self.anchors[event.anchor] = node
        return node


_NODE_OF_EVENT: Final[dict[type, type[yaml.Node]]] = {
    yaml.ScalarEvent: yaml.ScalarNode,
    yaml.SequenceStartEvent: yaml.SequenceNode,
    yaml.MappingStartEvent: yaml.MappingNode,
}


def _expansion_problem(node: yaml.Node) -> str | None:
    """Why `node` is too big once its aliases are expanded (None if it is not): more than
    MAX_JOB_NODES values or MAX_JOB_TEXT characters. Anchors and aliases share nodes, so each
    is sized once; a few hundred bytes of nested aliases cannot become gigabytes."""
    sizes: dict[int, tuple[int, int]] = {}  # node id: (values, characters) expanded
    stack: list[tuple[yaml.Node, bool]] = [(node, False)]
    while stack:
        item, children_done = stack.pop()
        if id(item) in sizes:
            continue
        if isinstance(item, yaml.ScalarNode):
            sizes[id(item)] = (1, len(item.value))
            continue
        children = (
            [child for pair in item.value for child in pair]
            if isinstance(item, yaml.MappingNode)
            else list(item.value)
        )
        if not children_done:
            stack.append((item, True))
            stack.extend((child, False) for child in children if id(child) not in sizes)
            continue
        values = 1 + sum(sizes[id(child)][0] for child in children)
        chars = sum(sizes[id(child)][1] for child in children)
        sizes[id(item)] = (min(values, MAX_JOB_NODES + 1), min(chars, MAX_JOB_TEXT + 1))
    values, chars = sizes[id(node)]
    if values > MAX_JOB_NODES:
        return f"expands to more than {MAX_JOB_NODES:,} values (YAML aliases inside aliases?)"
    if chars > MAX_JOB_TEXT:
        return f"expands to more than {MAX_JOB_TEXT:,} characters of text"
    return None


def _kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.ScalarNode):
        return f"the text {node.value[:40]!r}"
    return "a list" if isinstance(node, yaml.SequenceNode) else "a mapping"


_READERS: Final[dict[str, Callable[[IO[str], str], Iterator[RawJob]]]] = {
    "csv": read_csv,
    "yaml": read_yaml,
    "jsonl": read_jsonl,
}
