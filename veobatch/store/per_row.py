"""One statement for many rows whose values differ row by row (a wave's outcomes, say).

The values of each row are named fields of SQL types (`Fields`). A statement is built from
`columns(fields, together)`, which stands for "this row's value of the field":

- `together` (PostgreSQL): the columns of `json_to_recordset(:rows)`, the group's rows sent as
  one JSON text, so the whole group is one statement with a fixed text (planned and prepared
  once) and one parameter that the driver passes as it is (it would dump an array parameter
  element by element, in Python);
- not together (SQLite): bound parameters, and the rows go through the driver's executemany,
  which SQLite runs in C in-process: nothing to save there.

A JSON text tells PostgreSQL's planner nothing of how few rows it holds (it guesses 100), so
an UPDATE that joins it to a table by the table's key would scan the table; `matching`
adds the key's values as one array parameter, which the planner reaches by the index.

`execute(conn, statement, rows, key)` picks the form for the connection's database and
passes the rows the way that form takes them (times as ISO 8601, which PostgreSQL reads back
with their offsets).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime
from typing import Any, TypeAlias

import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.sql.expression import ColumnElement, Executable
from sqlalchemy.types import TypeEngine

Fields: TypeAlias = Mapping[str, TypeEngine[Any]]


def together(conn: Connection) -> bool:
    """Whether the connection's database takes a group's rows in one statement (PostgreSQL)."""
    return conn.dialect.name == "postgresql"


def columns(fields: Fields, together: bool) -> dict[str, ColumnElement[Any]]:
    """Each field as a column of the statement: the row's value of it."""
    if not together:
        return {name: sa.bindparam(name, type_=kind) for name, kind in fields.items()}
    rows = (
        sa.func.json_to_recordset(sa.cast(sa.bindparam("rows", type_=sa.Text()), sa.JSON()))
        .table_valued(*(sa.column(name, kind) for name, kind in fields.items()))
        .render_derived(name="given", with_types=True)
    )
    return {name: rows.c[name] for name in fields}


def matching(
    column: ColumnElement[Any], value: ColumnElement[Any], key: str, together: bool
) -> ColumnElement[bool]:
    """`column` equal to the row's `value` of field `key`; on PostgreSQL also one of the
    group's values of it (see above: `execute` passes them when told the `key`)."""
    if not together:
        return column == value
    from sqlalchemy.dialects import postgresql  # noqa: PLC0415 - (only PostgreSQL groups rows)

    group = sa.bindparam(_all(key), type_=postgresql.ARRAY(column.type))
    return sa.and_(column == value, column == sa.any_(group))


def execute(
    conn: Connection,
    statement: Callable[[bool], Executable],
    rows: Sequence[Mapping[str, Any]],
    key: str | None = None,
) -> None:
    """Run `statement(together)` for every row of `rows` (each a value per field): one
    statement for all of them on PostgreSQL, the driver's executemany elsewhere. `key`:
    the field the statement finds its rows by (`matching`)."""
    if not rows:
        return
    if not together(conn):
        conn.execute(statement(False), list(rows))
        return
    params: dict[str, Any] = {"rows": json.dumps(rows, default=_iso)}
    if key is not None:
        params[_all(key)] = [row[key] for row in rows]
    conn.execute(statement(True), params)


def _all(key: str) -> str:
    return f"{key}_all"


def _iso(value: Any) -> str:
    """A time or a date as JSON carries it (ISO 8601); nothing else that is not JSON goes."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not a value of a row")
