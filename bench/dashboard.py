"""Benchmark: how long the dashboard takes to render its pages for a big batch.

A batch of N rows (default 100,000) is loaded into a fresh SQLite file (and PostgreSQL with
`--databases sqlite,postgresql`), then made to look mid-run with two UPDATEs: 60% succeeded
(with submission and finish times spread over an hour, a video URL), 5% failed with a handful
of reasons, the rest pending (on PostgreSQL, then VACUUM ANALYZE, as autovacuum would soon
do). Each page is then asked for K times (default 20) through the
real app (FastAPI's in-process client, logged in): the batches page, the batch page (first
page of rows, and the last), its live part (what the browser polls every 2 s), the gallery
(first page and the last) and a filtered page (text in the prompt). Printed: the median and
the slowest time per page, against the same pages of a small batch (default 1,000 rows) as
the baseline, and their ratio; results in `bench/out/dashboard-<time>.json`.

    python bench/dashboard.py
    python bench/dashboard.py --rows 10000 --repeat 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sqlalchemy as sa
from fastapi.testclient import TestClient

from bench.harness.results import OUT_DIR
from bench.harness.services import drop_database, recreate_database
from veobatch.catalog import DEFAULT_MODELS
from veobatch.httpapi import create_app
from veobatch.intake.loader import load_rows
from veobatch.intake.raw_job import RawJob
from veobatch.service import BatchService
from veobatch.settings import Settings
from veobatch.store import database
from veobatch.store.tables import Job

TOKEN = "bench-token-0123456789abcdef"
PG_DATABASE = "veobatch_bench_dashboard"


def fill(url: str, rows: int) -> None:
    engine = database.open_database(url, migrate=True)
    jobs = (
        RawJob.from_mapping(
            n,
            {
                "id": f"sku-{n:06}",
                "prompt": f"product {n} turns slowly on a white table, soft light",
                "model": "veo3.1",
                "images": [f"https://img.example.com/{n % 500}.jpg"],
            },
        )
        for n in range(rows)
    )
    load_rows(engine, jobs, batch="big", source="bench", models=DEFAULT_MODELS)
    now = time.time()
    with engine.begin() as conn:
        succeeded = int(rows * 0.6)
        failed = int(rows * 0.05)
        dialect = conn.dialect.name
        at = (
            "datetime(:now - 3600 + (id % 3600), 'unixepoch')"
            if dialect == "sqlite"
            else "to_timestamp(:now - 3600 + (id % 3600))"
        )
        done = (
            "datetime(:now - 3600 + (id % 3600) + 60 + (id % 90), 'unixepoch')"
            if dialect == "sqlite"
            else "to_timestamp(:now - 3600 + (id % 3600) + 60 + (id % 90))"
        )
        conn.execute(
            sa.text(
                f"UPDATE jobs SET status = 'succeeded', task_id = 'veo3:' || id, "
                f"video_url = 'https://cdn.example.com/' || id || '.mp4', "
                f"submitted_at = {at}, finished_at = {done} WHERE id <= :n"
            ),
            {"now": now, "n": succeeded},
        )
        conn.execute(
            sa.text(
                f"UPDATE jobs SET status = 'failed', error_kind = 'remote', "
                f"error = 'reason ' || (id % 7), submitted_at = {at}, finished_at = {done} "
                "WHERE id > :a AND id <= :b"
            ),
            {"now": now, "a": succeeded, "b": succeeded + failed},
        )
        assert conn.execute(sa.select(sa.func.count()).select_from(Job)).scalar_one() == rows
    if engine.dialect.name == "postgresql":
        # What autovacuum does within a minute of so many changed rows: without statistics
        # the planner takes the 100,000 rows for 100 and sorts them on disk.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("VACUUM ANALYZE jobs"))
    engine.dispose()


def measure(url: str, rows: int, repeat: int) -> dict[str, dict[str, float]]:
    settings = Settings.from_values({"database_url": url, "api_tokens": TOKEN})
    engine = database.open_database(url)
    client = TestClient(create_app(BatchService(engine, settings)), base_url="http://127.0.0.1")
    assert client.post("/login", data={"token": TOKEN}, follow_redirects=False).status_code == 303
    last_rows, last_videos = -(-rows // 50), -(-int(rows * 0.6) // 24)
    pages = {
        "batches": "/",
        "batch page 1": "/ui/batches/big",
        "batch last page": f"/ui/batches/big?page={last_rows}",
        "batch live part (every 2 s)": "/ui/batches/big/live",
        "batch charts (every 30 s)": "/ui/batches/big/charts",
        "batch filtered (text)": "/ui/batches/big?q=product+99999",
        "gallery page 1": "/ui/batches/big/gallery",
        "gallery last page": f"/ui/batches/big/gallery?page={last_videos}",
    }
    results: dict[str, dict[str, float]] = {}
    for label, path in pages.items():
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            answer = client.get(path)
            times.append(time.perf_counter() - started)
            if answer.status_code != 200:
                raise SystemExit(f"{path}: HTTP {answer.status_code}")
        results[label] = {"median_ms": statistics.median(times) * 1000, "max_ms": max(times) * 1000}
    engine.dispose()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--baseline", type=int, default=1_000, help="rows of the small batch")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--databases", default="sqlite")
    options = parser.parse_args()
    sizes = {"baseline": options.baseline, "big": options.rows}
    document: dict[str, Any] = {"rows": options.rows, "baseline_rows": options.baseline}
    names = [name for name in ("sqlite", "postgresql") if name in options.databases]
    with tempfile.TemporaryDirectory(prefix="veo-bench-dashboard-") as scratch:
        try:
            for name in names:
                document[name] = {}
                for size, rows in sizes.items():
                    if name == "sqlite":
                        url = f"sqlite:///{Path(scratch) / size}.db"
                    else:
                        recreate_database(PG_DATABASE)
                        url = f"postgresql://postgres@127.0.0.1:5432/{PG_DATABASE}"
                    fill(url, rows)
                    document[name][size] = measure(url, rows, options.repeat)
        finally:
            if "postgresql" in names:
                drop_database(PG_DATABASE)
    print(
        f"{options.rows:,} rows against {options.baseline:,} (60% succeeded, 5% failed), "
        f"{options.repeat} requests per page; median (slowest)"
    )
    print(f"| database | page | {options.baseline:,} rows | {options.rows:,} rows | ratio |")
    print("|---|---|---|---|---|")
    for name in names:
        for label, big in document[name]["big"].items():
            small = document[name]["baseline"][label]
            print(
                f"| {name} | {label} | {small['median_ms']:.0f} ms ({small['max_ms']:.0f}) "
                f"| {big['median_ms']:.0f} ms ({big['max_ms']:.0f}) "
                f"| x{big['median_ms'] / small['median_ms']:.2f} |"
            )
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    out = OUT_DIR / f"dashboard-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(document, indent=2))
    print(f"results: {out}")


if __name__ == "__main__":
    main()
