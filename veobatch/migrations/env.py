"""Alembic environment: the URL comes from the settings (`VEO_DATABASE_URL`) unless the caller
passes a connection or a URL, as `veobatch.store.database.upgrade` and the tests do."""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import Connection

from veobatch.settings import Settings
from veobatch.store.database import create_engine
from veobatch.store.tables import Base

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _url() -> str:
    return config.get_main_option("sqlalchemy.url") or Settings.from_env(os.environ).database_url


if context.is_offline_mode():
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
elif (conn := config.attributes.get("connection")) is not None:
    _run(conn)
else:
    with create_engine(_url()).connect() as connection:
        _run(connection)
        connection.commit()
