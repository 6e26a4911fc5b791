"""Export a batch as CSV or JSON Lines: each row's input fields, then what happened to it.

The input columns are the loader's own, so an export can be edited and loaded again as a new
batch (the result columns are then ignored). The file is written next to its destination and
renamed into place, so a failed export never leaves half a file behind.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from collections.abc import Collection, Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Final

import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.engine import Engine

from veobatch.errors import VeoBatchError, WriteError
from veobatch.pricing import decimal_text
from veobatch.store.queries import stream_jobs, utc

EXPORT_FORMATS: Final = ("csv", "jsonl")
INPUT_COLUMNS: Final = ("id", "prompt", "model", "images", "aspect_ratio", "enhance_prompt")
# A CSV cell that starts with one of these is a formula to a spreadsheet (CSV injection): the
# export writes it after a `'`, and the CSV reader takes the `'` off again.
FORMULA_STARTS: Final = ("=", "+", "-", "@", "\t", "\r")
# Columns that `veo-batch export` adds after the job's own: a re-loaded export ignores them
# instead of sending them.
OUTPUT_COLUMNS: Final = (
    "status",
    "task_id",
    "account",  # the relay account its task belongs to (VEO_ACCOUNTS; `default` without it)
    "error",
    "error_kind",
    "http_status",
    "attempts",
    "remote_status",
    "progress",
    "video_url",
    "video_path",
    "video_bytes",
    "video_sha256",
    "download_error",
    "polls",
    "cost",  # the price counted for the row: each submission that made (or may have) a task
    "review",  # approved or rejected, by a person looking at the video
    "line",
    "created_at",
    "updated_at",
    "submitted_at",
    "finished_at",
)


def export_format(path: str, format: str | None) -> str:
    if format:
        return format
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix in EXPORT_FORMATS:
        return suffix
    raise VeoBatchError(f"{path}: cannot tell the format; name it .csv or .jsonl, or pass --format")


def extra_keys(conn: Connection, query: sa.Select[Any]) -> list[str]:
    """Every pass-through field used by a row of `query`, in first-seen order."""
    texts = sa.select(sa.cast(query.subquery().c.extra, sa.Text)).distinct()
    keys: dict[str, None] = {}
    for (text,) in conn.execute(texts):
        if text and text != "null":
            keys.update(dict.fromkeys(json.loads(text)))
    return list(keys)


def export_rows(
    conn: Connection, query: sa.Select[Any], priced: Collection[str] | None = None
) -> tuple[list[str], Iterator[dict[str, Any]]]:
    """The column names and a stream of row dicts (native values) for `query` (`priced`: see
    `output_value`)."""
    extras = extra_keys(conn, query)
    columns = [*INPUT_COLUMNS, *extras, *OUTPUT_COLUMNS]

    def rows() -> Iterator[dict[str, Any]]:
        for job in stream_jobs(conn, query):
            yield _row(job, extras, priced)

    return columns, rows()


def _row(job: sa.Row[Any], extras: list[str], priced: Collection[str] | None) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": job.ref,
        "prompt": job.prompt,
        "model": job.model,
        "images": [image_path(entry) for entry in job.images or ()],
        "aspect_ratio": job.aspect_ratio,
        "enhance_prompt": job.enhance_prompt,
    }
    extra = job.extra or {}
    for key in extras:
        row[key] = extra.get(key)
    for column in OUTPUT_COLUMNS:
        value = output_value(job, column, priced)
        row[column] = utc(value).isoformat() if isinstance(value, datetime) else value  # type: ignore[union-attr]
    return row


def output_value(job: sa.Row[Any], column: str, priced: Collection[str] | None = None) -> Any:
    """One of OUTPUT_COLUMNS of a row (`cost` as a decimal text in the currency's units).
    With `priced` (the models that have a price), a row of another model that counted nothing
    has no cost (None), not 0: unpriced is never free."""
    if column == "cost":
        if not job.cost_micros and priced is not None and job.model not in priced:
            return None
        return decimal_text(job.cost_micros)
    return getattr(job, column)


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
    """The rows `query` selects as CSV or JSON Lines text, a few hundred rows a chunk, read
    while it is iterated (one connection, a server-side cursor on PostgreSQL); `rows` counts
    the rows written so far."""

    def __init__(
        self,
        engine: Engine,
        query: sa.Select[Any],
        format: str,
        priced: Collection[str] | None = None,
    ) -> None:
        if format not in EXPORT_FORMATS:
            raise VeoBatchError(f"format: {format!r} is not one of {', '.join(EXPORT_FORMATS)}")
        self.engine, self.query, self.format = engine, query, format
        self.priced = priced  # see `output_value`
        self.rows = 0

    def __iter__(self) -> Iterator[str]:
        buffer = io.StringIO()
        with self.engine.connect() as conn:
            columns, rows = export_rows(conn, self.query, self.priced)
            for _ in _lines(buffer, self.format, columns, rows):
                self.rows += 1
                if self.rows % 500 == 0:
                    yield buffer.getvalue()
                    buffer.seek(0)
                    buffer.truncate()
        yield buffer.getvalue()


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


def write_export(path: str, text: Iterable[str], stdout: IO[str] | None = None) -> None:
    """Write `text` to `path` (`-`: `stdout`), atomically: into a temporary file beside it,
    renamed into place once complete."""
    if path == "-":
        assert stdout is not None
        stdout.writelines(text)
        return
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    except OSError as exc:
        raise WriteError(f"{path}: cannot write here: {exc.strerror}") from None
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # as any new file (mkstemp's is 0600)
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
            out.writelines(text)
        os.replace(temporary, target)
    except OSError as exc:
        os.unlink(temporary)
        raise WriteError(
            f"{path}: not written ({exc.strerror}); nothing was left half-written"
        ) from None
    except BaseException:
        os.unlink(temporary)
        raise


def _lines(
    out: IO[str], format: str, columns: list[str], rows: Iterator[dict[str, Any]]
) -> Iterator[None]:
    """Write the header (CSV), then each row, yielding after each row."""
    if format == "jsonl":
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
            yield None
        return
    writer = csv.writer(out)
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_csv_cell(key, row[key]) for key in columns])
        yield None


def _csv_cell(key: str, value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value  # a spreadsheet would run it as a formula; the loader takes it off
    if key == "images" and isinstance(value, list):
        return "|".join(str(image) for image in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return value
