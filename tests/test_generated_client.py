"""The HTTP API as a user of a generated client meets it: openapi-python-client makes a client
from the served schema, and a batch is driven through it (create, upload, read, page, rerun,
export) against the real server. Operation names, tags, enums, the upload's file and the
errors each route declares all show here."""

from __future__ import annotations

import importlib
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import sqlalchemy as sa

from tests.helpers import TOKEN, URL, Served
from veobatch.httpapi import create_app
from veobatch.service import BatchService
from veobatch.settings import Settings
from veobatch.store import database

PACKAGE = "veo_batch_generated"


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ModuleType]]:
    """The generated client's modules, by their dotted names below the package."""
    work = tmp_path_factory.mktemp("generated")
    app = create_app(
        BatchService(sa.create_engine("sqlite://"), Settings.from_values({"api_tokens": TOKEN}))
    )
    (work / "schema.json").write_text(json.dumps(app.openapi()), encoding="utf-8")
    bin_dir = str(Path(sys.executable).parent)  # the generator formats with this ruff
    made = subprocess.run(
        [
            sys.executable,
            "-m",
            "openapi_python_client",
            "generate",
            "--path",
            "schema.json",
            "--output-path",
            PACKAGE,
            "--meta",
            "none",
        ],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"},
    )
    assert made.returncode == 0, made.stdout + made.stderr
    assert "Warning" not in made.stdout, made.stdout  # every operation and schema made it
    sys.path.insert(0, str(work))
    names = [
        "client",
        "types",
        "models",
        "api.intake.add_jobs",
        "api.intake.upload_job_file",
        "api.batches.list_batches",
        "api.batches.get_batch",
        "api.batches.export_batch",
        "api.batches.rerun_batch",
        "api.batches.pause_batch",
        "api.batches.cancel_batch",
        "api.jobs.list_jobs",
        "api.jobs.get_job",
    ]
    try:
        yield {name: importlib.import_module(f"{PACKAGE}.{name}") for name in names}
    finally:
        sys.path.remove(str(work))
        for module in [m for m in sys.modules if m.startswith(PACKAGE)]:
            del sys.modules[module]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    url = f"sqlite:///{tmp_path / 'api.db'}"
    engine = database.open_database(url)
    with Served(engine, url, max_body=1024 * 1024) as running:
        yield running
    engine.dispose()


def test_a_batch_driven_through_a_generated_client(
    generated: dict[str, ModuleType], served: Served
) -> None:
    api, models = generated, generated["models"]
    veo = api["client"].AuthenticatedClient(base_url=served.url, token=TOKEN)
    job = models.JobIn(prompt="a fox", model="veo3.1", images=[URL], external_id="sku-1")
    created = api["api.intake.add_jobs"].sync_detailed(
        client=veo, body=models.BatchIn(name="shop", jobs=[job])
    )
    assert created.status_code == 201
    assert (created.parsed.batch, created.parsed.added, created.parsed.refs) == (
        "shop",
        1,
        ["sku-1"],
    )

    csv = f"external_id,prompt,model,images\nsku-2,b,veo3.1,{URL}\nsku-3,c,veo3.1,{URL}\n"
    upload = models.UploadJobFile(
        file=api["types"].File(payload=io.BytesIO(csv.encode()), file_name="shop.csv")
    )
    uploaded = api["api.intake.upload_job_file"].sync_detailed(name="shop", client=veo, body=upload)
    assert uploaded.status_code == 201, uploaded.content
    assert uploaded.parsed.added == 2
    assert uploaded.parsed.refs is None  # a file's rows are listed by list_jobs, not here

    batch = api["api.batches.get_batch"].sync(name="shop", client=veo)
    assert batch.state == models.BatchState.ACTIVE
    assert batch.counts.to_dict() == {"pending": 3}
    assert [b.name for b in api["api.batches.list_batches"].sync(client=veo)] == ["shop"]

    page = api["api.jobs.list_jobs"].sync(name="shop", client=veo, limit=2, offset=1)
    assert (page.total, [j.id for j in page.jobs]) == (3, ["sku-2", "sku-3"])
    assert page.jobs[0].status == models.JobStatus.PENDING
    story = api["api.jobs.get_job"].sync(name="shop", ref="sku-3", client=veo)
    assert (story.line, story.history) == (3, [])
    missing = api["api.jobs.get_job"].sync_detailed(name="shop", ref="nope", client=veo)
    assert missing.status_code == 404
    assert isinstance(missing.parsed, models.Problems)

    rerun = models.RerunIn(statuses=[models.JobStatus.PENDING], dry_run=True)
    counted = api["api.batches.rerun_batch"].sync(name="shop", client=veo, body=rerun)
    assert (counted.matched, counted.sent_again) == (3, 0)

    exported = api["api.batches.export_batch"].sync_detailed(
        name="shop", client=veo, format_=models.ExportFormat.JSONL
    )
    assert exported.status_code == 200
    lines: list[dict[str, Any]] = [json.loads(line) for line in exported.content.splitlines()]
    assert [line["id"] for line in lines] == ["sku-1", "sku-2", "sku-3"]

    paused = api["api.batches.pause_batch"].sync(name="shop", client=veo)
    assert paused.state == models.BatchState.PAUSED
    again = api["api.batches.pause_batch"].sync_detailed(name="shop", client=veo)
    assert again.status_code == 409
    assert "paused" in again.parsed.detail
    cancelled = api["api.batches.cancel_batch"].sync(name="shop", client=veo)
    assert (cancelled.state, cancelled.rows) == (models.BatchState.CANCELLED, 3)
