"""The headers every answer of `serve` carries, so a page of ours cannot be framed, run a
script it did not ship, be sniffed into another type, or tell other sites where it was.

- `Content-Security-Policy`: scripts only from this server's own files (no inline script,
  no eval); no plugin, no `<base>`, forms only to this server, and `frame-ancestors 'none'`.
  Videos and images may come from https hosts (a row's video before it is downloaded).
  `/docs` (Swagger UI) initialises itself with an inline script: it alone may run one.
- `X-Frame-Options: DENY` (the same, for browsers without CSP 2), `X-Content-Type-Options:
  nosniff`, `Referrer-Policy: same-origin`.

A pure ASGI middleware: a few header lines added to the start of each answer.
"""

from __future__ import annotations

from typing import Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

_POLICY: Final = (
    "default-src 'self'; script-src 'self'{inline}; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: https:; media-src 'self' https:; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
_COMMON: Final = [
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
]
STRICT: Final = [(b"content-security-policy", _POLICY.format(inline="").encode()), *_COMMON]
DOCS: Final = [
    (b"content-security-policy", _POLICY.format(inline=" 'unsafe-inline'").encode()),
    *_COMMON,
]


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        added = DOCS if scope["path"] in ("/docs", "/docs/oauth2-redirect") else STRICT

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = [
                    *message.get("headers", []),
                    *(h for h in added if h[0] not in names),
                ]
            await send(message)

        await self.app(scope, receive, with_headers)
