"""The client of one account's API: submit a job, query a task, and say exactly what went
wrong, whatever the account's dialect (`dialect.py`: the relay's or Google's).

See docs/relay-api.md and docs/gemini-api.md. Every failure becomes a `ProviderError` whose
`kind` decides what happens to the row; the dialect sorts an HTTP error into the kinds
(`rate_limited`, `server`, `invalid`, `auth`, `quota`), and this client the rest:

    network      nothing was sent (connection refused, connect timeout): safe to retry
    ambiguous    the request may have arrived (read timeout, connection dropped after sending,
                 its whole deadline passed): a task may exist and be billed, so the row is
                 never resent on its own
    bad_answer   an answer that cannot be used: to a POST, a 200 without a usable task id (a
                 task may exist: the row is in doubt); to a poll, no usable state

Each request must end within its whole deadline, VEO_CONNECT_TIMEOUT + VEO_READ_TIMEOUT
(connect, send, the answer's headers and body), however slowly the relay sends. A poll given
up because the process stops (`abandon`) raises `Abandoned`, not a `ProviderError`.

The provider's message is kept as it came (Chinese included); the API key is never part of a
message, even if the provider echoes it.
"""

from __future__ import annotations

import dataclasses
import http.cookiejar
import json
import os
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import httpx

from veobatch.errors import ProviderError
from veobatch.metrics import count_request
from veobatch.provider.answers import parsed_json
from veobatch.provider.deadline import WATCHDOG
from veobatch.provider.dialect import Dialect, Request, TaskState
from veobatch.provider.redact import Redactor
from veobatch.provider.relay import RELAY
from veobatch.provider.transport import (
    MAX_ANSWER,
    Answer,
    StdlibTransport,
    origin_of,
    too_long,
    transport_for,
    whole,
)
from veobatch.settings import Secret
from veobatch.states import ErrorKind
from veobatch.visible import shown


class ProviderClient:
    """One HTTP client per process, reused for every request (keep-alive, one pool). A process
    forked from the one that made it opens connections of its own on its first request (the
    ones it inherited are its parent's)."""

    def __init__(
        self,
        base_url: str,
        api_key: Secret,
        *,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
        account: str = "default",
        dialect: Dialect = RELAY,
    ) -> None:
        self.account = account  # the relay account it speaks for (its metrics' label)
        self.dialect = dialect
        self._redact = _cleaner(Redactor(api_key.reveal()))  # every text from the relay
        self._open = partial(
            httpx.Client,
            base_url=base_url.rstrip("/"),
            headers=dialect.headers(api_key.reveal()),
            timeout=httpx.Timeout(read_timeout, connect=connect_timeout),
            cookies=_NoCookies(),  # a relay's API keeps no session: nothing to remember
        )
        self._transport = transport  # a caller's own (tests); else one per process
        self._pid = os.getpid()
        self._reopening = threading.Lock()
        self._direct: StdlibTransport | None = None  # set by `_client`
        self._http = self._client()
        self._urls: dict[str, httpx.URL] = {}  # by path: each submission path is one of few
        # The provider's requests go straight to the standard library's transport where it
        # is the one in use (no proxy; see `transport.py`), past httpx's Client.send.
        self._origin = origin_of(self._http.base_url)
        self._timeouts = {"connect": connect_timeout, "read": read_timeout}
        self._headers = {
            **dialect.headers(api_key.reveal()),
            "Accept": "application/json",
            "User-Agent": "veo-batch",
        }

    @property
    def base_url(self) -> str:
        """The relay's base URL (its origin is where its videos may be, whatever its address)."""
        return str(self._open.keywords["base_url"])

    def _client(self) -> httpx.Client:
        """An httpx client over the caller's transport, else this process's own (which sets
        `_direct`: the standard library's, where no proxy applies)."""
        base = str(self._open.keywords["base_url"])
        transport = self._transport or transport_for(base)
        if isinstance(transport, StdlibTransport):
            self._direct = transport
        else:
            self._direct = None
        return self._open(transport=transport)

    def _reopen(self) -> None:
        """In a forked process: a client of its own (once, whichever thread comes first)."""
        with self._reopening:
            if os.getpid() != self._pid:
                self._pid, self._http = os.getpid(), self._client()

    def close(self) -> None:
        if os.getpid() == self._pid:  # (a forked child's copy is its parent's to close)
            self._http.close()

    def __enter__(self) -> ProviderClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def submit(self, request: Request) -> str:
        """POST one job (its request as the dialect made it); its task id. Raises
        ProviderError (the kinds: see the module's docstring)."""
        response = self._send("POST", request.path, json=request.body, may_have_arrived=True)
        try:
            data = self._json(response)
        except ProviderError as exc:  # accepted: a task may exist that we cannot name
            raise ProviderError(
                ErrorKind.BAD_ANSWER, f"200 without a usable task id: {exc.message}", 200
            ) from None
        task_id, problem = self.dialect.task_id(data)
        if task_id is None:
            raise ProviderError(
                ErrorKind.BAD_ANSWER,
                f"200 without a usable task id ({problem}): {shown(self._redact(_text(response)))}",
                response.status_code,
            )
        return self._redact(task_id)

    def query(self, task_id: str) -> TaskState:
        """GET one task's state."""
        try:
            path = self.dialect.poll_path(task_id)
        except ValueError as exc:  # (an id this dialect never gives: not asked anywhere)
            raise ProviderError(ErrorKind.BAD_ANSWER, self._redact(str(exc))) from None
        response = self._send("GET", path)
        state = self.dialect.task_state(task_id, self._json(response))
        if isinstance(state, str):
            raise ProviderError(
                ErrorKind.BAD_ANSWER,
                f"{self._redact(state)} in {shown(self._redact(_text(response)))}",
                response.status_code,
            )
        return self._cleaned(state)

    def _cleaned(self, state: TaskState) -> TaskState:
        """`state` with every text the relay sent cleaned (see `_cleaner`)."""
        clean = self._redact
        texts = ("status", "progress", "fail_reason", "video_url", "video_problem", "filtered")
        changes: dict[str, Any] = {}
        for name in texts:
            value = getattr(state, name)
            if value:
                changes[name] = clean(value)
        return dataclasses.replace(state, **changes)

    def _send(
        self, method: str, path: str, *, json: Any = None, may_have_arrived: bool = False
    ) -> Answer:
        kind = "submit" if method == "POST" else "poll"
        started = time.perf_counter()
        try:
            if os.getpid() != self._pid:
                self._reopen()
            response = self._exchange(method, path, json)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            failed = ProviderError(ErrorKind.NETWORK, self._redact(_describe(exc)))
        except httpx.TransportError as exc:  # read timeout, dropped connection, ...
            kind_of = ErrorKind.AMBIGUOUS if may_have_arrived else ErrorKind.NETWORK
            failed = ProviderError(kind_of, self._redact(_describe(exc)))
        else:
            if response.status_code == 200:
                count_request(kind, time.perf_counter() - started, 200, account=self.account)
                return response
            # Redacted before anything is cut from it.
            body = self._redact(response.content.decode("utf-8", errors="replace")).encode()
            failed = self.dialect.classify(response.status_code, body, response.headers())
        count_request(
            kind, time.perf_counter() - started, failed.http_status, failed.kind, self.account
        )
        raise failed

    def _exchange(self, method: str, path: str, payload: Any) -> Answer:
        """The request sent, its answer read whole. Its URL and headers are this client's,
        built once, rather than by `Client.request`, which parses and merges the URL, cookies
        and headers again for each of thousands of identical requests."""
        url = self._urls.get(path) if method == "POST" else None
        if url is None:
            url = self._url(path)
            if method == "POST" and len(self._urls) < 64:
                self._urls[path] = url
        headers = self._headers
        content = None
        if payload is not None:
            text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
            content = text.encode()
            headers = {**headers, "Content-Type": "application/json"}
        direct = self._direct
        if direct is not None:
            where = url.raw_path.decode("ascii")
            return direct.exchange(method, self._origin, where, headers, content, self._timeouts)
        return self._through_httpx(httpx.Request(method, url, headers=headers, content=content))

    def _through_httpx(self, request: httpx.Request) -> Answer:
        """A request sent by the httpx client (a proxy applies, or a caller's transport):
        its whole deadline is checked between the chunks of the answer (its socket is the
        transport's own, out of the watchdog's reach)."""
        ticket = WATCHDOG.start(whole(self._timeouts), self, request.method == "GET")
        try:
            response = self._http.send(request, stream=True)
            try:
                chunks, size = [], 0
                for chunk in response.iter_bytes():
                    ticket.check()
                    chunks.append(chunk)
                    size += len(chunk)
                    if size > MAX_ANSWER:  # no more: a relay may send gigabytes
                        raise httpx.ReadError(too_long())
                ticket.check()
            finally:
                response.close()
        finally:
            WATCHDOG.stop(ticket)
        return Answer(response.status_code, response.headers.multi_items(), b"".join(chunks))

    @property
    def deadline(self) -> float | None:
        """Seconds a request may take in all: the connect and read timeouts together."""
        return whole(self._timeouts)

    def abandon(self) -> None:
        """Give up the polls in flight at once (they raise `Abandoned`), and every poll asked
        through this client from now on: the process is stopping. Submissions already sent
        are left to finish, within their deadline."""
        WATCHDOG.abandon(self)
        if self._direct is not None:
            self._direct.abandon()

    def _url(self, path: str) -> httpx.URL:
        """`path` below the base URL, its own path kept (`https://relay/api` + `/v2/...`); a
        query (`?pageSize=1`) is kept as given."""
        base = self._http.base_url  # its path ends with "/"
        return base.copy_with(raw_path=base.raw_path + path.lstrip("/").encode("ascii"))

    def _json(self, response: Answer) -> Any:
        try:
            return parsed_json(response.content)
        except ValueError:
            message = f"not JSON: {self._redact(_text(response))[:200]!r}"
            raise ProviderError(ErrorKind.BAD_ANSWER, message, response.status_code) from None


class _NoCookies(http.cookiejar.CookieJar):
    """A jar that keeps nothing a response sets."""

    def extract_cookies(self, response: Any, request: Any) -> None:
        return None


def _cleaner(redact: Redactor) -> Callable[[str], str]:
    """What a text from the relay becomes before anything keeps it: the key masked, and no
    NUL character (no PostgreSQL text column takes one: the row's outcome could not be
    recorded)."""

    def clean(text: str) -> str:
        return redact(text.replace("\x00", ""))

    return clean


def _text(response: Answer) -> str:
    return response.content.decode("utf-8", errors="replace")


def _describe(exc: httpx.TransportError) -> str:
    name = type(exc).__name__
    detail = str(exc)
    return f"{name}: {detail}" if detail else name
