"""Export a batch as CSV or JSON Lines: each row's input fields, then what happened to it.

The input columns are the loader's own, so an export can be edited and loaded again as a new
batch (the result columns are then ignored). The file is written next to its destination and
renamed into place, so a failed export never leaves half a file behind.
"""

from __future__ import annotations

import codecs
import csv
import functools
import io
import json
import os
import tempfile
from collections.abc import Collection, Generator, Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any, Final

import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.engine import Engine

from veobatch.errors import VeoBatchError, WriteError
from veobatch.pricing import decimal_text
from veobatch.store.export_columns import (
    EXPORT_FORMATS,
    FORMULA_STARTS,
    INPUT_COLUMNS,
    OUTPUT_COLUMNS,
)
from veobatch.store.export_parts import Parts, parts_wanted, split
from veobatch.store.queries import utc
from veobatch.store.tables import Job


def export_format(path: str, format: str | None) -> str:
    if format:
        return format
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix in EXPORT_FORMATS:
        return suffix
    raise VeoBatchError(f"{path}: cannot tell the format; name it .csv or .jsonl, or pass --format")


def extra_keys(conn: Connection, query: sa.Select[Any]) -> list[str]:
    """Every pass-through field used by a row of `query`, in first-seen order (by row id,
    so that both databases give the same columns in the same order)."""
    keys: dict[str, None] = {}
    for (text,) in conn.execute(extra_texts(query)):
        if text and text != "null":
            keys.update(dict.fromkeys(json.loads(text)))
    return list(keys)


def extra_texts(query: sa.Select[Any]) -> sa.Select[Any]:
    """Each different `extra` of `query`'s rows, as text, in first-seen order: read from the
    rows that have one (most have none), which index `ix_jobs_extra` holds."""
    rows = query.where(Job.extra.is_not(None)).subquery()
    extra = sa.cast(rows.c.extra, sa.Text)
    return sa.select(extra).group_by(extra).order_by(sa.func.min(rows.c.id))


# What each column of an export is read as: the row's own columns, the database's raw values
# (no SQLAlchemy result processing: a timestamp as SQLite's text, JSON as text), in this order.
_INPUT_READ: Final = ("ref", "prompt", "model", "images", "aspect_ratio", "enhance_prompt")
_TEXT_OUTPUTS: Final = frozenset(
    {
        "status",
        "task_id",
        "account",
        "error",
        "error_kind",
        "remote_status",
        "progress",
        "video_url",
        "video_path",
        "video_sha256",
        "download_error",
        "review",
    }
)
_TIMES: Final = frozenset({"created_at", "updated_at", "submitted_at", "finished_at"})
CHUNK_ROWS: Final = 1_000  # rows fetched, formatted and written at a time (5,000: slower, +25 MB)
LINE_END: Final = "\n"  # as PostgreSQL's COPY ends a CSV line, so both databases write the same


def export_columns(conn: Connection, query: sa.Select[Any]) -> tuple[list[str], list[str]]:
    """The export's column names, and the pass-through fields among them (`extra_keys`)."""
    extras = extra_keys(conn, query)
    return [*INPUT_COLUMNS, *extras, *OUTPUT_COLUMNS], extras


def _read(query: sa.Select[Any], dialect: str) -> sa.Select[Any]:
    """`query` (rows of Job) narrowed to what an export reads, as text where the driver
    would otherwise build objects that are only turned back into text: timestamps (SQLite
    keeps them as text; PostgreSQL is asked for the same text, in UTC) and JSON."""
    names = [*_INPUT_READ, "extra", *("cost_micros" if n == "cost" else n for n in OUTPUT_COLUMNS)]
    return query.with_only_columns(*(_raw(name, dialect) for name in names))


def _raw(name: str, dialect: str) -> sa.ColumnElement[Any]:
    column: sa.ColumnElement[Any] = getattr(Job, name)
    if name not in _RAW:
        return column
    if dialect != "postgresql":
        return sa.type_coerce(column, sa.String()).label(name)
    if name in _TIMES:  # (as SQLite keeps them: `2026-12-04 13:25:50.000000`)
        utc_time = sa.func.timezone("UTC", column)
        return sa.func.to_char(utc_time, "YYYY-MM-DD HH24:MI:SS.US").label(name)
    return sa.cast(column, sa.Text).label(name)


_RAW: Final = frozenset({"images", "extra", *_TIMES})


def export_chunks(
    conn: Connection,
    query: sa.Select[Any],
    extras: list[str],
    priced: Collection[str] | None,
    format: str,
) -> Iterator[list[Sequence[Any]]]:
    """The export's rows, CHUNK_ROWS at a time, each chunk as its columns of cells in the
    order of `export_columns`: for CSV, as the file writes them (formulas escaped, images
    joined with `|`, booleans as true/false); for JSON Lines, native values (images a list).
    One pass over the rows as the driver gives them (see `_read`); a chunk is made a column
    at a time, each by its column's own function, and a column with no value in the chunk is
    left as it is."""
    csv_cells = format == "csv"
    text = _escaped if csv_cells else _same
    inputs = (text, text, text, _images_joined if csv_cells else _images_list, _same)
    flag = _flag_text if csv_cells else _flag
    made = [_made(name, text) for name in OUTPUT_COLUMNS]
    cost = OUTPUT_COLUMNS.index("cost")
    for chunk in _raw_chunks(conn, _read(query, conn.dialect.name)):
        raw = list(zip(*chunk, strict=True))
        cells = [_cells(f, column) for f, column in zip(inputs, raw[:5], strict=True)]
        cells.append([flag(value) for value in raw[5]])
        if extras:
            cells += zip(*(_extras(value, extras, csv_cells) for value in raw[6]), strict=True)
        outputs = [_cells(f, column) for f, column in zip(made, raw[7:], strict=True)]
        if priced is not None:
            counted, models = raw[7 + cost], raw[2]
            outputs[cost] = [
                None if costless(micros, model, priced) else shown
                for shown, micros, model in zip(outputs[cost], counted, models, strict=True)
            ]
        yield [*cells, *outputs]


def csv_lines(columns: Sequence[Sequence[Any]]) -> str:
    """A chunk's columns of cells (`export_chunks`) as CSV lines, each ended by LINE_END."""
    fields = [_csv_fields(column) for column in columns]
    return LINE_END.join(map(",".join, zip(*fields, strict=True))) + LINE_END


def _csv_fields(column: Sequence[Any]) -> Sequence[str]:
    """A column's cells as CSV fields, as PostgreSQL's COPY writes them (and Python's csv
    writer, but for a lone carriage return, which it leaves unquoted): none as nothing, a
    text inside double quotes when it holds `,` `"` or a line break (its quotes doubled),
    anything else as its text."""
    if column.count(None) == len(column):
        return [""] * len(column)
    return [
        ""
        if cell is None
        else (
            '"' + cell.replace('"', '""') + '"'
            if "," in cell or '"' in cell or "\n" in cell or "\r" in cell
            else cell
        )
        if type(cell) is str
        else str(cell)
        for cell in column
    ]


def _cells(make: Any, column: Sequence[Any]) -> Sequence[Any]:
    """A column's cells: `make` of each value, None kept (a column of None as it is)."""
    if make is _same or column.count(None) == len(column):
        return column
    return [value if value is None else make(value) for value in column]


def _raw_chunks(conn: Connection, select: sa.Select[Any]) -> Iterator[Sequence[Sequence[Any]]]:
    """The rows of `select`, CHUNK_ROWS at a time, as the driver gives them: on SQLite
    straight from its cursor (no SQLAlchemy row is made: a third of the time of an export),
    on PostgreSQL from a server-side cursor (the values are text already, see `_read`)."""
    if conn.dialect.name != "sqlite":
        result = conn.execution_options(stream_results=True, yield_per=CHUNK_ROWS).execute(select)
        try:
            yield from result.partitions(CHUNK_ROWS)
        finally:
            result.close()
        return
    compiled = select.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    params = [compiled.params[name] for name in compiled.positiontup or ()]
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(compiled.string, params)
        while chunk := cursor.fetchmany(CHUNK_ROWS):
            yield chunk
    finally:
        cursor.close()


def _made(name: str, text: Any) -> Any:
    """The function that makes output column `name`'s cell from its raw value (not None)."""
    if name in _TEXT_OUTPUTS:
        return text
    if name in _TIMES:
        return _time
    if name == "cost":
        return _cost_text
    return _same


@functools.lru_cache(maxsize=4096)
def _cost_text(micros: int) -> str:
    return decimal_text(micros)  # (a batch's rows share a few prices: each made once)


def _same(value: Any) -> Any:
    return value


def _escaped(value: Any) -> Any:
    """A text cell of a CSV: after a `'` when a spreadsheet would run it as a formula."""
    if value and value[0] in _FORMULA_FIRST:
        return "'" + value
    return value


_FORMULA_FIRST: Final = frozenset(start[0] for start in FORMULA_STARTS)


def _flag(value: Any) -> bool | None:
    return None if value is None else bool(value)  # (SQLite keeps booleans as 0 and 1)


def _flag_text(value: Any) -> str | None:
    return None if value is None else "true" if value else "false"


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value  # (psycopg parses JSON)


def _images_list(value: Any) -> list[Any]:
    if isinstance(value, str) and (plain := _plain_links(value)) is not None:
        return plain
    return [image_path(entry) for entry in _json(value) or ()]


def _plain_links(text: str) -> list[str] | None:
    """The entries of a stored `images` of plain links (`["a", "b"]`, as the loader writes
    it), split without a JSON parser; None for anything else (an escape, a local image's
    object), which is then parsed. An entry is a text or a local image's object, never
    another value (the checker refuses them): a list that starts and ends with a quoted
    entry and holds no `\\` and no `{` holds only texts. PostgreSQL's export uses the same
    rule (`export_copy`)."""
    return text[2:-2].split('", "') if _plain(text) else None


def _plain(text: str) -> bool:
    return text.startswith('["') and text.endswith('"]') and "\\" not in text and "{" not in text


def _images_joined(value: Any) -> str:
    """The images as one CSV cell: joined with `|` (a plain list's separators replaced)."""
    if isinstance(value, str) and _plain(value):
        return str(_escaped(value[2:-2].replace('", "', "|")))
    return str(_escaped("|".join(str(image) for image in _images_list(value))))


def _extras(value: Any, extras: list[str], csv_cells: bool) -> list[Any]:
    found = _json(value) or {}
    cells = [found.get(key) for key in extras]
    if not csv_cells:
        return cells
    return [_csv_value(cell) for cell in cells]


def _csv_value(value: Any) -> Any:
    """A pass-through field's value as a CSV cell."""
    if isinstance(value, str):
        return _escaped(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return value


@functools.lru_cache(maxsize=4096)
def _time(value: Any) -> str:
    """A timestamp as ISO 8601 in UTC (`2026-12-04T13:25:50+00:00`, microseconds when there
    are): SQLite's text, or a datetime from PostgreSQL. Each is made once (rows loaded or
    sent together share theirs)."""
    if isinstance(value, str):
        text = value.replace(" ", "T", 1)
        if text.endswith(".000000"):
            text = text[:-7]
        return text + "+00:00"
    stamp = utc(value)
    assert stamp is not None
    return stamp.isoformat()


def output_value(job: sa.Row[Any], column: str, priced: Collection[str] | None = None) -> Any:
    """One of OUTPUT_COLUMNS of a row (`cost` as a decimal text in the currency's units).
    With `priced` (the models that have a price), a row of another model that counted nothing
    has no cost (None), not 0: unpriced is never free."""
    if column == "cost":
        return None if costless(job.cost_micros, job.model, priced) else _cost_text(job.cost_micros)
    return getattr(job, column)


def costless(micros: int, model: str, priced: Collection[str] | None) -> bool:
    """A row that counted nothing for a model without a price (of `priced`) has no cost,
    not 0: unpriced is never free (PostgreSQL's export says the same in SQL)."""
    return not micros and priced is not None and model not in priced


def image_path(entry: Any) -> Any:
    """An `images` entry as an export writes it: a local image by its path on this machine
    (so the export loads again as a job file), anything else as stored."""
    return entry.get("path", entry) if isinstance(entry, dict) else entry


def image_name(entry: Any) -> Any:
    """An `images` entry as a page or an answer shows it: a local image by the name its job
    file gave (never a path of the server)."""
    return entry.get("name", entry) if isinstance(entry, dict) else entry


def image_file(entry: Any) -> dict[str, Any] | None:
    """What a row keeps of a local image, without the server's path; None for a link."""
    if not isinstance(entry, dict):
        return None
    return {k: v for k, v in entry.items() if k not in ("path", "original")}


class ExportText:
    """The rows `query` selects as CSV or JSON Lines, read while it is iterated, a chunk of
    rows at a time: `chunks()` gives the UTF-8 bytes a file or a response takes (PostgreSQL's
    as COPY sends them: no text is decoded to be encoded again), iterating gives text;
    `rows` counts the rows written so far. A big export is made in parts at once
    (`export_parts`; `parts` caps how many, None: as many as this machine and database
    allow), handed on in order; each part is one statement's view of the rows."""

    def __init__(
        self,
        engine: Engine,
        query: sa.Select[Any],
        format: str,
        priced: Collection[str] | None = None,
        parts: int | None = None,
    ) -> None:
        if format not in EXPORT_FORMATS:
            raise VeoBatchError(f"format: {format!r} is not one of {', '.join(EXPORT_FORMATS)}")
        self.engine, self.query, self.format = engine, query, format
        self.priced = priced  # see `output_value`
        self.parts = parts
        self.rows = 0

    def __iter__(self) -> Iterator[str]:
        decoder = codecs.getincrementaldecoder("utf-8")()
        for chunk in self.chunks():
            yield decoder.decode(chunk)
        yield decoder.decode(b"", final=True)

    def chunks(self) -> Iterator[bytes]:
        """The export as UTF-8, a chunk of rows at a time."""
        with self.engine.connect() as conn:
            columns, extras = export_columns(conn, self.query)
            if self.format == "csv":
                header = io.StringIO()
                csv.writer(header, lineterminator=LINE_END).writerow(columns)
                yield header.getvalue().encode()
            dialect = conn.dialect.name
            wanted = parts_wanted(dialect) if self.parts is None else self.parts
            first, *later = split(conn, self.query, wanted)
            make = functools.partial(self._part, columns=columns, extras=extras)
            with Parts(self.engine, later, make) as rest:
                for text in make(conn, first):
                    if isinstance(text, int):
                        self.rows = text
                    elif text:
                        yield text
                first_rows = self.rows
                for block in rest.blocks():
                    self.rows = first_rows + rest.rows
                    yield block
                self.rows = first_rows + rest.rows

    def _part(
        self, conn: Connection, query: sa.Select[Any], *, columns: list[str], extras: list[str]
    ) -> Generator[bytes | int, None, None]:
        """The UTF-8 of `query`'s rows (no header), a chunk at a time, then their number."""
        if self.format == "csv" and conn.dialect.name == "postgresql":
            from veobatch.store.export_copy import copy_csv_lines  # noqa: PLC0415 - (PostgreSQL's)

            yield from copy_csv_lines(
                conn, query, extras, OUTPUT_COLUMNS, FORMULA_STARTS, self.priced
            )
            return
        rows = 0
        for chunk in export_chunks(conn, query, extras, self.priced, self.format):
            if self.format == "csv":
                yield csv_lines(chunk).encode()
            else:
                lines = [_json_line(columns, row) for row in zip(*chunk, strict=True)]
                yield "".join(lines).encode()
            rows += len(chunk[0])
        yield rows


def _json_line(columns: list[str], row: Sequence[Any]) -> str:
    return json.dumps(dict(zip(columns, row, strict=True)), ensure_ascii=False, default=str) + "\n"


def _umask() -> int:
    """This process's umask: read from /proc on Linux (setting it to read it back would
    change it for a moment for every thread), else set and set back."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_export(path: str, chunks: Iterable[bytes], stdout: IO[bytes] | None = None) -> None:
    """Write `chunks` (`ExportText.chunks()`) to `path` (`-`: `stdout`), atomically: into a
    temporary file beside it, renamed into place once complete."""
    if path == "-":
        assert stdout is not None
        stdout.writelines(chunks)
        stdout.flush()
        return
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    except OSError as exc:
        raise WriteError(f"{path}: cannot write here: {exc.strerror}") from None
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # as any new file (mkstemp's is 0600)
        with os.fdopen(fd, "wb") as out:
            out.writelines(chunks)
        os.replace(temporary, target)
    except OSError as exc:
        os.unlink(temporary)
        raise WriteError(
            f"{path}: not written ({exc.strerror}); nothing was left half-written"
        ) from None
    except BaseException:
        os.unlink(temporary)
        raise
