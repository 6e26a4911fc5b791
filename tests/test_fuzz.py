"""Hostile input, generated: any bytes as a job file, any JSON as jobs (from Python and over
HTTP). The answer is always a row problem, a file error or a 4xx, never a crash or a 500."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import TOKEN, URL, Served
from veobatch import Client
from veobatch.catalog import DEFAULT_MODELS
from veobatch.errors import JobFileError, VeoBatchError
from veobatch.intake.job_checker import JobChecker
from veobatch.intake.readers import job_file_from_bytes
from veobatch.store import database


def json_values(finite: bool) -> st.SearchStrategy[Any]:
    numbers = st.floats(allow_nan=not finite, allow_infinity=not finite)
    return st.recursive(
        st.none() | st.booleans() | st.integers() | numbers | st.text(max_size=30),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
        max_leaves=20,
    )


JSON = json_values(finite=True)  # what JSON can carry (over HTTP)
PYTHON = json_values(finite=False)  # what a Python caller can pass: NaN and infinities too
FIELDS = st.sampled_from(["id", "prompt", "model", "images", "aspect_ratio", "extra", "modle"])


def jobs_of(values: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(
        FIELDS | st.text(max_size=8), values | st.just([URL]) | st.just("veo3.1")
    )


JOB = jobs_of(JSON)
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))


@SETTINGS
@given(
    data=st.binary(max_size=400) | st.text(max_size=400).map(str.encode),
    format=st.sampled_from(["csv", "yaml", "jsonl"]),
)
def test_any_bytes_are_rows_or_a_file_error(data: bytes, format: str) -> None:
    checker = JobChecker(DEFAULT_MODELS)
    try:
        for raw in job_file_from_bytes(f"fuzz.{format}", data).rows():
            checker.check(raw)
    except JobFileError:
        pass  # the file as a whole is refused, with its name (and line)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Client, str]]:
    url = f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'fuzz.db'}"
    with Client(url) as veo:
        yield veo, url


@SETTINGS
@given(jobs=st.lists(jobs_of(PYTHON), max_size=4))
def test_any_jobs_from_python_are_stored_or_refused(
    store: tuple[Client, str], jobs: list[dict[str, Any]]
) -> None:
    veo, _ = store
    with contextlib.suppress(VeoBatchError):  # InvalidJobs names each job and field
        veo.add("fuzz", jobs)


@pytest.fixture(scope="module")
def served(store: tuple[Client, str]) -> Iterator[str]:
    veo, url = store
    with Served(veo.engine, url, max_body=256 * 1024) as running:
        yield running.url


@SETTINGS
@given(name=st.text(min_size=1, max_size=12), jobs=JSON | st.lists(JOB, max_size=3))
def test_any_json_over_http_is_answered_without_a_500(served: str, name: str, jobs: Any) -> None:
    answer = httpx.post(
        f"{served}/batches",
        json={"name": name, "jobs": jobs},
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=10,
    )
    assert answer.status_code in {200, 201, 409, 413, 422}, answer.text
    assert "Traceback" not in answer.text


def test_the_fuzz_store_is_a_real_database(store: tuple[Client, str]) -> None:
    _, url = store
    assert database.current_revision(database.open_database(url)) == database.head_revision()
    assert Path(url.removeprefix("sqlite:///")).exists()
