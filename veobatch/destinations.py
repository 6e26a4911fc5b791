"""Where a link from a stranger may lead: the one check before every connection that a
relay's answer (a video URL, each redirect hop) or a webhook URL asks for.

A relay is a third party. A link it sends must not reach this machine's network: its
loopback ports, a private or link-local address (a cloud's metadata service at
169.254.169.254), shared (100.64.0.0/10), multicast, reserved or unspecified addresses, in
any spelling (IPv6, IPv4-mapped IPv6, decimal or hex forms, a trailing dot: the host is
resolved, and every address it resolves to is checked). The connection then goes to the
address that was checked, so a second lookup cannot answer otherwise (DNS rebinding).

Trusted without the check: the relay's own origin (the host and port of VEO_API_BASE), which
the user chose, so the mock provider and a self-hosted relay work as they are. Any other
address of this network needs `allow_private` (VEO_DOWNLOAD_ALLOW_PRIVATE for videos,
VEO_WEBHOOK_ALLOW_PRIVATE for webhooks).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from veobatch.errors import RefusedDestination

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def refusal(address: Address) -> str | None:
    """Why `address` is on this machine's network (None: it is a public one)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    checks = (
        ("loopback", address.is_loopback),
        ("link-local (metadata services live there)", address.is_link_local),
        ("multicast", address.is_multicast),
        ("unspecified", address.is_unspecified),
        ("private", address.is_private),
        ("reserved", address.is_reserved),
    )
    for name, found in checks:
        if found:
            return f"a {name} address"
    return None if address.is_global else "not a public address"


def origin(url: str) -> tuple[str, int] | None:
    """The (host, port) of an http(s) URL, as connections are made to it; None if none."""
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None
    return (parts.hostname.rstrip(".").lower(), port) if parts.hostname else None


@dataclass(frozen=True)
class Destinations:
    """The rule of one client: `trusted` origins (host, port) are reached as they are;
    others only at public addresses, unless `allow_private`."""

    trusted: frozenset[tuple[str, int]] = field(default_factory=frozenset)
    allow_private: bool = False
    setting: str = "VEO_DOWNLOAD_ALLOW_PRIVATE"  # the setting that allows private targets

    @classmethod
    def of(
        cls, trusted_urls: Iterable[str | None], allow_private: bool, setting: str
    ) -> Destinations:
        found = {origin(url) for url in trusted_urls if url}
        return cls(frozenset(o for o in found if o is not None), allow_private, setting)

    def address(self, host: str, port: int) -> str:
        """The address to connect to for `host`:`port`, each of its addresses checked; raises
        RefusedDestination (nothing connected) if any may not be reached."""
        name = host.strip("[]").rstrip(".").lower()
        try:
            found = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            raise RefusedDestination(f"cannot resolve the host {host!r}: {exc}") from None
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in found]
        if not addresses:
            raise RefusedDestination(f"the host {host!r} has no address")
        if (name, port) in self.trusted or self.allow_private:
            return str(addresses[0])
        for address in addresses:
            why = refusal(address)
            if why is not None:
                raise RefusedDestination(
                    f"refused: {host} is {address}, {why} of this network; links from a "
                    f"relay may not reach it ({self.setting}=true allows it)"
                )
        return str(addresses[0])
