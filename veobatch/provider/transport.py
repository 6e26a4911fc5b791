"""An httpx transport over the standard library's `http.client`, for the provider's requests.

httpx's own transport (httpcore and h11, pure Python) spends about 0.45 ms of CPU on a small
request and its answer; `http.client` about 0.15 ms. The provider's POSTs and GETs are the
engine's hottest path (one each per row, thousands a minute), so they go through this; every
other client (video hosts, webhooks, the doctor) keeps httpx's own. It keeps what the engine
relies on:

- the same exceptions as httpx's transport, so a failure is classified the same way: nothing
  sent (`ConnectError`, `ConnectTimeout`, `PoolTimeout`) versus a request that may have arrived
  (`WriteError`, `ReadTimeout`, `ReadError`, `RemoteProtocolError`);
- the connect and read timeouts of the request;
- kept-alive connections, one per request in flight (a pool per host, shared by threads), and
  a kept connection the server closed meanwhile is never written to: it is checked for EOF
  before reuse, as httpcore does;
- TLS verified as httpx verifies it (its default context, certifi's bundle).

It speaks plain HTTP/1.1 and knows no proxy: `ProviderClient` uses it only when no proxy is
configured in the environment (`transport_for`).
"""

from __future__ import annotations

import http.client
import select
import socket
import threading
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Final, NamedTuple, TypeAlias

import httpx

MAX_IDLE: Final = 32  # kept-alive connections per host

Origin: TypeAlias = tuple[str, str, int]  # scheme, host, port: the connections a request may use


def origin_of(url: httpx.URL) -> Origin:
    return (url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80))


def transport_for(url: str) -> httpx.BaseTransport | None:
    """This transport for `url`, or None (httpx's own) when a proxy may apply to it."""
    proxies = urllib.request.getproxies()
    proxied = any(key in proxies for key in ("http", "https", "all"))
    if proxied and not urllib.request.proxy_bypass(httpx.URL(url).host):
        return None
    return StdlibTransport()


class Answer(NamedTuple):
    """A response read whole: its status, its headers as they came, its body."""

    status_code: int
    header_list: list[tuple[str, str]]
    content: bytes

    def headers(self) -> httpx.Headers:
        """The headers, looked up in any case (built only when asked: a 200 needs none)."""
        return httpx.Headers(self.header_list)


class StdlibTransport(httpx.BaseTransport):
    """`exchange` is the request itself; `handle_request` serves it to an httpx client.
    `ProviderClient` calls `exchange` directly: httpx's `Client.send` (its request and
    response models, hooks and redirect handling) would cost as much again as the request."""

    def __init__(self) -> None:
        self._idle: dict[Origin, list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()
        self._tls = httpx.create_ssl_context()  # verified, certifi's bundle: httpx's default

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        headers = {
            name.decode("latin-1"): value.decode("latin-1") for name, value in request.headers.raw
        }
        try:
            answer = self.exchange(
                request.method,
                origin_of(url),
                url.raw_path.decode("ascii"),
                headers,
                request.read() or None,
                request.extensions.get("timeout", {}),
            )
        except httpx.RequestError as exc:
            exc.request = request
            raise
        return httpx.Response(
            answer.status_code,
            headers=answer.header_list,
            stream=httpx.ByteStream(answer.content),
            request=request,
            extensions={"http_version": b"HTTP/1.1"},
        )

    def exchange(
        self,
        method: str,
        origin: Origin,
        path: str,
        headers: Mapping[str, str],
        body: bytes | None,
        timeouts: Mapping[str, float | None],
    ) -> Answer:
        """Send one request and read its answer whole. `headers` may leave out Host,
        Content-Length and Accept-Encoding (then: the origin's, the body's, identity)."""
        with self._connection(origin, timeouts) as conn:
            try:
                conn.request(method, path, body, dict(headers))
            except TimeoutError as exc:
                raise httpx.WriteTimeout(str(exc) or "timed out writing") from exc
            except OSError as exc:
                raise httpx.WriteError(str(exc) or type(exc).__name__) from exc
            try:
                answer = conn.getresponse()
                content = answer.read()
            except TimeoutError as exc:
                raise httpx.ReadTimeout(str(exc) or "timed out reading") from exc
            except (http.client.HTTPException, ConnectionError) as exc:
                raise httpx.RemoteProtocolError(str(exc) or type(exc).__name__) from exc
            except OSError as exc:
                raise httpx.ReadError(str(exc) or type(exc).__name__) from exc
            if answer.will_close:
                conn.close()
        return Answer(answer.status, answer.getheaders(), content)

    @contextmanager
    def _connection(
        self, key: Origin, timeouts: Mapping[str, float | None]
    ) -> Iterator[http.client.HTTPConnection]:
        """A kept connection still open, or a new one; kept again afterwards if still open.
        A failure to connect raises ConnectError or ConnectTimeout: nothing was sent."""
        conn = self._kept(key)
        if conn is None:
            conn = self._connect(key, timeouts)
        elif conn.sock is not None:
            conn.sock.settimeout(timeouts.get("read"))
        try:
            yield conn
        except BaseException:
            conn.close()
            raise
        if conn.sock is not None:
            with self._lock:
                idle = self._idle.setdefault(key, [])
                if len(idle) < MAX_IDLE:
                    idle.append(conn)
                    return
            conn.close()

    def _kept(self, key: Origin) -> http.client.HTTPConnection | None:
        while True:
            with self._lock:
                idle = self._idle.get(key)
                if not idle:
                    return None
                conn = idle.pop()
            if conn.sock is not None and not _readable(conn.sock):
                return conn
            conn.close()  # the server closed it (or sent what nobody asked for)

    def _connect(
        self, key: Origin, timeouts: Mapping[str, float | None]
    ) -> http.client.HTTPConnection:
        scheme, host, port = key
        conn: http.client.HTTPConnection
        if scheme == "https":
            conn = http.client.HTTPSConnection(
                host, port, timeout=timeouts.get("connect"), context=self._tls
            )
        else:
            conn = http.client.HTTPConnection(host, port, timeout=timeouts.get("connect"))
        try:
            conn.connect()
        except TimeoutError as exc:
            conn.close()
            raise httpx.ConnectTimeout(str(exc) or "timed out connecting") from exc
        except OSError as exc:  # refused, unreachable, no such host, TLS refused
            conn.close()
            raise httpx.ConnectError(str(exc) or type(exc).__name__) from exc
        assert conn.sock is not None
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.sock.settimeout(timeouts.get("read"))
        return conn

    def close(self) -> None:
        with self._lock:
            kept = [conn for idle in self._idle.values() for conn in idle]
            self._idle.clear()
        for conn in kept:
            conn.close()


def _readable(sock: socket.socket) -> bool:
    """Whether a kept-alive socket has something to read: an EOF (the server closed it)."""
    try:
        ready, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(ready)
