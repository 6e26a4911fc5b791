"""Engines, and the schema brought to the newest migration.

The embedded default (SQLite) migrates itself on first use; a PostgreSQL database is migrated
with `veo-batch db upgrade` (or the compose file's one-shot service), and a command run against
an unmigrated one says so instead of failing on a missing table.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from veobatch.errors import DatabaseError


def _migrations_dir() -> Path:
    """The `migrations` package's folder, found without importing it: the migrations import
    the store's tables, never the other way round."""
    spec = importlib.util.find_spec("migrations")
    if spec is None or spec.origin is None:
        raise DatabaseError("the migrations are not installed beside veobatch; reinstall it")
    return Path(spec.origin).parent


def safe_url(url: str | sa.URL) -> str:
    """The URL with its password hidden, fit for messages and logs."""
    return sa.make_url(url).render_as_string(hide_password=True)


def is_sqlite(url: str | sa.URL) -> bool:
    return sa.make_url(url).get_backend_name() == "sqlite"


def sqlite_file(url: str | sa.URL) -> Path | None:
    """The file of a SQLite URL (None for PostgreSQL and in-memory SQLite)."""
    if not is_sqlite(url):
        return None
    name = sa.make_url(url).database
    return Path(name) if name and name != ":memory:" else None


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def create_engine(url: str) -> Engine:
    if is_sqlite(url):
        database = sa.make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url)
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return sa.create_engine(url, pool_pre_ping=True)


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_migrations_dir()))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    config = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, revision)


def open_database(url: str, *, migrate: bool | None = None) -> Engine:
    """An engine whose schema is at the newest revision.

    `migrate=None` migrates SQLite files by itself and asks PostgreSQL users to run
    `veo-batch db upgrade`, so a production schema only changes when someone says so.
    """
    engine = create_engine(url)
    try:
        current = current_revision(engine)
        if current == head_revision():
            return engine
        if migrate if migrate is not None else is_sqlite(url):
            upgrade(engine)
            return engine
    except OperationalError as exc:
        raise DatabaseError(
            f"cannot open the database {safe_url(url)}: {exc.orig}; check VEO_DATABASE_URL"
        ) from None
    except SQLAlchemyError as exc:
        raise DatabaseError(f"database {safe_url(url)}: {exc}") from None
    state = f"at revision {current}" if current else "empty"
    raise DatabaseError(
        f"the database {safe_url(url)} is {state}, not at the newest schema ({head_revision()}); "
        "run `veo-batch db upgrade`"
    )
