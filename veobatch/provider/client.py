"""The Veo relay API: submit a job, query a task, and say exactly what went wrong.

See docs/relay-api.md. Every failure becomes a `ProviderError` whose `kind` decides what happens to
the row (see `classify`):

    network      nothing was sent (connection refused, connect timeout): safe to retry
    ambiguous    the request may have arrived (read timeout, connection dropped after sending,
                 its whole deadline passed): a task may exist and be billed, so the row is
                 never resent on its own
    rate_limited 429; `retry_after` is set when the provider sent Retry-After
    server       5xx, including a proxy's HTML 502: nothing was created, retry
    invalid      400 and other 4xx: the row itself is wrong
    auth         401, or 403 that is not about balance: the key is wrong
    quota        403 insufficient_user_quota (or quota wording): out of balance
    bad_answer   an answer that cannot be used (`answers`): to a POST, a 200 without a usable
                 task id (a task may exist: the row is in doubt); to a poll, no usable status

Each request must end within its whole deadline, VEO_CONNECT_TIMEOUT + VEO_READ_TIMEOUT
(connect, send, the answer's headers and body), however slowly the relay sends. A poll given
up because the process stops (`abandon`) raises `Abandoned`, not a `ProviderError`.

The provider's message is kept as it came (Chinese included); the API key is never part of a
message, even if the provider echoes it.
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, Final
from urllib.parse import quote

import httpx

from veobatch.errors import ProviderError
from veobatch.metrics import count_request
from veobatch.provider.answers import task_id_problem, text_field, video_url_problem
from veobatch.provider.deadline import WATCHDOG
from veobatch.provider.redact import Redactor
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

SUBMIT_PATH: Final = "/v2/videos/generations"
FINISHED: Final = frozenset({"SUCCESS", "FAILURE"})
_QUOTA_WORDS: Final = re.compile(r"quota|balance|余额|额度|insufficient", re.IGNORECASE)
_MAX_MESSAGE: Final = 500
_MAX_FIELD: Final = 100  # a progress text
_STATUS: Final = re.compile(r"[A-Za-z_]{1,40}")  # SUCCESS, IN_PROGRESS, ...


@dataclass(frozen=True, slots=True)
class TaskState:
    """What the provider says of one task (GET /v2/videos/generations/{task_id})."""

    task_id: str
    status: str  # NOT_START, SUBMITTED, QUEUED, IN_PROGRESS, SUCCESS, FAILURE, UNKNOWN, ...
    progress: str | None
    fail_reason: str | None
    video_url: str | None
    video_problem: str | None = None  # why the video URL given could not be used

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @property
    def succeeded(self) -> bool:
        return self.status == "SUCCESS"


def job_payload(
    prompt: str,
    model: str,
    images: list[str],
    aspect_ratio: str | None = None,
    enhance_prompt: bool | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON body of a submission; extra provider fields are passed through untouched."""
    body: dict[str, Any] = dict(extra or {})
    body.update(prompt=prompt, model=model, images=images)
    if aspect_ratio is not None:
        body["aspect_ratio"] = aspect_ratio
    if enhance_prompt is not None:
        body["enhance_prompt"] = enhance_prompt
    return body


def error_message(body: bytes, content_type: str = "") -> str:
    """The provider's own words from an error body, whatever shape it came in (no NUL: see
    `_cleaner`; JSON may carry one escaped, past the cleaning of the raw body)."""
    return _words(body, content_type).replace("\x00", "")


def _words(body: bytes, content_type: str) -> str:
    text = body.decode("utf-8", errors="replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])[:_MAX_MESSAGE]
        for key in ("message", "msg", "error", "detail"):
            if data.get(key):
                return str(data[key])[:_MAX_MESSAGE]
    if "html" in content_type or text.lstrip().lower().startswith(("<!doctype", "<html")):
        title = re.search(r"<title>(.*?)</title>", text, re.IGNORECASE | re.DOTALL)
        return f"an HTML page ({title.group(1).strip() if title else 'no title'})"
    return text[:_MAX_MESSAGE] or "(empty body)"


def _error_code(body: bytes) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        return ""
    if not isinstance(data, dict):
        return ""
    error = data.get("error")
    code = error.get("code") if isinstance(error, dict) else data.get("code")
    return str(code or "")


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After in seconds (an HTTP date is not worth supporting: relays send none at all)."""
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        return None


def classify(status: int, body: bytes, headers: Mapping[str, str]) -> ProviderError:
    """The error for an HTTP answer that is not a success."""
    message = error_message(body, headers.get("content-type", ""))
    if status == 429:
        retry_after = retry_after_seconds(headers.get("retry-after"))
        return ProviderError(ErrorKind.RATE_LIMITED, message, status, retry_after)
    if status >= 500:
        return ProviderError(ErrorKind.SERVER, message, status)
    if status == 401:
        return ProviderError(ErrorKind.AUTH, message, status)
    if status == 403:
        quota = "quota" in _error_code(body) or _QUOTA_WORDS.search(message) is not None
        return ProviderError(ErrorKind.QUOTA if quota else ErrorKind.AUTH, message, status)
    if status == 408:
        return ProviderError(ErrorKind.SERVER, message, status)
    return ProviderError(ErrorKind.INVALID, message, status)


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
    ) -> None:
        self.account = account  # the relay account it speaks for (its metrics' label)
        self._redact = _cleaner(Redactor(api_key.reveal()))  # every text from the relay
        self._open = partial(
            httpx.Client,
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {api_key.reveal()}"},
            timeout=httpx.Timeout(read_timeout, connect=connect_timeout),
            cookies=_NoCookies(),  # a relay's API keeps no session: nothing to remember
        )
        self._transport = transport  # a caller's own (tests); else one per process
        self._pid = os.getpid()
        self._reopening = threading.Lock()
        self._direct: StdlibTransport | None = None  # set by `_client`
        self._http = self._client()
        self._submit_url = self._url(SUBMIT_PATH)
        # The provider's requests go straight to the standard library's transport where it
        # is the one in use (no proxy; see `transport.py`), past httpx's Client.send.
        self._origin = origin_of(self._http.base_url)
        self._timeouts = {"connect": connect_timeout, "read": read_timeout}
        self._headers = {
            "Authorization": f"Bearer {api_key.reveal()}",
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

    def submit(self, payload: Mapping[str, Any]) -> str:
        """POST one job; its task_id. Raises ProviderError (see `classify` for the kinds)."""
        response = self._send("POST", SUBMIT_PATH, json=payload, may_have_arrived=True)
        try:
            data = self._json(response)
        except ProviderError as exc:  # accepted: a task may exist that we cannot name
            raise ProviderError(
                ErrorKind.BAD_ANSWER, f"200 without a usable task id: {exc.message}", 200
            ) from None
        task_id = data.get("task_id") if isinstance(data, dict) else None
        problem = task_id_problem(task_id) if isinstance(data, dict) else "not a JSON object"
        if problem is not None:
            raise ProviderError(
                ErrorKind.BAD_ANSWER,
                f"200 without a usable task id ({problem}): {shown(self._redact(_text(response)))}",
                response.status_code,
            )
        return self._redact(str(task_id))

    def query(self, task_id: str) -> TaskState:
        """GET one task's state (the id is quoted: ids may contain ':')."""
        response = self._send("GET", f"{SUBMIT_PATH}/{quote(task_id, safe='')}")
        data = self._json(response)
        status = data.get("status") if isinstance(data, dict) else None
        status = self._redact(status) if isinstance(status, str) else None
        if status is None or not _STATUS.fullmatch(status):
            raise ProviderError(
                ErrorKind.BAD_ANSWER,
                f"no usable status in {shown(self._redact(_text(response)))}",
                response.status_code,
            )
        output = data.get("data")
        video = output.get("output") if isinstance(output, dict) else None
        problem = video_url_problem(video) if video not in (None, "") else None
        clean = self._redact
        progress = text_field(data.get("progress"), _MAX_FIELD)
        reason = text_field(data.get("fail_reason"), _MAX_MESSAGE)
        return TaskState(
            task_id=task_id,
            status=status.upper(),
            progress=clean(progress) if progress else None,
            fail_reason=clean(reason) if reason else None,
            video_url=clean(video) if video and problem is None else None,
            video_problem=clean(problem) if problem else None,
        )

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
            failed = classify(response.status_code, body, response.headers())
        count_request(
            kind, time.perf_counter() - started, failed.http_status, failed.kind, self.account
        )
        raise failed

    def _exchange(self, method: str, path: str, payload: Any) -> Answer:
        """The request sent, its answer read whole. Its URL and headers are this client's,
        built once, rather than by `Client.request`, which parses and merges the URL, cookies
        and headers again for each of thousands of identical requests."""
        url = self._submit_url if path == SUBMIT_PATH else self._url(path)
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
        """`path` below the base URL, its own path kept (`https://relay/api` + `/v2/...`)."""
        base = self._http.base_url  # its path ends with "/"
        return base.copy_with(raw_path=base.raw_path + path.lstrip("/").encode("ascii"))

    def _json(self, response: Answer) -> Any:
        try:
            return json.loads(response.content)
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
