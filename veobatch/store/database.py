"""Engines, and the schema brought to the newest migration.

The embedded default (SQLite) migrates itself on first use; a PostgreSQL database is migrated
with `veo-batch db upgrade` (or the compose file's one-shot service), and a command run against
an unmigrated one says so instead of failing on a missing table.

Alembic and psycopg are imported only when used (a migration; a PostgreSQL URL): a command on
a database at the newest revision reads it with one query, and starts faster for it.
"""

from __future__ import annotations

import functools
import os
import re
import sqlite3
import sys
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

try:
    import fcntl
except ImportError:  # not on Windows: there two processes must not make one file at once
    fcntl = None  # type: ignore[assignment]
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from veobatch.errors import DatabaseError, VeoBatchError, WriteError

PG_DISK_FULL = "53100"  # SQLSTATE disk_full
if TYPE_CHECKING:
    from alembic.config import Config


def _psycopg() -> Any:
    """psycopg if it was imported (by a PostgreSQL engine): only then can it raise."""
    return sys.modules.get("psycopg")


def operational_errors() -> tuple[type[BaseException], ...]:
    """What a database says when it cannot go on: SQLAlchemy's wrapper, or a driver's own
    error (raised where a driver is used directly: COPY, SQLite's executemany)."""
    psycopg = _psycopg()
    driver = (psycopg.OperationalError,) if psycopg is not None else ()
    return (OperationalError, sqlite3.OperationalError, *driver)


def database_errors() -> tuple[type[BaseException], ...]:
    """Any error the database or its driver raised: a statement it refused (a schema changed
    by hand, a trigger, a constraint) included, which no operation expects."""
    psycopg = _psycopg()
    driver = (psycopg.Error,) if psycopg is not None else ()
    return (SQLAlchemyError, sqlite3.Error, *driver)


def _migrations_dir() -> Path:
    """The folder of `veobatch.migrations`, found without importing it: the migrations import
    the store's tables, never the other way round."""
    return Path(__file__).resolve().parents[1] / "migrations"


POOL_SIZE = 5  # connections kept open
POOL_OVERFLOW = 80  # more, while threads need them: `run -c 64` and its helpers


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


def lock_file(path: Path) -> Path:
    """The file beside a SQLite database that processes lock while one of them opens or
    migrates it (`veo-batch.db.lock`)."""
    return path.with_name(path.name + ".lock")


def failure(exc: BaseException, url: str | sa.URL) -> VeoBatchError:
    """What an operational error of the database at `url` means to the person at the
    terminal: no room left (SQLite's SQLITE_FULL, PostgreSQL's disk_full) is a full disk,
    with what to free (exit 11); anything else, a database that cannot be used (exit 4)."""
    cause = _cause(exc)
    words = said(exc)
    if _no_room(cause):
        path = sqlite_file(url)
        where = (
            f"the disk that holds it ({path.resolve().parent})"
            if path is not None
            else "the disk that holds it (the database server's data directory)"
        )
        return WriteError(
            f"the database {path or safe_url(url)} is full ({words}): free space on {where}, "
            "or point VEO_DATABASE_URL at a database with room, then run the same command "
            "again"
        )
    return DatabaseError(f"database error: {words}")


def _cause(exc: BaseException) -> BaseException:
    """The driver's own error behind SQLAlchemy's wrapper."""
    if isinstance(exc, sa.exc.DBAPIError) and exc.orig is not None:
        return exc.orig
    return exc


def said(exc: BaseException) -> str:
    """The first line of what the database said (PostgreSQL adds context lines), at most
    300 characters."""
    text = str(_cause(exc)).strip()
    return text.splitlines()[0][:300] if text else type(_cause(exc)).__name__


def unreachable(exc: BaseException) -> bool:
    """Whether a database error says it could not be reached or used for now (a lost
    connection, a restart, a busy file), rather than that it refused what it was given."""
    return isinstance(exc, (sa.exc.OperationalError, sa.exc.InterfaceError))


def _no_room(cause: BaseException) -> bool:
    if isinstance(cause, sqlite3.Error):
        code = getattr(cause, "sqlite_errorcode", None)
        return code == sqlite3.SQLITE_FULL or "database or disk is full" in str(cause)
    psycopg = _psycopg()
    return (
        psycopg is not None
        and isinstance(cause, psycopg.Error)
        and (cause.sqlstate == PG_DISK_FULL)
    )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # First: the switch to WAL below needs the file to itself for a moment, and another
    # process opening it at the same time must wait for that, not fail.
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def create_engine(url: str) -> Engine:
    """An engine whose pool holds a connection for each thread the busiest process can run
    (`veo-batch run -c 64`, its dispatcher and downloads); idle ones are not kept open."""
    pool = {"pool_size": POOL_SIZE, "max_overflow": POOL_OVERFLOW}
    if is_sqlite(url):
        database = sa.make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
            engine = sa.create_engine(url, **pool)
            _closed_before_fork(engine)
        else:
            engine = sa.create_engine(url)
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return sa.create_engine(url, pool_pre_ping=True, **pool)


def _closed_before_fork(engine: Engine) -> None:
    """Close the engine's idle SQLite connections before this process forks (an embedded
    run's lanes, a multiprocessing pool of the caller's). A child must never use or close a
    connection it inherited: SQLite's own locks belong to the parent, and closing the copy's
    file would drop the locks of the child's own connections to the same file. With none
    inherited, the child opens its own."""
    ref = weakref.ref(engine)

    def before_fork() -> None:
        alive = ref()
        if alive is not None:
            alive.pool.dispose()

    os.register_at_fork(before=before_fork)


@contextmanager
def _migrating(url: str) -> Iterator[None]:
    """Hold an exclusive lock on the SQLite file while it is opened and its schema changes,
    so that two processes opening a new file at once neither both switch it to WAL (SQLite
    answers the second "locked" at once, without waiting) nor both migrate it. PostgreSQL
    migrations run from one `veo-batch db upgrade`."""
    path = sqlite_file(url)
    if path is None or fcntl is None:
        yield
        return
    # The lock is on a file of its own, never on the database: closing any handle on a file
    # drops every POSIX lock this process holds on it, SQLite's included. A process whose
    # connections had lost their locks looked unused to the others, and the next one to close
    # its last connection checkpointed and deleted the WAL under it (a "malformed" file).
    with open(lock_file(path), "ab") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def alembic_config(url: str) -> Config:
    from alembic.config import Config  # noqa: PLC0415 - see the module's docstring

    config = Config()
    config.set_main_option("script_location", str(_migrations_dir()))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory  # noqa: PLC0415 - see the module's docstring

    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


_REVISION = re.compile(r'^(down_)?revision: str(?: \| None)? = (None|"(\w+)")', re.MULTILINE)


@functools.cache  # (the files do not change while a process runs)
def newest_revision() -> str | None:
    """The newest migration's revision, read from the migrations' files without Alembic: the
    one no other names as its `down_revision` (a test holds it to `head_revision`)."""
    revisions: set[str] = set()
    downs: set[str] = set()
    for path in (_migrations_dir() / "versions").glob("*.py"):
        for down, _, name in _REVISION.findall(path.read_text(encoding="utf-8")):
            if name:
                (downs if down else revisions).add(name)
    heads = revisions - downs
    return heads.pop() if len(heads) == 1 else None


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (Alembic's `alembic_version`); None when empty."""
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table("alembic_version"):
            return None
        return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()


def upgrade(engine: Engine, revision: str = "head") -> None:
    from alembic import command  # noqa: PLC0415 - see the module's docstring

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
        # SQLite: the first connection (which switches a new file to WAL) and any migration,
        # one process at a time; a second process waits, then finds it done.
        with _migrating(url):
            current = current_revision(engine)
            newest = newest_revision() or head_revision()  # (files not readable: Alembic's)
            if current is not None and current == newest:
                return engine
            if migrate if migrate is not None else is_sqlite(url):
                upgrade(engine)
                return engine
    except operational_errors() as exc:
        problem = failure(exc, url)
        if isinstance(problem, WriteError):
            raise problem from None
        raise DatabaseError(
            f"cannot open the database {safe_url(url)}: {said(exc)}; check VEO_DATABASE_URL"
        ) from None
    except SQLAlchemyError as exc:
        raise DatabaseError(f"database {safe_url(url)}: {exc}") from None
    state = f"at revision {current}" if current else "empty"
    raise DatabaseError(
        f"the database {safe_url(url)} is {state}, not at the newest schema ({head_revision()}); "
        "run `veo-batch db upgrade`"
    )
