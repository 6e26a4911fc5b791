"""What many test modules need: a job as callers send it, rows as files give them, a load,
and a wait with a deadline (never a sleep that hopes it was enough)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from veobatch.intake.catalog import DEFAULT_MODELS
from veobatch.intake.job_spec import RawJob
from veobatch.intake.loader import LoadResult, load_rows
from veobatch.store.tables import Batch

URL = "https://img.example.com/a.jpg"  # an image URL the checks accept (never fetched)


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


def wait_until(condition: Callable[[], object], timeout: float = 60.0, what: str = "") -> None:
    """Poll `condition` until it is true; fail the test once `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what or condition}")
        time.sleep(0.02)
