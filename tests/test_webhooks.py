"""Webhooks on SQLite and PostgreSQL: an event stored when a batch finishes or pauses, a
signed POST to a real local receiver that fails and then recovers, every try recorded."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import socket
from collections.abc import Iterator
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tests.conftest import Cli, serving
from tests.helpers import job
from veobatch import Client
from veobatch.errors import NotFoundError, VeoBatchError
from veobatch.lifecycle import transitions, webhooks
from veobatch.lifecycle.backoff import WEBHOOK_RETRY
from veobatch.settings import Secret, Settings
from veobatch.store.tables import Batch, Delivery, DeliveryAttempt, Job

SECRET = Secret("webhook-secret-for-tests")
LOCAL = Settings.from_values({"webhook_allow_private": "true"})  # the receivers are local


class Receiver(ThreadingHTTPServer):
    daemon_threads = True
    answers: list[int]  # status codes to answer, in turn; then 200
    calls: list[tuple[dict[str, str], bytes]]


class Handler(BaseHTTPRequestHandler):
    server: Receiver

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.calls.append(({k.lower(): v for k, v in self.headers.items()}, body))
        status = self.server.answers.pop(0) if self.server.answers else 200
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver(("127.0.0.1", 0), Handler)
    server.answers, server.calls = [], []
    with serving(server):
        yield server


def deliver(engine: Engine, http: httpx.Client, secret: Secret | None, now: datetime) -> int:
    """The due calls tried once, to the local receivers (private addresses allowed)."""
    return webhooks.deliver_due(engine, http, secret, now, allow_private=True)


def address(receiver: Receiver) -> str:
    return f"http://127.0.0.1:{receiver.server_address[1]}/hooks/veo"


def finish(engine: Engine, batch: str) -> None:
    """Every row of the batch succeeds, then the batch finishes (as the runners would)."""
    with engine.begin() as conn:
        conn.execute(sa.update(Job).values(status="succeeded"))
        assert transitions.finish_batches(conn, transitions.utcnow()) == 1


def test_a_failing_receiver_is_called_again_until_it_answers(
    engine: Engine, database_url: str, receiver: Receiver
) -> None:
    with Client(database_url, settings=LOCAL) as veo:
        veo.add("cms", [job("a"), job("b")], webhook_url=address(receiver))
    finish(engine, "cms")
    receiver.answers = [500]
    now = transitions.utcnow()
    with httpx.Client() as http:
        assert deliver(engine, http, SECRET, now) == 0  # 500
        assert deliver(engine, http, SECRET, now) == 0  # not due again yet
        assert len(receiver.calls) == 1
        later = now + timedelta(seconds=WEBHOOK_RETRY.delay(1) + 1)
        assert deliver(engine, http, SECRET, later) == 1
        assert deliver(engine, http, SECRET, later + timedelta(hours=2)) == 0
    assert len(receiver.calls) == 2
    headers, body = receiver.calls[-1]
    summary = json.loads(body)
    assert (summary["event"], summary["batch"], summary["state"]) == (
        "batch.finished",
        "cms",
        "finished",
    )
    assert (summary["total"], summary["counts"]) == (2, {"succeeded": 2})
    signed = f"{headers['x-veo-batch-timestamp']}.".encode() + body
    expected = hmac.new(SECRET.reveal().encode(), signed, hashlib.sha256).hexdigest()
    assert headers["x-veo-batch-signature"] == f"sha256={expected}"
    assert headers["x-veo-batch-delivery"] == receiver.calls[0][0]["x-veo-batch-delivery"]
    with engine.connect() as conn:
        tries = conn.execute(
            sa.select(DeliveryAttempt.http_status, DeliveryAttempt.error).order_by(
                DeliveryAttempt.id
            )
        ).all()
        delivered = conn.execute(sa.select(Delivery.delivered_at)).scalar_one()
    assert [t.http_status for t in tries] == [500, 200]
    assert tries[0].error.startswith("HTTP 500")
    assert delivered is not None


def test_a_pause_is_told_with_its_reason(
    engine: Engine, database_url: str, receiver: Receiver
) -> None:
    with Client(database_url, settings=LOCAL) as veo:
        veo.add("cms", [job("a")], webhook_url=address(receiver))
        veo.pause("cms", "out of balance")
    with httpx.Client() as http:
        assert deliver(engine, http, SECRET, transitions.utcnow()) == 1
    summary = json.loads(receiver.calls[0][1])
    assert (summary["event"], summary["pause_reason"]) == ("batch.paused", "out of balance")


def test_without_a_secret_nothing_is_sent_and_the_reason_is_kept(
    engine: Engine, database_url: str, receiver: Receiver
) -> None:
    with Client(database_url, settings=LOCAL) as veo:
        veo.add("cms", [job("a")], webhook_url=address(receiver))
    finish(engine, "cms")
    with httpx.Client() as http:
        assert deliver(engine, http, None, transitions.utcnow()) == 0
    assert receiver.calls == []
    with engine.connect() as conn:
        error = conn.execute(sa.select(DeliveryAttempt.error)).scalar_one()
    assert error is not None
    assert "VEO_WEBHOOK_SECRET is not set" in error


def test_batches_without_a_webhook_store_no_event(engine: Engine, database_url: str) -> None:
    with Client(database_url, settings=LOCAL) as veo:
        veo.add("quiet", [job("a")])
    finish(engine, "quiet")
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(Delivery)).scalar_one() == 0


def test_run_tells_the_webhook_when_the_batch_is_done(
    sqlite_run: Cli, tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = sqlite_run(
        "--webhook-secret",
        SECRET.reveal(),
        "--webhook-allow-private",
        "true",
        "run",
        str(Path(__file__).parent.parent / "jobs.example.yaml"),
        "--mock",
        "--webhook",
        address(receiver),
    )
    assert result.exit_code == 0, result.output
    assert "webhook told (1 call)" in result.stderr
    summary = json.loads(receiver.calls[0][1])
    assert (summary["event"], summary["counts"]) == ("batch.finished", {"succeeded": 6})


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://[::1", "is not a URL"),
        ("http://xn--/", "is not a URL"),
        ("ftp://example.com/hook", "is not an http(s) URL"),
        ("https://user:secret@hooks.example.com/x", "user name or password"),
        ("http://169.254.169.254/latest/meta-data", "points at this network"),
        ("http://localhost:6379/", "points at this network"),
        ("http://[::ffff:127.0.0.1]/", "points at this network"),
        ("http://10.1.2.3/", "points at this network"),
        ("http://exa mple.com/", "no valid host"),
    ],
)
def test_a_webhook_url_is_checked_when_it_is_given(
    database_url: str, url: str, reason: str
) -> None:
    with Client(database_url) as veo, pytest.raises(VeoBatchError) as refused:
        veo.add("cms", [job("a")], webhook_url=url)
    assert reason in str(refused.value)
    with Client(database_url) as veo, pytest.raises(NotFoundError):
        veo.status("cms")  # nothing was stored


def test_a_bad_call_is_a_failed_try_and_the_others_still_go(
    engine: Engine, database_url: str, receiver: Receiver
) -> None:
    with Client(database_url, settings=LOCAL) as veo:
        veo.add("bad", [job("a")], webhook_url=address(receiver))
        veo.add("good", [job("b")], webhook_url=address(receiver))
    with engine.begin() as conn:  # a target stored before the checks existed
        conn.execute(sa.update(Batch).where(Batch.name == "bad").values(webhook_url="http://xn--/"))
        conn.execute(sa.update(Job).values(status="succeeded"))
        transitions.finish_batches(conn, transitions.utcnow())
        conn.execute(
            sa.update(Delivery)
            .where(Delivery.batch_id == Batch.id, Batch.name == "bad")
            .values(url="http://xn--/")
        )
    with httpx.Client() as http:
        now = transitions.utcnow()
        assert deliver(engine, http, SECRET, now) == 1
    assert len(receiver.calls) == 1
    with engine.connect() as conn:
        errors = conn.execute(sa.select(DeliveryAttempt.error)).scalars().all()
    assert sorted(e is None for e in errors) == [False, True]
    assert any("is not a URL" in (e or "") for e in errors)


def test_a_name_that_resolves_to_this_network_is_refused_when_called(
    engine: Engine, database_url: str
) -> None:
    name = socket.gethostname()
    addresses = {info[4][0] for info in socket.getaddrinfo(name, 80, proto=socket.IPPROTO_TCP)}
    if all(ipaddress.ip_address(a).is_global for a in addresses):
        pytest.skip(f"{name} resolves to public addresses only here")
    with Client(database_url) as veo:
        veo.add("cms", [job("a")], webhook_url=f"http://{name}:9/hook")  # a name: accepted
    finish(engine, "cms")
    with webhooks.webhook_client(allow_private=False) as http:
        now = transitions.utcnow()
        assert webhooks.deliver_due(engine, http, SECRET, now, allow_private=False) == 0
    with engine.connect() as conn:
        error = conn.execute(sa.select(DeliveryAttempt.error)).scalar_one()
    assert f"refused: {name} is " in (error or "")
    assert "VEO_WEBHOOK_ALLOW_PRIVATE=true allows it" in (error or "")
