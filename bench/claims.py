"""Benchmark: what a budget costs a submission, on SQLite and PostgreSQL.

Each thread submits groups of GROUP rows with the real `submit_rows` (the group claimed in one
transaction, the POSTs, the outcomes in another) against a client that answers a task id at
once, so what is timed is the database's share of a submission, the part a budget adds to.
Three settings, on one batch of N rows each (default 3,000), in one run:

- none: no prices (nothing is counted: the baseline);
- budget: VEO_PRICES and a budget on the batch (each claim also adds its price to the batch
  with a conditional UPDATE, and the outcome settles it);
- budget + daily cap: the same and VEO_DAILY_BUDGET (one more conditional UPDATE of the day).

Each with 1 thread and with 4 threads (4 workers racing for the batch's row: the UPDATE
serializes their claims). Printed: submissions per second and the ratio to `none` with the
same database and threads; results in `bench/out/claims-<time>.json`.

    python bench/claims.py
    python bench/claims.py --rows 1000 --databases sqlite
"""

from __future__ import annotations

import argparse
import json
import queue
import sys
import tempfile
import threading
import time
from contextlib import nullcontext
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sqlalchemy as sa

from bench.harness.results import OUT_DIR
from bench.harness.services import drop_database, recreate_database
from veobatch.accounts.spec import DEFAULT
from veobatch.catalog import DEFAULT_MODELS
from veobatch.images.sending import ImageSender
from veobatch.intake.loader import load_rows
from veobatch.intake.raw_job import RawJob
from veobatch.lifecycle import transitions
from veobatch.lifecycle.fanout import Fanout
from veobatch.lifecycle.poll_rules import Pacing
from veobatch.lifecycle.rate_limit import LocalRateLimiter
from veobatch.lifecycle.sender import Account, Sender
from veobatch.lifecycle.spend_rules import Spending
from veobatch.lifecycle.submit import submit_rows
from veobatch.lifecycle.unrecorded import Unrecorded
from veobatch.provider.client import ProviderClient
from veobatch.store import database
from veobatch.store.tables import Batch, Job

PG_DATABASE = "veobatch_bench_claims"
PACING = Pacing(delay=60, shortest=5, longest=30, deadline=1800)
GROUP = 8  # rows a message names (a worker process sends them at once)
CONFIGS: dict[str, Spending] = {
    "none": Spending(),
    "budget": Spending({"veo3.1": 250_000}),
    "budget + daily cap": Spending({"veo3.1": 250_000}, daily_cap=10**15),
}


class InstantRelay:
    """Answers every submission with a new task id at once."""

    def __init__(self) -> None:
        self.count = 0
        self.lock = threading.Lock()

    def submit(self, _payload: dict[str, Any]) -> str:
        with self.lock:
            self.count += 1
            return f"task-{self.count}"


def one_run(url: str, rows: int, spending: Spending, threads: int) -> float:
    """Submissions per second of `rows` rows by `threads` threads, on a fresh batch."""
    engine = database.open_database(url, migrate=True)
    with engine.begin() as conn:
        conn.execute(sa.delete(Job))
        conn.execute(sa.delete(Batch))
    jobs = (
        RawJob.from_mapping(n, {"prompt": f"p{n}", "model": "veo3.1", "images": ["https://x/a"]})
        for n in range(rows)
    )
    budget = 10**15 if spending.prices else None
    load_rows(engine, jobs, batch="b", source="bench", models=DEFAULT_MODELS, budget=budget)
    with engine.begin() as conn:
        ids = transitions.release(conn, transitions.utcnow(), rows)
    todo: queue.SimpleQueue[list[int]] = queue.SimpleQueue()
    for start in range(0, len(ids), GROUP):
        todo.put(ids[start : start + GROUP])
    relay = cast(ProviderClient, InstantRelay())
    no_rate = LocalRateLimiter(0.0)
    account = Account(
        name=DEFAULT,
        client=relay,
        key_from="VEO_API_KEY",
        limiter=no_rate,
        poll_limiter=no_rate,
        images=ImageSender("data-uri"),
        spending=spending,
    )
    sender = Sender(
        accounts=(account,),
        pacing=PACING,
        lease=timedelta(minutes=5),
        unrecorded=Unrecorded(Path(tempfile.mkdtemp(prefix="veo-batch-bench-"))),
    )
    sqlite_lock = threading.Lock() if url.startswith("sqlite") else None

    def work() -> None:
        while True:
            try:
                group = todo.get_nowait()
            except queue.Empty:
                return
            submit_rows(
                engine, sender, group, fanout=Fanout(1), write_lock=sqlite_lock or nullcontext()
            )

    started = time.perf_counter()
    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    seconds = time.perf_counter() - started
    with engine.connect() as conn:
        sent = conn.execute(
            sa.select(sa.func.count()).where(Job.status == "submitted")
        ).scalar_one()
        committed = conn.execute(sa.select(Batch.committed_micros)).scalar_one()
    engine.dispose()
    expected = rows * (spending.price_of("veo3.1") or 0)
    if sent != rows or committed != expected:
        raise SystemExit(f"{sent} of {rows} submitted, {committed} committed of {expected}")
    return rows / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=3_000)
    parser.add_argument("--databases", default="sqlite,postgresql")
    options = parser.parse_args()
    results: dict[str, Any] = {"rows": options.rows}
    with tempfile.TemporaryDirectory(prefix="veo-bench-claims-") as scratch:
        urls = {}
        if "sqlite" in options.databases:
            urls["sqlite"] = f"sqlite:///{Path(scratch) / 'claims.db'}"
        if "postgresql" in options.databases:
            recreate_database(PG_DATABASE)
            urls["postgresql"] = f"postgresql://postgres@127.0.0.1:5432/{PG_DATABASE}"
        try:
            for name, url in urls.items():
                for threads in (1, 4):
                    for label, spending in CONFIGS.items():
                        rate = one_run(url, options.rows, spending, threads)
                        results[f"{name}/{threads}/{label}"] = rate
        finally:
            if "postgresql" in urls:
                drop_database(PG_DATABASE)
    print(f"{options.rows:,} submissions each (claim + outcome; the relay answers at once)")
    print("| database | threads | setting | submissions/s | vs none |")
    print("|---|---|---|---|---|")
    for key, rate in results.items():
        if key == "rows":
            continue
        name, count, label = key.split("/")
        base = results[f"{name}/{count}/none"]
        print(f"| {name} | {count} | {label} | {rate:,.0f} | x{rate / base:.2f} |")
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    out = OUT_DIR / f"claims-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(results, indent=2))
    print(f"results: {out}")


if __name__ == "__main__":
    main()
