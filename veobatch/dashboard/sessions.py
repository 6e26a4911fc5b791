"""Who is looking: a signed session cookie set by the login form from one of the API's tokens.

The cookie holds the kind of token (`act` or `look`), the first bytes of the token's sha256
(never the token), when it expires and a random nonce, signed with HMAC-SHA256 under a key
derived from all the tokens and a secret of this process: changing the tokens, or restarting
`serve`, ends every session. A logout ends its session here: the cookie is refused after it.
It is HttpOnly and SameSite=Strict. Every action (a logout too) carries a CSRF token, an HMAC
of the session, compared in constant time. Served
without tokens (`--no-auth`, loopback only), everyone on this machine may act, and the CSRF
token comes from a key made at start.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

COOKIE: Final = "veo_session"
LIFETIME: Final = 12 * 3600  # seconds a login lasts


@dataclass(frozen=True, slots=True)
class Viewer:
    can_act: bool  # False: a read-only token (it may look, not act)
    csrf: str  # what every form of this session carries


class Sessions:
    """Logins and their cookies for one app (its tokens)."""

    def __init__(self, tokens: Sequence[bytes], read_tokens: Sequence[bytes]) -> None:
        self.open = not tokens  # served without tokens: loopback only, no login
        every = sorted([*tokens, *read_tokens])
        # A key of this process's own beside the tokens: a restart ends every session, so the
        # sessions ended by a logout (kept in memory, `end`) stay ended.
        self._key = hashlib.sha256(
            b"veo-batch dashboard\0" + secrets.token_bytes(32) + b"\0".join(every)
        ).digest()
        self._ended: dict[str, int] = {}  # cookie signature -> when the cookie would expire
        self._kinds = {_fingerprint(t): "act" for t in tokens}
        self._kinds.update({_fingerprint(t): "look" for t in read_tokens})
        self._tokens = [(t, "act") for t in tokens] + [(t, "look") for t in read_tokens]

    def login(self, given: str, now: float | None = None) -> str | None:
        """The cookie value for token `given`, or None if it is not one of ours."""
        candidate = given.strip().encode()
        kind = None
        for token, which in self._tokens:  # every one compared, whatever matches
            if hmac.compare_digest(candidate, token):
                kind = which
        if kind is None:
            return None
        expires = int((now or time.time()) + LIFETIME)
        body = f"{kind}.{_fingerprint(candidate)}.{expires}.{secrets.token_hex(8)}"
        return f"{body}.{self._sign(body)}"

    def end(self, cookie: str | None, now: float | None = None) -> None:
        """The session of `cookie` ended here: the cookie is refused from now on, even if the
        browser (or someone who copied it) sends it again."""
        if self.viewer(cookie, now) is None or cookie is None:
            return
        moment = now or time.time()
        self._ended = {sig: until for sig, until in self._ended.items() if until >= moment}
        body, _, signature = cookie.rpartition(".")
        self._ended[signature] = int(body.split(".")[2])

    def viewer(self, cookie: str | None, now: float | None = None) -> Viewer | None:
        """Who the cookie says is looking, or None (no cookie, forged, expired, old token)."""
        if self.open:
            return Viewer(can_act=True, csrf=self._sign("local"))
        if not cookie or cookie.count(".") != 4:
            return None
        body, _, signature = cookie.rpartition(".")
        if not hmac.compare_digest(signature, self._sign(body)) or signature in self._ended:
            return None
        kind, fingerprint, expires, _nonce = body.split(".")
        if not expires.isdigit() or int(expires) < (now or time.time()):
            return None
        if self._kinds.get(fingerprint) != kind:
            return None
        return Viewer(can_act=kind == "act", csrf=self._sign(f"csrf:{cookie}"))

    def _sign(self, text: str) -> str:
        return hmac.new(self._key, text.encode(), hashlib.sha256).hexdigest()


def _fingerprint(token: bytes) -> str:
    return hashlib.sha256(token).hexdigest()[:16]
