"""What many test modules need: a job as callers send it, rows as files give them, a load,
and a wait with a deadline (never a sleep that hopes it was enough)."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any, Final, Protocol

import httpx
import pytest
import sqlalchemy as sa
import uvicorn
from PIL import Image
from sqlalchemy.engine import Engine

from tests.conftest import MOCK_KEY
from veobatch.accounts.spec import DEFAULT
from veobatch.catalog import DEFAULT_MODELS
from veobatch.embedded_runner import EmbeddedRunner
from veobatch.httpapi import create_app
from veobatch.images.sending import ImageSender
from veobatch.intake.loader import LoadResult, load_rows
from veobatch.intake.raw_job import RawJob
from veobatch.lifecycle.poll_rules import Pacing
from veobatch.lifecycle.progress import Progress
from veobatch.lifecycle.rate_limit import LocalRateLimiter, RateLimiter
from veobatch.lifecycle.sender import Account, Sender
from veobatch.lifecycle.spend_rules import Spending
from veobatch.lifecycle.unrecorded import Unrecorded
from veobatch.provider.client import ProviderClient
from veobatch.service import BatchService
from veobatch.settings import Secret, Settings
from veobatch.store.tables import Batch

URL = "https://img.example.com/a.jpg"  # an image URL the checks accept (never fetched)
TOKEN = "test-token-0123456789abcdef"  # a bearer token of the HTTP API's tests


def job(key: str | None = None, prompt: str = "a fox", **fields: object) -> dict[str, Any]:
    """A job as the Python, HTTP and Celery intakes take it; `key` is its external_id."""
    values: dict[str, Any] = {"prompt": prompt, "model": "veo3.1", "images": [URL], **fields}
    if key is not None:
        values["external_id"] = key
    return values


def row(line: int, ref: str | None = None, **fields: object) -> RawJob:
    """A row as a job file gives it, at `line` (prompt `prompt LINE` unless given)."""
    values: dict[str, Any] = {"prompt": f"prompt {line}", "model": "veo3.1", "images": [URL]}
    values.update(fields)
    if ref is not None:
        values["id"] = ref
    return RawJob.from_mapping(line, values)


def load(
    engine: Engine, rows: Sequence[RawJob], batch: str = "b", *, skip_invalid: bool = False
) -> LoadResult:
    """`rows` checked and stored as `batch`, as `veo-batch load` stores a file's."""
    return load_rows(
        engine, rows, batch=batch, source="test", models=DEFAULT_MODELS, skip_invalid=skip_invalid
    )


def load_prompts(engine: Engine, prompts: Sequence[str], batch: str = "b") -> int:
    """One row per prompt (ids r2, r3, ... from their lines) stored as `batch`; its id."""
    load(engine, [row(n, f"r{n}", prompt=p) for n, p in enumerate(prompts, 2)], batch)
    with engine.connect() as conn:
        return int(conn.execute(sa.select(Batch.id).where(Batch.name == batch)).scalar_one())


class Served:
    """The HTTP API served for real: uvicorn on a free local port, on a thread."""

    def __init__(
        self,
        engine: Engine,
        database_url: str,
        max_body: int = 64 * 1024,
        *,
        app: Any = None,
        **values: str,
    ) -> None:
        settings = Settings.from_values(
            {"database_url": database_url, "api_tokens": TOKEN, **values}
        )
        app = app or create_app(BatchService(engine, settings), max_body=max_body)
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, args=([self.socket],))

    def __enter__(self) -> Served:
        self.thread.start()
        wait_until(lambda: self.server.started, 10, "the server to start")
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.should_exit = True
        self.thread.join()


# Polls come fast in tests: the mock's tasks take a fraction of a second.
FAST: Final = Pacing(delay=0.05, shortest=0.05, longest=0.2, deadline=30.0)


class Relay(Protocol):
    """The mock provider, or a test's own relay: a server with a base URL."""

    @property
    def url(self) -> str: ...


def account_for(
    client: ProviderClient, limiter: RateLimiter | None = None, **fields: Any
) -> Account:
    """An account for tests, named `default`: `client`, no rate (or `limiter`), inline
    images, no prices; `fields` replace any of them."""
    limiter = limiter or LocalRateLimiter(0.0)
    fields.setdefault("name", DEFAULT)
    fields.setdefault("key_from", "VEO_API_KEY")
    fields.setdefault("poll_limiter", limiter)
    fields.setdefault("images", ImageSender("data-uri"))
    fields.setdefault("spending", Spending())
    return Account(client=client, limiter=limiter, **fields)


def sender_for(
    client: ProviderClient | Sequence[Account], limiter: RateLimiter | None = None, **fields: Any
) -> Sender:
    """A sender for tests: one account (`account_for(client, limiter)`, its fields among
    `fields`) or the `accounts` given, FAST pacing, a 30 s lease and a fresh folder for kept
    task ids; `fields` replace any of them."""
    if isinstance(client, ProviderClient):
        own = {name: fields.pop(name) for name in ACCOUNT_FIELDS & set(fields)}
        accounts: tuple[Account, ...] = (account_for(client, limiter, **own),)
    else:
        accounts = tuple(client)
    fields.setdefault("pacing", FAST)
    fields.setdefault("lease", timedelta(seconds=30))
    fields.setdefault("unrecorded", Unrecorded(Path(tempfile.mkdtemp(prefix="veo-batch-data-"))))
    return Sender(accounts=accounts, **fields)


ACCOUNT_FIELDS: Final = frozenset(field.name for field in dataclasses.fields(Account))
SENDER_FIELDS: Final = (
    frozenset(field.name for field in dataclasses.fields(Sender) if field.init) | ACCOUNT_FIELDS
)


def run_embedded(
    engine: Engine, mock: Relay, batch_id: int, key: str = MOCK_KEY, **options: Any
) -> Progress:
    """The embedded runner on batch `batch_id` against the mock (or a test's own relay),
    until the batch is done. `options` are the runner's, or fields of its sender."""
    fields = {name: options.pop(name) for name in SENDER_FIELDS & set(options)}
    fields.setdefault("images", ImageSender(Settings().image_mode))
    with ProviderClient(mock.url, Secret(key), read_timeout=1.0) as client:
        runner = EmbeddedRunner(
            engine,
            sender_for(client, **fields),
            batch_id,
            tick=0.02,
            poll_claim=timedelta(minutes=2),
            **options,
        )
        return runner.run()


def wait_until(condition: Callable[[], object], timeout: float = 60.0, what: str = "") -> None:
    """Poll `condition` until it is true; fail the test once `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what or condition}")
        time.sleep(0.02)


def photo(
    path: Path,
    size: tuple[int, int] = (1280, 720),
    format: str = "JPEG",
    seed: int = 0,
    **save: Any,
) -> Path:
    """A real image file made with Pillow (its pixels differ by `seed`, so its hash does)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    picture = Image.new("RGB", size, ((seed * 37) % 256, (seed * 91) % 256, 128))
    picture.putpixel((0, 0), (seed % 256, seed // 256 % 256, 0))
    picture.save(path, format=format, **save)
    return path


def noise(path: Path, size: tuple[int, int], format: str = "PNG") -> Path:
    """An image that does not compress: a large file for its pixel count."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.effect_noise(size, 90).convert("RGB").save(path, format=format)
    return path


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


ROOT: Final = Path(__file__).parent.parent


def free_port() -> int:
    """A local port that was free a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def veo_batch_server(
    command: Sequence[str], probe: str, env: Mapping[str, str] | None = None
) -> Iterator[str]:
    """`veo-batch COMMAND --port P` in a process of its own, once GET `probe` answers 200;
    its base URL. Stopped (SIGTERM, then SIGKILL) at the end."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "veobatch", *command, "--port", str(port)],
        env=dict(env) if env is not None else None,
        cwd=ROOT,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            return httpx.get(f"{base}{probe}", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(answers, 60, f"veo-batch {command[0]} to answer")
        yield base
    finally:
        stop_group(process, 15)


def stop_group(process: subprocess.Popen[bytes], grace: float) -> None:
    """A process started in a session of its own, stopped with its children: SIGTERM, then
    SIGKILL after `grace` seconds."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
