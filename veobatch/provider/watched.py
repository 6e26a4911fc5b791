"""httpx's own transport with its sockets under the request's deadline (`deadline.CURRENT`):
for clients that stream (video downloads), where `StdlibTransport`, which reads answers
whole, does not fit.

Every read and write of a connection first hands its socket to the ticket of the request the
thread is making, so the watchdog can shut it down when the deadline passes or the request is
abandoned, whether the server is dripping the headers or the body. (A TLS handshake is bounded
by the read timeout of each of its reads only: httpcore's socket changes under it.)

Each connection is first checked by `destinations` (a link from a stranger must not reach this
machine's network), and made to the address that was checked.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

from veobatch.destinations import Destinations
from veobatch.provider.deadline import CURRENT, WATCHDOG


class _Stream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner
        self._sock = inner.get_extra_info("socket")

    def _watched(self) -> None:
        ticket = CURRENT.get()
        if ticket is not None and ticket.sock is not self._sock and self._sock is not None:
            WATCHDOG.attach(ticket, self._sock)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        self._watched()
        return self._inner.read(max_bytes, timeout)

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._watched()
        self._inner.write(buffer, timeout)

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        return _Stream(self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _Backend(httpcore.SyncBackend):
    def __init__(self, destinations: Destinations) -> None:
        self.destinations = destinations

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        # Every connection (each redirect hop's too) goes to the address that was checked.
        address = self.destinations.address(host, port)
        return _Stream(super().connect_tcp(address, port, timeout, local_address, socket_options))


def watched_transport(destinations: Destinations) -> httpx.HTTPTransport:
    """httpx's transport with its defaults (TLS verified with certifi's bundle, the same
    limits), over sockets the watchdog can reach, connecting only where `destinations`
    allows."""
    transport = httpx.HTTPTransport()
    limits = httpx.Limits()  # httpx's defaults, as HTTPTransport() has them
    # httpx (0.28) passes no network backend on to its pool: the pool is made again with one.
    transport._pool = httpcore.ConnectionPool(
        ssl_context=httpx.create_ssl_context(),
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=_Backend(destinations),
    )
    return transport
