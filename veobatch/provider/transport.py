"""An httpx transport over the standard library's `http.client`, for the provider's requests.

httpx's own transport (httpcore and h11, pure Python) spends about 0.45 ms of CPU on a small
request and its answer; `http.client` about 0.15 ms. The provider's POSTs and GETs are the
engine's hottest path (one each per row, thousands a minute), so they go through this; every
other client (video hosts, webhooks, the doctor) keeps httpx's own. It keeps what the engine
relies on:

- the same exceptions as httpx's transport, so a failure is classified the same way: nothing
  sent (`ConnectError`, `ConnectTimeout`, `PoolTimeout`) versus a request that may have arrived
  (`WriteError`, `ReadTimeout`, `ReadError`, `RemoteProtocolError`);
- the connect and read timeouts of the request, and a whole deadline of both together for
  connecting, sending and reading the answer (headers and body): a relay that drips its
  answer a byte at a time cannot hold a request longer (`deadline.WATCHDOG` shuts down its
  socket; it ends with `ReadTimeout`, or `ConnectTimeout` if it passed during the TLS
  handshake, before anything was sent). `abandon()` ends the GETs in flight at once;
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
import ssl
import threading
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Final, NamedTuple, TypeAlias

import httpx

from veobatch.provider.deadline import DONE, WATCHDOG, Ticket

MAX_IDLE: Final = 32  # kept-alive connections per host
MAX_ANSWER: Final = 1024 * 1024  # bytes of an answer read: a relay's JSON is a few hundred

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
        """Send one request and read its answer whole, within `whole(timeouts)`. `headers`
        may leave out Host, Content-Length and Accept-Encoding (then: the origin's, the
        body's, identity)."""
        ticket = WATCHDOG.start(whole(timeouts), self, method == "GET")
        try:
            with self._connection(origin, timeouts, ticket) as conn:
                answer, content = _converse(conn, method, path, headers, body)
        except httpx.TransportError as exc:
            WATCHDOG.stop(ticket)
            failure = ticket.failure()
            if failure is None or isinstance(exc, httpx.ConnectTimeout):
                raise  # (a deadline passed in the TLS handshake: nothing was sent)
            raise failure from exc
        finally:
            WATCHDOG.stop(ticket)
        failure = ticket.failure()  # (its socket was shut down as the answer ended)
        if failure is not None:
            raise failure
        return Answer(answer.status, answer.getheaders(), content)

    def abandon(self) -> None:
        """End this transport's GETs in flight at once, and fail its later ones: the process
        is stopping (a POST already sent is left to finish)."""
        WATCHDOG.abandon(self)

    @contextmanager
    def _connection(
        self, key: Origin, timeouts: Mapping[str, float | None], ticket: Ticket
    ) -> Iterator[http.client.HTTPConnection]:
        """A kept connection still open, or a new one; kept again afterwards if still open
        and the request ended in time. A failure to connect raises ConnectError or
        ConnectTimeout: nothing was sent."""
        conn = self._kept(key)
        if conn is None:
            conn = self._connect(key, timeouts, ticket)
        elif conn.sock is not None:
            conn.sock.settimeout(timeouts.get("read"))
            WATCHDOG.attach(ticket, conn.sock)
        try:
            yield conn
        except BaseException:
            conn.close()
            raise
        if WATCHDOG.stop(ticket) != DONE:  # its socket was shut down
            conn.close()
            return
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
        self, key: Origin, timeouts: Mapping[str, float | None], ticket: Ticket
    ) -> http.client.HTTPConnection:
        """A new connection (TLS set up, under the request's deadline)."""
        scheme, host, port = key
        connect = timeouts.get("connect")
        conn: http.client.HTTPConnection
        try:
            sock = socket.create_connection((host, port), connect)
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(str(exc) or "timed out connecting") from exc
        except OSError as exc:  # refused, unreachable, no such host
            raise httpx.ConnectError(str(exc) or type(exc).__name__) from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if scheme == "https":
            conn = http.client.HTTPSConnection(host, port, timeout=connect, context=self._tls)
            sock = self._tls.wrap_socket(sock, server_hostname=host, do_handshake_on_connect=False)
        else:
            conn = http.client.HTTPConnection(host, port, timeout=connect)
        conn.sock = sock  # (so `request` does not connect again)
        WATCHDOG.attach(ticket, sock)
        if isinstance(sock, ssl.SSLSocket):
            try:
                sock.do_handshake()
            except OSError as exc:  # TLS refused, or its deadline passed
                conn.close()
                failure = ticket.failure()
                if isinstance(failure, httpx.ReadTimeout):
                    raise httpx.ConnectTimeout(f"in the TLS handshake, {failure}") from exc
                if isinstance(exc, TimeoutError):
                    raise httpx.ConnectTimeout(str(exc) or "timed out in TLS") from exc
                raise httpx.ConnectError(str(exc) or type(exc).__name__) from exc
        sock.settimeout(timeouts.get("read"))
        return conn

    def close(self) -> None:
        with self._lock:
            kept = [conn for idle in self._idle.values() for conn in idle]
            self._idle.clear()
        for conn in kept:
            conn.close()


def whole(timeouts: Mapping[str, float | None]) -> float | None:
    """A request's whole deadline: its connect and read timeouts together (None if either
    is None)."""
    connect, read = timeouts.get("connect"), timeouts.get("read")
    return None if connect is None or read is None else connect + read


def _converse(
    conn: http.client.HTTPConnection,
    method: str,
    path: str,
    headers: Mapping[str, str],
    body: bytes | None,
) -> tuple[http.client.HTTPResponse, bytes]:
    """The request written, its answer read whole; failures as httpx's transport has them."""
    try:
        conn.request(method, path, body, dict(headers))
    except TimeoutError as exc:
        raise httpx.WriteTimeout(str(exc) or "timed out writing") from exc
    except OSError as exc:
        raise httpx.WriteError(str(exc) or type(exc).__name__) from exc
    try:
        answer = conn.getresponse()
        content = answer.read(MAX_ANSWER + 1)  # no more: a relay may send gigabytes
        if len(content) > MAX_ANSWER:
            conn.close()  # the rest is never read
            raise httpx.ReadError(too_long())
    except TimeoutError as exc:
        raise httpx.ReadTimeout(str(exc) or "timed out reading") from exc
    except (http.client.HTTPException, ConnectionError) as exc:
        raise httpx.RemoteProtocolError(str(exc) or type(exc).__name__) from exc
    except OSError as exc:
        raise httpx.ReadError(str(exc) or type(exc).__name__) from exc
    if answer.will_close:
        conn.close()
    return answer, content


def too_long() -> str:
    """What an answer past MAX_ANSWER is told as."""
    return f"the answer is over {MAX_ANSWER // 1024 // 1024} MiB: not read on"


def _readable(sock: socket.socket) -> bool:
    """Whether a kept-alive socket has something to read: an EOF (the server closed it)."""
    try:
        ready, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(ready)
