"""What every request passes before any route reads its body: the token, the number of
requests in flight, and (without tokens, on a loopback address) the Host and the Origin.

ASGI middlewares, so a caller without a token, or one of too many at once, costs a few bytes
of headers and no parsing. Their answers have the API's one error shape.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Sequence
from typing import Final
from urllib.parse import urlsplit

from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

PUBLIC_PATHS: Final = frozenset(
    {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/healthz", "/readyz"}
)
PUBLIC_PREFIX: Final = "/docs/assets/"  # Swagger UI's own files
# The dashboard's pages: they check their own session cookie (a login form sets it).
PAGES: Final = ("/ui/", "/ui")
PAGE_PATHS: Final = frozenset({"/", "/ui", "/login", "/logout"})
LOOKING: Final = frozenset({"GET", "HEAD"})
LOOPBACK: Final = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
_BEARER: Final = re.compile(rb"^Bearer +(.+)$", re.IGNORECASE)


def problem(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail, "problems": []}, status_code=status, headers=headers)


def is_page(path: str) -> bool:
    return path in PAGE_PATHS or path.startswith(PAGES[0])


def any_matches(given: bytes, tokens: Sequence[bytes]) -> bool:
    """Whether `given` is one of `tokens`: every one compared in constant time, whatever
    matches, so the time says nothing about which (or how much of one) matched."""
    return bool(sum(hmac.compare_digest(given, token) for token in tokens))


class Guard:
    """With `tokens`: every route but the schema needs `Authorization: Bearer <one of
    them>` (compared in constant time, every token, whatever matches). Without: the API
    serves loopback callers only, so the Host must be a loopback name (no DNS rebinding),
    and a browser's Origin, when sent, must be that same host (no cross-site form posts).
    At most `max_in_flight` requests are served at once; one more is answered 429."""

    def __init__(
        self,
        app: ASGIApp,
        tokens: Sequence[bytes],
        max_in_flight: int,
        read_tokens: Sequence[bytes] = (),
    ) -> None:
        self.app, self.tokens, self.read_tokens = app, list(tokens), list(read_tokens)
        self.max_in_flight, self.in_flight = max_in_flight, 0  # one event loop: no lock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        if self.in_flight >= self.max_in_flight:
            busy = problem(429, f"{self.max_in_flight} requests are being served; try again")
            busy.headers["Retry-After"] = "1"
            await busy(scope, receive, send)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1

    def _refusal(self, scope: Scope) -> JSONResponse | None:
        headers = dict(scope["headers"])
        path = scope["path"]
        if self.tokens:
            if path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIX) or is_page(path):
                return None
            found = _BEARER.match(headers.get(b"authorization", b"").strip())
            given = found.group(1).strip() if found else b""
            if any_matches(given, self.tokens):
                return None
            if any_matches(given, self.read_tokens):
                if scope["method"] in LOOKING:
                    return None
                return problem(403, "this token can look, not act (VEO_API_READ_TOKENS)")
            return problem(401, "a valid bearer token is required", {"WWW-Authenticate": "Bearer"})
        host = headers.get(b"host", b"").decode("latin-1")
        name = urlsplit(f"//{host}").hostname or ""
        if name not in LOOPBACK and f"[{name}]" not in LOOPBACK:
            return problem(403, f"without tokens only loopback hosts are served, not {host!r}")
        origin = headers.get(b"origin")
        if origin is not None and urlsplit(origin.decode("latin-1")).netloc != host:
            return problem(403, "a cross-site request (its Origin is not this server)")
        return None
