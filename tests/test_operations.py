"""Running a deployment: a graceful stop, metrics a Prometheus parser reads, health checks, the
doctor, structured logs without secrets. Real worker and scheduler processes on PostgreSQL and
Redis against the mock provider over HTTP; each test drives its batch to an end or polls a
condition with a deadline."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import sqlalchemy as sa
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import Engine

from tests.conftest import MOCK_KEY
from tests.helpers import ROOT, free_port, load_prompts, sender_for, wait_until
from tests.stack import KEY, Stack
from veobatch import heartbeat, logs
from veobatch.cli import cli
from veobatch.doctor import CLOCK_SKEW, _clock_check, image_check
from veobatch.errors import ExitCode
from veobatch.lifecycle import transitions
from veobatch.lifecycle.fanout import Fanout
from veobatch.lifecycle.rate_limit import LocalRateLimiter, RedisRateLimiter
from veobatch.lifecycle.submit import submit_rows
from veobatch.provider.client import ProviderClient
from veobatch.provider.mock import MockProvider
from veobatch.scheduler.loop import Scheduler
from veobatch.settings import Rate, Secret, Settings
from veobatch.store.tables import Job
from veobatch.worker.app import make_app

pytestmark = pytest.mark.slow


def scrape(port: int) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Every sample of the metrics on `port`, by sample name (`_total`, `_bucket`, ...)."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def value(
    samples: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str
) -> float:
    return sum(v for found, v in samples.get(name, []) if labels.items() <= found.items())


@pytest.fixture
def scheduler_process(stack: Stack) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """`veo-batch scheduler` as its own process, with its metrics port."""
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "veobatch",
            "scheduler",
            "--tick",
            "0.2",
            "--metrics-port",
            str(port),
        ],
        env=stack.env(),
        cwd=ROOT,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield process, port
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def test_sigterm_to_a_worker_mid_batch_leaves_no_row_in_doubt(stack: Stack) -> None:
    """The whole process group gets SIGTERM (as `kill` of a service does) while rows wait for
    their rate slot and requests are out: each request sent is recorded, each row not sent is
    handed back, and another worker finishes the batch with every row created once."""
    prompts = [f"[mock:slow=0.3] row {n}" for n in range(40)]
    stack.load(prompts)
    worker = stack.start_worker(concurrency=4, VEO_RATE="5/s")
    stack.start_scheduler()
    wait_until(lambda: stack.mock.stats()["created"] >= 6, what="requests to go out")
    os.killpg(worker.pid, signal.SIGTERM)
    assert worker.wait(timeout=60) == 0  # a warm shutdown, within the requests' time
    statuses = stack.statuses()
    assert "in_doubt" not in statuses.values()
    assert "submitting" not in statuses.values()  # nothing left for its lease to expire
    sent = sum(status in ("submitted", "succeeded") for status in statuses.values())
    assert sent == stack.mock.stats()["created"]  # every request sent was recorded
    assert sent < len(prompts)  # it stopped mid-batch: the rest were handed back
    stack.start_worker(concurrency=4)
    wait_until(lambda: stack.batch_state() == "finished", what="the batch to finish")
    assert set(stack.statuses().values()) == {"succeeded"}
    assert set(stack.mock.stats()["created_by_prompt"].values()) == {1}


def test_a_distributed_run_exposes_metrics_and_health(
    stack: Stack, scheduler_process: tuple[subprocess.Popen[bytes], int], redis_client: redis.Redis
) -> None:
    scheduler, scheduler_port = scheduler_process
    worker_port = free_port()
    stack.load([f"row {n}" for n in range(12)] + ["[mock:status=400] refused"])
    stack.start_worker(concurrency=2, extra=["--metrics-port", str(worker_port)])
    runner = CliRunner(
        env={"VEO_DATABASE_URL": stack.url, "VEO_REDIS_URL": stack.env()["VEO_REDIS_URL"]}
    )
    wait_until(
        lambda: runner.invoke(cli, ["health"]).exit_code == 0, what="the deployment to be healthy"
    )
    assert runner.invoke(cli, ["health", "--role", "worker"]).exit_code == 0
    wait_until(lambda: stack.batch_state() == "finished", what="the batch to finish")

    workers = scrape(worker_port)  # the counts of both pool children, added up
    schedulers = ("veobatch_scheduler", "veobatch_queue", "veobatch_leases", "veobatch_messages")
    assert [name for name in workers if name.startswith(schedulers)] == []  # not a worker's
    submits = value(workers, "veobatch_provider_requests_total", kind="submit", status_class="2xx")
    assert submits == 12
    assert (
        value(workers, "veobatch_provider_requests_total", kind="submit", account="default") >= 12
    )
    refused = value(
        workers,
        "veobatch_provider_requests_total",
        kind="submit",
        status_class="4xx",
        error_kind="invalid",
    )
    assert refused == 1
    assert value(workers, "veobatch_provider_requests_total", kind="poll", status_class="2xx") >= 12
    assert value(workers, "veobatch_provider_request_duration_seconds_count", kind="submit") == 13
    assert value(workers, "veobatch_rate_limit_wait_seconds_count", kind="submit") == 13
    assert value(workers, "veobatch_row_changes_total", status="succeeded") == 12
    assert value(workers, "veobatch_row_changes_total", status="failed") == 1

    ours = scrape(scheduler_port)
    assert value(ours, "veobatch_scheduler_leader") == 1
    assert value(ours, "veobatch_scheduler_ticks_total") > 0
    assert "veobatch_tasks_generating" in ours
    assert ours.get("veobatch_rows", []) == []  # a finished batch is not at work: no series
    assert value(ours, "veobatch_leases_expired_total") == 0

    scheduler.send_signal(signal.SIGTERM)
    assert scheduler.wait(timeout=30) == 0
    assert redis_client.get(heartbeat.LOCK_KEY) is None  # free at once for a standby
    found = runner.invoke(cli, ["health", "--json"])
    assert found.exit_code == ExitCode.CHECK_FAILED
    checks = {c["name"]: c for c in json.loads(found.output)["checks"]}
    assert not checks["scheduler"]["ok"]
    assert checks["workers"]["ok"]
    assert re.fullmatch(r"\d+ running on 1 host", checks["workers"]["detail"])
    here = json.loads(runner.invoke(cli, ["health", "--role", "worker", "--json"]).output)
    assert re.fullmatch(r"\d+ running on this host", here["checks"][-1]["detail"]), here


def test_worker_logs_are_json_lines_per_row_with_no_secret(stack: Stack, tmp_path: Path) -> None:
    """A relay that echoes the key in its error: the line about it has the key masked."""
    stack.load(["a fox", "[mock:echo-key] careless"])
    log_file = tmp_path / "worker.log"
    stack.start_worker(concurrency=1, VEO_LOG_FORMAT="json", stderr=log_file)
    stack.start_scheduler()
    wait_until(lambda: stack.batch_state() == "finished", what="the batch to finish")
    text = log_file.read_text()
    assert KEY not in text
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    rows = [line for line in lines if line.get("logger") == "veobatch.rows"]
    submitted = [r for r in rows if r["status"] == "submitted"]
    assert [r["row"] for r in submitted] == ["r2"]
    assert submitted[0]["task_id"]
    assert submitted[0]["batch"] == "b"
    assert submitted[0]["attempt"] == 1
    refused = next(r for r in rows if r["status"] == "failed")
    assert (refused["http_status"], refused["error_kind"], refused["level"]) == (
        400,
        "invalid",
        "WARNING",
    )
    assert "***" in refused["message"]
    assert any(r["status"] == "succeeded" and r["row"] == "r2" for r in rows)


def test_the_doctor_finds_the_key_accepted_or_refused(stack: Stack) -> None:
    env = {"VEO_DATABASE_URL": stack.url, "VEO_API_BASE": stack.mock.url, "VEO_RATE": "5/s"}
    good = CliRunner(env={**env, "VEO_API_KEY": KEY}).invoke(cli, ["doctor", "--json"])
    assert good.exit_code == 0, good.output
    checks = {c["name"]: c for c in json.loads(good.output)["checks"] if c["name"] != "settings"}
    assert [checks[name]["ok"] for name in ("relay", "key", "clock")] == [True, True, True]
    assert checks["relay"]["detail"].endswith("answers (HTTP 404 to a probe)")
    bad = CliRunner(env={**env, "VEO_API_KEY": "sk-wrong-0123456789"}).invoke(cli, ["doctor"])
    assert bad.exit_code == ExitCode.CHECK_FAILED
    assert "key: refused (HTTP 401" in bad.output
    assert "sk-wrong" not in bad.output
    assert stack.mock.stats()["created"] == 0  # nothing was spent
    gone = CliRunner(
        env={**env, "VEO_API_KEY": KEY, "VEO_API_BASE": f"http://127.0.0.1:{free_port()}"}
    )
    unreachable = gone.invoke(cli, ["doctor"])
    assert unreachable.exit_code == ExitCode.CHECK_FAILED
    assert "relay: cannot reach" in unreachable.output


def test_the_doctor_warns_of_a_clock_far_from_the_relays() -> None:
    now = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
    relay = (now - timedelta(seconds=CLOCK_SKEW + 30)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    late = _clock_check(relay, now)
    assert (late.ok, late.warning) == (False, True)
    assert "90 s ahead of the relay" in late.detail
    assert _clock_check(now.strftime("%a, %d %b %Y %H:%M:%S GMT"), now).ok


def test_every_secret_is_masked_in_a_log_line_whatever_logged_it() -> None:
    secret = "sk-live-0123456789abcdef"
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(self.format(record))

    handler = Keep()
    handler.setFormatter(logs.formatter("json"))
    handler.addFilter(logs.Redacting([secret]))
    logger = logging.getLogger("test.redaction")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("answer %s", f"bad key {secret}", extra={"row": secret[:12] + "x"})
        try:
            raise ValueError(f"echo {secret}")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    assert len(records) == 2
    assert all(secret not in r and secret[:12] not in r for r in records)
    first = json.loads(records[0])
    assert first["message"] == "answer bad key ***"
    assert "echo ***" in records[1]


def test_a_text_line_carries_the_rows_fields_as_key_value() -> None:
    record = logging.LogRecord("veobatch.rows", logging.WARNING, "x", 1, "submit: failed", (), None)
    for name, field in {
        "batch": "spring sale",
        "row": "sku-1",
        "status": "failed",
        "attempt": 2,
        "http_status": 400,
        "error_kind": "invalid",
        "task_id": None,
    }.items():
        setattr(record, name, field)
    line = logs.TextFormatter().format(record)
    assert line.endswith(
        "WARNING veobatch.rows: submit: failed batch='spring sale' row=sku-1 status=failed "
        "attempt=2 http_status=400 error_kind=invalid"
    )


def _queued_row(engine: Engine, prompt: str) -> int:
    load_prompts(engine, [prompt])
    with engine.begin() as conn:
        (job_id,) = transitions.release(conn, transitions.utcnow(), 1)
    return job_id


def _submit(engine: Engine, mock: MockProvider, limiter: Any, job_id: int, wait: Any) -> Any:
    with ProviderClient(mock.url, Secret(MOCK_KEY)) as client:
        sender = sender_for(client, limiter)
        outcomes = submit_rows(engine, sender, [job_id], fanout=Fanout(1), wait=wait)
    return outcomes[0] if outcomes else None


def test_a_long_wait_for_the_rate_slot_moves_the_lease_first(
    engine: Engine, mock: MockProvider
) -> None:
    """Twelve processes at 10/min: the last waits a minute, longer than its 30 s lease. The
    lease is moved past the wait before it, so the scheduler never takes the row for lost."""
    job_id = _queued_row(engine, "a fox")
    limiter = LocalRateLimiter.for_rate(Rate.parse("1/min"))
    limiter.reserve()  # another process has the next slot: this one waits a minute
    seen: list[float] = []

    def wait(seconds: float) -> bool:  # instead of sleeping: look at the lease, then go
        with engine.connect() as conn:
            until = conn.execute(sa.select(Job.lease_until).where(Job.id == job_id)).scalar()
            assert (
                transitions.expire_leases(conn, transitions.utcnow() + timedelta(seconds=45)) == 0
            )
        assert until is not None
        seen.append(seconds)
        return True

    outcome = _submit(engine, mock, limiter, job_id, wait)
    assert outcome is not None
    assert outcome.status == "submitted"
    assert len(seen) == 1
    assert seen[0] > 55


def test_no_rate_limit_to_ask_sends_nothing_and_hands_the_row_back(
    engine: Engine, mock: MockProvider
) -> None:
    """Redis gone between the claim and the slot: the row goes back to pending, unsent."""
    job_id = _queued_row(engine, "a fox")
    gone = redis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=1)
    limiter = RedisRateLimiter(gone, Rate.parse("10/s"))
    assert _submit(engine, mock, limiter, job_id, lambda _s: True) is None
    with engine.connect() as conn:
        status = conn.execute(sa.select(Job.status).where(Job.id == job_id)).scalar()
    assert status == "pending"
    assert mock.stats()["created"] == 0


def test_the_scheduler_waits_out_a_redis_that_is_gone(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    gone = redis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=1)
    loop = Scheduler(
        engine,
        gone,
        make_app(Settings()),
        depth=5,
        tick=0.05,
        grace=timedelta(seconds=1),
        submit_group=1,
        poll_group=5,
        poll_claim=timedelta(minutes=1),
    )
    stop = threading.Event()
    thread = threading.Thread(target=loop.run, args=(stop,))
    with caplog.at_level(logging.WARNING, logger="veobatch.scheduler"):
        thread.start()
        wait_until(
            lambda: sum("round failed" in r.message for r in caplog.records) >= 2,
            what="two failed rounds",
        )
        assert thread.is_alive()  # it goes on trying
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive()


def test_the_doctor_says_url_mode_needs_a_bucket() -> None:
    found = image_check(Settings(image_mode="url"))
    assert found.failed
    assert "without VEO_S3_URL" in found.detail


def test_the_grafana_dashboard_and_the_runbook_name_only_real_metrics(engine: Engine) -> None:
    from prometheus_client import REGISTRY  # noqa: PLC0415

    from veobatch import metrics  # noqa: PLC0415
    from veobatch.store.gauges import store_registry  # noqa: PLC0415

    metrics.series()  # as every /metrics server does
    known = {metric.name for metric in REGISTRY.collect()}
    known |= {metric.name for metric in store_registry(engine, 10).collect()}
    known = {name for name in known if name.startswith("veobatch_")}
    assert {"veobatch_provider_requests", "veobatch_rows", "veobatch_batch_paused"} <= known
    for document in ("docs/grafana/veo-batch.json", "docs/operations.md"):
        named = set(re.findall(r"veobatch_[a-z_]+", (ROOT / document).read_text()))
        bare = {re.sub(r"_(total|bucket|count|sum)$", "", name) for name in named}
        assert bare - known == set(), document
