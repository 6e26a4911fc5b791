"""Fixtures: real SQLite files and a real PostgreSQL database, the same tests over both.

PostgreSQL comes from `VEO_TEST_POSTGRES_URL` (default: the local service). Without it a test
that needs it is skipped with the reason, except under `CI=true`, where it fails instead.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import HTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import boto3
import httpx
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
            conn.exec_driver_sql(
                "TRUNCATE attempts, jobs, batches, spend_days, accounts RESTART IDENTITY CASCADE"
            )
        else:
            for table in ("attempts", "jobs", "batches", "spend_days", "accounts"):
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


def _redis_url() -> str:
    """VEO_TEST_REDIS_URL (default: database 15); with pytest-xdist, each worker its own
    database below it (gw0: 15, gw1: 14, ...), as every test empties its database first."""
    url = urlsplit(os.environ.get("VEO_TEST_REDIS_URL", "redis://127.0.0.1:6379/15"))
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")  # unset: not under xdist
    database = int(url.path.lstrip("/") or 0) - int(worker.removeprefix("gw"))
    if database < 0:
        raise pytest.UsageError(f"too many xdist workers for Redis databases below {url.path}")
    return urlunsplit(url._replace(path=f"/{database}"))


REDIS_URL = _redis_url()


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


# An S3-protocol server: VEO_TEST_S3_ENDPOINT when one runs already (`.ci/run` starts moto's),
# else moto's standalone server, started here. boto3 talks to it exactly as to AWS.
S3_ENDPOINT = os.environ.get("VEO_TEST_S3_ENDPOINT")
S3_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "test-access-key",
    "AWS_SECRET_ACCESS_KEY": "test-secret-key",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def _answers(url: str) -> bool:
    try:
        httpx.get(url, timeout=1.0)
    except httpx.HTTPError:
        return False
    return True


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """The endpoint URL of a real S3-protocol server for this session."""
    for name, value in S3_CREDENTIALS.items():
        os.environ.setdefault(name, value)
    if S3_ENDPOINT:
        if not _answers(S3_ENDPOINT):
            service_missing(f"no S3 server answers at VEO_TEST_S3_ENDPOINT={S3_ENDPOINT}")
        yield S3_ENDPOINT
        return
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    try:
        server = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    except OSError as exc:
        service_missing(f"moto's S3 server cannot start: {exc}")
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while not _answers(url):
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            service_missing("moto's S3 server did not start (pip install 'moto[s3]' flask)")
        time.sleep(0.1)
    yield url
    server.terminate()
    server.wait(10)


@pytest.fixture
def bucket_url(s3_endpoint: str) -> str:
    """A new, empty bucket on the S3 server, as VEO_S3_URL names it (with a prefix)."""
    name = f"veo-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=name)
    return f"s3://{name}/photos"


@pytest.fixture
def stack(postgres_url: str, redis_client: redis.Redis) -> Iterator[Any]:
    """A distributed deployment on an empty database (`tests.stack.Stack`)."""
    from tests.stack import KEY, Stack  # noqa: PLC0415 - it imports this module

    engine = database.create_engine(postgres_url)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "TRUNCATE attempts, jobs, batches, spend_days, accounts RESTART IDENTITY CASCADE"
        )
    with MockProvider(MockConfig(api_key=KEY)) as mock:
        running = Stack(engine, postgres_url, mock)
        try:
            yield running
        finally:
            running.close()
            engine.dispose()
