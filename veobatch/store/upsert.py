"""The INSERT of a connection's database that takes ON CONFLICT (`on_conflict_do_nothing`,
`on_conflict_do_update`): PostgreSQL's or SQLite's, its dialect imported when first used (a
command on SQLite never loads PostgreSQL's, which costs a command's start a tenth of a second)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection


def insert_for(conn: Connection) -> Any:
    """`insert` of `conn`'s database, as `sqlalchemy.dialects.<name>.insert`."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert  # noqa: PLC0415 - see above

        return insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert  # noqa: PLC0415 - see above

    return sqlite_insert
