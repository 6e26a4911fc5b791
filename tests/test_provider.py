"""The provider client against the mock provider over real HTTP, and its error classification."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from tests.conftest import MOCK_KEY as KEY
from tests.conftest import serving
from tests.helpers import wait_until
from veobatch.errors import Abandoned, ProviderError
from veobatch.provider.client import ProviderClient
from veobatch.provider.dialect import Request
from veobatch.provider.mock import MockProvider
from veobatch.provider.relay import SUBMIT_PATH, classify, error_message, job_payload
from veobatch.settings import Secret
from veobatch.states import ErrorKind

IMAGE = "https://img.example.com/a.jpg"


@pytest.fixture
def client(mock: MockProvider) -> Iterator[ProviderClient]:
    with ProviderClient(mock.url, Secret(KEY), read_timeout=1.0) as client:
        yield client


def submit(client: ProviderClient, prompt: str) -> str:
    return client.submit(Request(SUBMIT_PATH, job_payload(prompt, "veo3.1", [IMAGE])))


def failure(client: ProviderClient, prompt: str) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        submit(client, prompt)
    return info.value


def test_submit_then_query_until_success(mock: MockProvider, client: ProviderClient) -> None:
    mock.state.config.task_seconds = 0.3
    task_id = submit(client, "a fox")
    assert ":" in task_id  # like the relay's ids; the query must quote it
    first = client.query(task_id)
    assert first.status in {"NOT_START", "IN_PROGRESS"}
    assert not first.finished
    wait_until(lambda: client.query(task_id).finished, 5, "the task to finish")
    state = client.query(task_id)
    assert state.succeeded
    assert state.video_url is not None
    assert state.video_url.endswith(".mp4")
    assert state.progress == "100%"
    assert mock.stats()["created_by_prompt"] == {"a fox": 1}


def test_a_failed_task_carries_the_reason(client: ProviderClient) -> None:
    state = client.query(submit(client, "a fox [mock:fail]"))
    assert state.status == "FAILURE"
    assert state.fail_reason == "视频生成失败：上游服务异常"
    assert state.video_url is None


@pytest.mark.parametrize(
    ("prompt", "kind", "status", "message", "created"),
    [
        ("[mock:status=400] x", ErrorKind.INVALID, 400, "模拟错误 400", 0),
        ("[mock:status=500] x", ErrorKind.SERVER, 500, "模拟错误 500", 0),
        ("[mock:status=502] x", ErrorKind.SERVER, 502, "an HTML page (502 Bad Gateway)", 0),
        ("[mock:drop-before] x", ErrorKind.AMBIGUOUS, None, "RemoteProtocolError", 0),
        ("[mock:drop-after] x", ErrorKind.AMBIGUOUS, None, "RemoteProtocolError", 1),
        ("[mock:slow=3] x", ErrorKind.AMBIGUOUS, None, "ReadTimeout", 1),
        ("[mock:no-task-id] x", ErrorKind.BAD_ANSWER, 200, "200 without a usable task id", 1),
    ],
)
def test_each_fault_gets_its_kind(
    mock: MockProvider,
    client: ProviderClient,
    prompt: str,
    kind: ErrorKind,
    status: int | None,
    message: str,
    created: int,
) -> None:
    error = failure(client, prompt)
    assert (error.kind, error.http_status) == (kind, status)
    assert message in error.message
    assert mock.stats()["created_by_prompt"].get(prompt, 0) == created


def test_wrong_key_is_auth(mock: MockProvider) -> None:
    with ProviderClient(mock.url, Secret("wrong-key-123")) as client:
        error = failure(client, "x")
    assert (error.kind, error.http_status, error.message) == (ErrorKind.AUTH, 401, "无效的令牌")
    assert "wrong-key-123" not in str(error)


def test_missing_images_is_invalid_with_the_providers_words(client: ProviderClient) -> None:
    with pytest.raises(ProviderError) as info:
        client.submit(Request(SUBMIT_PATH, {"prompt": "x", "model": "veo3.1", "images": []}))
    assert info.value.kind == ErrorKind.INVALID
    assert info.value.message == "参数错误：缺少 images"


def test_no_balance_is_quota(mock: MockProvider, client: ProviderClient) -> None:
    mock.state.config.balance = 1
    submit(client, "first")
    error = failure(client, "second")
    assert (error.kind, error.http_status) == (ErrorKind.QUOTA, 403)
    assert mock.stats()["created"] == 1


def test_over_the_window_is_rate_limited_without_retry_after(
    mock: MockProvider, client: ProviderClient
) -> None:
    mock.state.config.limit, mock.state.config.window = 2, 60.0
    submit(client, "a")
    submit(client, "b")
    error = failure(client, "c")
    assert (error.kind, error.http_status, error.retry_after) == (ErrorKind.RATE_LIMITED, 429, None)
    assert error.message == "您已达到请求数限制：1分钟内最多请求2次"
    stats = mock.stats()
    assert (stats["rejected_429"], stats["busiest_window"], stats["created"]) == (1, 3, 2)


def test_nothing_listening_is_network() -> None:
    with socket.socket() as probe:  # a port that was free a moment ago
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with ProviderClient(f"http://127.0.0.1:{port}", Secret(KEY)) as client:
        error = failure(client, "x")
    assert error.kind == ErrorKind.NETWORK


def test_unknown_task_is_invalid(client: ProviderClient) -> None:
    with pytest.raises(ProviderError) as info:
        client.query("veo3:0-nope")
    assert (info.value.kind, info.value.http_status) == (ErrorKind.INVALID, 404)
    assert info.value.message == "task_not_exist"


# ---------------------------------------------------------------------------------- pure


def transport_client(handler: httpx.MockTransport) -> ProviderClient:
    return ProviderClient("https://relay.example", Secret("sk-secret-key-xyz"), transport=handler)


@pytest.mark.parametrize(
    ("exception", "kind"),
    [
        (httpx.ConnectTimeout("timed out"), ErrorKind.NETWORK),
        (httpx.ConnectError("refused"), ErrorKind.NETWORK),
        (httpx.ReadTimeout("timed out"), ErrorKind.AMBIGUOUS),
        (httpx.WriteError("broken pipe"), ErrorKind.AMBIGUOUS),
        (httpx.RemoteProtocolError("disconnected"), ErrorKind.AMBIGUOUS),
    ],
)
def test_transport_failures(exception: httpx.TransportError, kind: ErrorKind) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise exception

    with transport_client(httpx.MockTransport(fail)) as client:
        error = failure(client, "x")
    assert error.kind == kind
    with (
        transport_client(httpx.MockTransport(fail)) as client,
        pytest.raises(ProviderError) as info,
    ):
        client.query("t")
    assert info.value.kind == ErrorKind.NETWORK  # a GET creates nothing: always safe to retry


def test_the_key_is_never_in_a_message_even_when_echoed() -> None:
    def echo(request: httpx.Request) -> httpx.Response:
        token = request.headers["Authorization"]
        return httpx.Response(401, json={"error": {"message": f"bad token {token}"}})

    with transport_client(httpx.MockTransport(echo)) as client:
        error = failure(client, "x")
    assert "sk-secret-key-xyz" not in str(error)
    assert "sk-secret-key-xyz" not in error.message
    assert error.message == "bad token Bearer ***"


def test_a_nul_from_the_relay_is_dropped_before_anything_keeps_it() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(400, json={"error": {"message": "bad\u0000 prompt"}})
        return httpx.Response(200, json={"task_id": "t\u00001", "status": "fail\u0000ure"})

    with transport_client(httpx.MockTransport(answer)) as client:
        assert failure(client, "x").message == "bad prompt"
        state = client.query("t1")
    assert (state.task_id, state.status) == ("t1", "FAILURE")


@pytest.mark.parametrize(
    ("status", "body", "headers", "kind", "retry_after"),
    [
        (
            429,
            b'{"error": {"message": "slow down"}}',
            {"retry-after": "7"},
            ErrorKind.RATE_LIMITED,
            7.0,
        ),
        (
            403,
            b'{"error": {"message": "x", "code": "insufficient_user_quota"}}',
            {},
            ErrorKind.QUOTA,
            None,
        ),
        (403, '{"message": "用户额度不足"}'.encode(), {}, ErrorKind.QUOTA, None),
        (403, b'{"message": "model not allowed for this token"}', {}, ErrorKind.AUTH, None),
        (408, b"", {}, ErrorKind.SERVER, None),
        (413, b"too large", {}, ErrorKind.INVALID, None),
        (504, b"<html><title>504 Gateway Time-out</title></html>", {}, ErrorKind.SERVER, None),
    ],
)
def test_classify(
    status: int, body: bytes, headers: dict[str, str], kind: ErrorKind, retry_after: float | None
) -> None:
    error = classify(status, body, headers)
    assert (error.kind, error.retry_after) == (kind, retry_after)


def test_error_message_shapes() -> None:
    assert error_message(b'{"error": {"message": "a", "type": "new_api_error"}}') == "a"
    assert error_message(b'{"code": "c", "message": "b", "data": null}') == "b"
    assert error_message(b"<html><title>502 Bad Gateway</title></html>") == (
        "an HTML page (502 Bad Gateway)"
    )
    assert error_message(b"") == "(empty body)"


def test_payload_passes_extra_fields_through() -> None:
    body = job_payload("p", "veo3.1", [IMAGE], "9:16", True, {"enable_upsample": True})
    assert body == {
        "enable_upsample": True,
        "prompt": "p",
        "model": "veo3.1",
        "images": [IMAGE],
        "aspect_ratio": "9:16",
        "enhance_prompt": True,
    }


# ---------------------------------------------------------------------------------- deadlines


def dripping_client(mock: MockProvider, **options: Any) -> ProviderClient:
    """A client whose requests must end within 1.2 s in all, each read within 0.4 s: a relay
    dripping a byte every 0.05 s never trips the read timeout."""
    return ProviderClient(mock.url, Secret(KEY), connect_timeout=0.8, read_timeout=0.4, **options)


def test_a_dripping_answer_ends_at_the_whole_deadline(mock: MockProvider) -> None:
    with dripping_client(mock) as client:
        started = time.monotonic()
        error = failure(client, "[mock:drip=0.05] x")  # status line and headers drip too
        took = time.monotonic() - started
        assert error.kind == ErrorKind.AMBIGUOUS  # sent: a task may exist (here it does)
        assert "ReadTimeout" in error.message
        assert "whole deadline of 1.2 s" in error.message
        assert 1.1 < took < 3.0
        task_id = submit(client, "fine")
        mock.state.config.drip_polls = 0.05
        started = time.monotonic()
        with pytest.raises(ProviderError) as info:
            client.query(task_id)
        assert time.monotonic() - started < 3.0
    assert info.value.kind == ErrorKind.NETWORK  # a poll is simply asked again later
    assert "whole deadline" in info.value.message
    assert mock.stats()["created_by_prompt"]["[mock:drip=0.05] x"] == 1


class DrippingBody(BaseHTTPRequestHandler):
    """Headers at once, then a JSON body a byte every 0.05 s (for 10 s at most)."""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        body = b'{"task_id": "t-1"' + b" " * 200 + b"}"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        with contextlib.suppress(OSError):
            for index in range(len(body)):
                self.wfile.write(body[index : index + 1])
                time.sleep(0.05)


def test_through_httpx_the_deadline_is_checked_between_chunks() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), DrippingBody)
    server.daemon_threads = True
    with serving(server):
        url = f"http://127.0.0.1:{server.server_address[1]}"
        transport = httpx.HTTPTransport()  # a caller's own (or a proxy's): no socket to shut
        with ProviderClient(
            url, Secret(KEY), connect_timeout=0.8, read_timeout=0.4, transport=transport
        ) as client:
            started = time.monotonic()
            error = failure(client, "x")
    assert time.monotonic() - started < 3.0
    assert error.kind == ErrorKind.AMBIGUOUS
    assert "whole deadline of 1.2 s" in error.message


def test_a_poll_in_flight_is_abandoned_at_once(mock: MockProvider) -> None:
    with ProviderClient(mock.url, Secret(KEY), read_timeout=30.0) as client:
        task_id = submit(client, "fine")
        mock.state.config.drip_polls = 0.05
        outcome: list[BaseException] = []

        def poll() -> None:
            try:
                client.query(task_id)
            except BaseException as exc:
                outcome.append(exc)

        thread = threading.Thread(target=poll)
        thread.start()
        wait_until(lambda: mock.stats()["dripping"] == 1, 5, "the poll's answer to drip")
        client.abandon()
        thread.join(2.0)
        assert not thread.is_alive()
        assert isinstance(outcome[0], Abandoned)
        with pytest.raises(Abandoned):  # and no poll from now on
            client.query(task_id)
        assert submit(client, "still sent")  # a submission is never abandoned
