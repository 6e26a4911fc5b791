"""The provider's transport over `http.client`: kept-alive connections reused, a connection the
server closed never written to, a proxy left to httpx. (Every fault the mock provider can make
is classified through it in tests/test_provider.py.)"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.conftest import MOCK_KEY
from veobatch.provider.client import ProviderClient
from veobatch.provider.dialect import Request
from veobatch.provider.relay import SUBMIT_PATH
from veobatch.provider.transport import StdlibTransport, transport_for
from veobatch.settings import Secret

ANSWER = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 21\r\n"
    b"Connection: keep-alive\r\n\r\n"
    b'{"task_id": "veo3:t"}'
)


@contextmanager
def relay(requests_per_connection: int) -> Iterator[tuple[str, list[int], threading.Event]]:
    """A relay that answers `requests_per_connection` requests on each connection, then closes
    it without a word (as servers do with idle kept-alive connections); its URL, the requests
    each connection carried, and an event set when a connection was closed."""
    listener = socket.create_server(("127.0.0.1", 0))
    carried: list[int] = []
    closed = threading.Event()

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                carried.append(0)
                while carried[-1] < requests_per_connection:
                    request = b""
                    while b"\r\n\r\n" not in request:
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        request += chunk
                    if not request:
                        break
                    head, _, body = request.partition(b"\r\n\r\n")
                    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                    while len(body) < length:
                        body += conn.recv(65536)
                    carried[-1] += 1
                    conn.sendall(ANSWER)
            closed.set()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", carried, closed
    finally:
        listener.close()


def test_kept_alive_connections_carry_request_after_request() -> None:
    with (
        relay(100) as (url, carried, _closed),
        ProviderClient(url, Secret(MOCK_KEY), transport=StdlibTransport()) as client,
    ):
        assert [client.submit(Request(SUBMIT_PATH, {"prompt": str(n)})) for n in range(5)] == [
            "veo3:t"
        ] * 5
        assert carried == [5]  # one connection for all five


def test_a_connection_the_relay_closed_is_never_written_to() -> None:
    """Each connection answers once, then the relay closes it. Sending the next request on it
    would fail in a way that looks like a lost answer (in doubt); it is seen closed and a new
    connection is opened instead."""
    with (
        relay(1) as (url, carried, closed),
        ProviderClient(url, Secret(MOCK_KEY), transport=StdlibTransport()) as client,
    ):
        first = client.submit(Request(SUBMIT_PATH, {"prompt": "one"}))
        assert closed.wait(10)  # the relay has closed the kept connection
        assert (first, client.submit(Request(SUBMIT_PATH, {"prompt": "two"}))) == (
            "veo3:t",
            "veo3:t",
        )
        assert carried == [1, 1]


def test_a_proxy_in_the_environment_is_left_to_httpx(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    assert isinstance(transport_for("https://relay.example"), StdlibTransport)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    assert transport_for("https://relay.example") is None
    monkeypatch.setenv("NO_PROXY", "relay.example")
    assert isinstance(transport_for("https://relay.example"), StdlibTransport)
