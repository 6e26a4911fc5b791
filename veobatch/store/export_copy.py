"""A batch's CSV export made by PostgreSQL itself: `COPY (SELECT cells) TO STDOUT (FORMAT csv)`.

Each cell is an SQL expression that makes, in the database, the same text as the export's
Python cells (`veobatch.store.export`): formulas after a `'`, images joined with `|` (a local
image by its path), booleans as true/false, the cost as a decimal in the currency's units (none
for an unpriced model that counted nothing), times as ISO 8601 in UTC. COPY then quotes them
as Python's csv writer does (a cell holding `,` `"` or a line break, inside double quotes), and
streams the lines: no row becomes a Python object. An empty text is made NULL, which COPY writes
as nothing, as csv writes an empty text (COPY would write `""`). Lines end with `\\n`.

A test exports the same rows from SQLite (Python's cells) and from PostgreSQL (these) and
compares the bytes: the two must not drift apart.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.dialects.postgresql import ARRAY, aggregate_order_by

from veobatch.store.tables import Job

# The output columns made by a function of their own; every other one is plain text (escaped,
# as Python's `_escaped`) or a number (as it is).
_NUMBERS: Final = frozenset({"http_status", "attempts", "video_bytes", "polls", "line"})
_TIMES: Final = frozenset({"created_at", "updated_at", "submitted_at", "finished_at"})
_JOB: Final = Job.__table__.c  # the columns, as SQL expressions
_READ_BYTES: Final = 1 << 20  # COPY's output is handed on a megabyte of text at a time


def copy_csv_lines(
    conn: Connection,
    query: sa.Select[Any],
    extras: list[str],
    outputs: tuple[str, ...],
    formula_starts: tuple[str, ...],
    priced: Collection[str] | None,
) -> Iterator[bytes | int]:
    """The CSV lines of `query`'s rows (without the header), as UTF-8 a megabyte at a time,
    then the number of rows (an int, last)."""
    cells = csv_cells(extras, outputs, formula_starts, priced)
    select = query.with_only_columns(*cells)
    compiled = select.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    statement = f"COPY ({compiled.string}) TO STDOUT WITH (FORMAT csv, ENCODING 'UTF8')"
    driver = conn.connection.driver_connection
    assert driver is not None
    with driver.cursor() as cursor:
        with cursor.copy(statement, compiled.params) as copy:
            pending: list[bytes] = []
            size = 0
            for block in copy:
                pending.append(bytes(block))
                size += len(block)
                if size >= _READ_BYTES:
                    yield b"".join(pending)
                    pending, size = [], 0
            yield b"".join(pending)
        yield int(cursor.rowcount)


def csv_cells(
    extras: list[str],
    outputs: tuple[str, ...],
    formula_starts: tuple[str, ...],
    priced: Collection[str] | None,
) -> list[sa.ColumnElement[Any]]:
    """The SQL expressions of the export's cells, in the order of its columns."""

    def escaped(text: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        return _text(_escaped(text, formula_starts))

    cells = [
        escaped(_JOB.ref),
        escaped(_JOB.prompt),
        escaped(_JOB.model),
        _text(_images_joined(formula_starts)),
        _text(_JOB.aspect_ratio),
        sa.case((_JOB.enhance_prompt, "true"), (sa.not_(_JOB.enhance_prompt), "false")),
    ]
    for key in extras:
        value = _JOB.extra.op("->")(key)
        text = _JOB.extra.op("->>", return_type=sa.Text)(key)
        kind = sa.func.json_typeof(value)
        cells.append(sa.case((kind == "string", escaped(text)), (kind == "null", None), else_=text))
    for name in outputs:
        if name == "cost":
            cells.append(_cost(priced))
        elif name in _TIMES:
            cells.append(_time(_JOB[name]))
        elif name in _NUMBERS:
            cells.append(_JOB[name])
        else:
            cells.append(escaped(_JOB[name]))
    return cells


def _escaped(
    text: sa.ColumnElement[Any], formula_starts: tuple[str, ...], first: Any = None
) -> sa.ColumnElement[Any]:
    """`text` after a `'` when it starts (or `first`, its first character, is) a formula."""
    codes = [ord(start) for start in formula_starts]  # (ascii() makes no text, left() does)
    formula = sa.func.ascii(text if first is None else first).in_(codes)
    return sa.case((formula, sa.literal("'") + text), else_=text)


def _text(text: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    return sa.func.nullif(text, "")


def _images_joined(formula_starts: tuple[str, ...]) -> sa.ColumnElement[Any]:
    """The row's images joined with `|`, escaped: a stored list of plain links (`["a", "b"]`,
    as the loader writes it; `export._plain_links` says which) split as text, as the Python
    cells do; anything else through the JSON functions, a local image by its path. Each way
    makes its text once."""
    stored = sa.cast(_JOB.images, sa.Text)
    plain = sa.and_(
        stored.like('["%"]'),
        sa.func.strpos(stored, "\\") == 0,
        sa.func.strpos(stored, "{") == 0,
    )
    # Between the first two quotes once the separators are `|`: a plain list holds no other
    # quote (one inside a link would be escaped by a backslash). split_part and replace work
    # on bytes; substr and length count characters, which took twice as long.
    split = sa.func.split_part(sa.func.replace(stored, '", "', "|"), '"', 2)
    elements = sa.func.json_array_elements(_JOB.images)
    entries = elements.table_valued("value", with_ordinality="n").render_derived()
    entry = entries.c.value
    kind = sa.func.json_typeof(entry)
    as_text = sa.cast(entry, sa.Text)
    path = entry.op("->>", return_type=sa.Text)("path")
    string = entry.op("#>>", return_type=sa.Text)(sa.cast("{}", ARRAY(sa.Text)))  # unquoted
    shown = sa.case(
        (kind == "object", sa.func.coalesce(path, as_text)),
        (kind == "string", string),
        else_=as_text,
    )
    in_order = aggregate_order_by(sa.literal("|"), entries.c.n)
    joined = sa.select(sa.func.string_agg(shown, in_order)).select_from(entries).scalar_subquery()
    formula = "^([" + "".join(c for c in formula_starts if c != "-") + "-])"
    return sa.case(
        (plain, _escaped(split, formula_starts, sa.func.substr(stored, 3, 1))),
        else_=sa.func.regexp_replace(joined, formula, "'\\1"),
    )


def _cost(priced: Collection[str] | None) -> sa.ColumnElement[Any]:
    """The micro-units as a plain decimal (`0.25`, `0`), as `pricing.decimal_text`; none for a
    row of a model without a price that counted nothing, as `export.costless` says."""
    units = sa.func.trim_scale(sa.cast(_JOB.cost_micros, sa.Numeric) / 1_000_000)
    if priced is None:
        return units
    unpriced = sa.and_(_JOB.cost_micros == 0, _JOB.model.not_in(list(priced)))
    return sa.case((unpriced, None), else_=units)


def _time(column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    """`2026-12-04T13:25:50+00:00`, with `.ffffff` when there are microseconds."""
    text = sa.func.to_char(sa.func.timezone("UTC", column), 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"')
    return sa.func.replace(text, ".000000+", "+")
