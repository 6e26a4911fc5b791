"""Fixtures: real SQLite files and a real PostgreSQL database, the same tests over both.

PostgreSQL comes from `VEO_TEST_POSTGRES_URL` (default: the local service). Without it a test
that needs it is skipped with the reason, except under `CI=true`, where it fails instead.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import HTTPServer
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa
from click.testing import CliRunner, Result
from sqlalchemy.engine import Engine

from veobatch.cli import cli
from veobatch.provider.mock import MockConfig, MockProvider
from veobatch.settings import normalize_database_url
from veobatch.store import database

POSTGRES_ADMIN_URL = os.environ.get(
    "VEO_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def service_missing(reason: str) -> None:
    """Skip on a laptop without the service; fail in CI, where every service must be up."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: services are required)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test session, dropped at the end."""
    admin = sa.create_engine(
        normalize_database_url(POSTGRES_ADMIN_URL), isolation_level="AUTOCOMMIT"
    )
    name = f"veobatch_test_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except sa.exc.OperationalError as exc:
        admin.dispose()
        service_missing(
            f"PostgreSQL is not reachable at {database.safe_url(POSTGRES_ADMIN_URL)}: {exc.orig}"
        )
    url = sa.make_url(normalize_database_url(POSTGRES_ADMIN_URL)).set(database=name)
    url_text = url.render_as_string(hide_password=False)
    engine = database.open_database(url_text, migrate=True)
    engine.dispose()
    yield url_text
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


def _empty(engine: Engine) -> None:
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("TRUNCATE attempts, jobs, batches RESTART IDENTITY CASCADE")
        else:
            for table in ("attempts", "jobs", "batches"):
                conn.exec_driver_sql(f"DELETE FROM {table}")


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty, migrated database: a SQLite file, then PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'veo-batch.db'}"
        return
    url: str = request.getfixturevalue("postgres_url")
    engine = database.create_engine(url)
    _empty(engine)
    engine.dispose()
    yield url


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = database.open_database(database_url, migrate=True)
    yield engine
    engine.dispose()


class Cli:
    """Runs `veo-batch` in-process against one database, as a user would from a shell."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url

    def __call__(self, *args: str, input: str | bytes | None = None) -> Result:
        runner = CliRunner()
        return runner.invoke(
            cli,
            list(args),
            input=input,
            env={"VEO_DATABASE_URL": self.database_url},
            catch_exceptions=False,
        )


@pytest.fixture
def run(database_url: str) -> Cli:
    return Cli(database_url)


@pytest.fixture
def sqlite_run(tmp_path: Path) -> Cli:
    """The CLI on a SQLite file only: for tests about input files, not about databases."""
    return Cli(f"sqlite:///{tmp_path / 'veo-batch.db'}")


REDIS_URL = os.environ.get("VEO_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    """A real Redis (database 15 by default), emptied before each test."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.flushdb()
    except redis.exceptions.ConnectionError as exc:
        service_missing(f"Redis is not reachable at {REDIS_URL}: {exc}")
    yield client
    client.close()


MOCK_KEY = "mock-key"


@pytest.fixture
def mock() -> Iterator[MockProvider]:
    """The mock provider on a local port, accepting MOCK_KEY."""
    with MockProvider(MockConfig(api_key=MOCK_KEY)) as provider:
        yield provider


@contextmanager
def serving(server: HTTPServer) -> Iterator[HTTPServer]:
    """A test's own HTTP server (a video host, a webhook receiver) on a thread, then closed."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
