"""The relay sites' dialect: `POST /v2/videos/generations`, `GET .../{task_id}` (see
docs/relay-api.md). Pure: no I/O.

Every failure becomes a `ProviderError` whose `kind` decides what happens to the row
(`classify`):

    rate_limited 429; `retry_after` is set when the provider sent Retry-After
    server       5xx, including a proxy's HTML 502, and 408: nothing was created, retry
    invalid      400 and other 4xx: the row itself is wrong
    auth         401, or 403 that is not about balance: the key is wrong
    quota        403 insufficient_user_quota (or quota wording): out of balance

A task that ends `SUCCESS` without a video URL, or `FAILURE` with a reason that speaks of
safety, policy or moderation, was stopped by a filter (`TaskState.filtered`): relays answer
both ways. Whether it was billed the relay does not say (the account's `filtered_charged`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Final
from urllib.parse import quote

from veobatch.errors import ProviderError
from veobatch.provider.answers import (
    parsed_json,
    task_id_problem,
    text_field,
    video_url_problem,
)
from veobatch.provider.dialect import Ask, Request, TaskState, filtered_reason
from veobatch.states import ErrorKind

SUBMIT_PATH: Final = "/v2/videos/generations"
MAX_MESSAGE: Final = 500
_MAX_FIELD: Final = 100  # a progress text
_QUOTA_WORDS: Final = re.compile(r"quota|balance|余额|额度|insufficient", re.IGNORECASE)
_STATUS: Final = re.compile(r"[A-Za-z_]{1,40}")  # SUCCESS, IN_PROGRESS, ...
_NO_VIDEO: Final = "the provider reported SUCCESS without a video (data.output is empty)"


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
    `client._cleaner`; JSON may carry one escaped, past the cleaning of the raw body)."""
    return _words(body, content_type).replace("\x00", "")


def _words(body: bytes, content_type: str) -> str:
    text = body.decode("utf-8", errors="replace").strip()
    try:
        data = parsed_json(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])[:MAX_MESSAGE]
        for key in ("message", "msg", "error", "detail"):
            if data.get(key):
                return str(data[key])[:MAX_MESSAGE]
    if "html" in content_type or text.lstrip().lower().startswith(("<!doctype", "<html")):
        title = re.search(r"<title>(.*?)</title>", text, re.IGNORECASE | re.DOTALL)
        return f"an HTML page ({title.group(1).strip() if title else 'no title'})"
    return text[:MAX_MESSAGE] or "(empty body)"


def _error_code(body: bytes) -> str:
    try:
        data = parsed_json(body)
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
    if status >= 500 or status == 408:
        return ProviderError(ErrorKind.SERVER, message, status)
    if status == 401:
        return ProviderError(ErrorKind.AUTH, message, status)
    if status == 403:
        quota = "quota" in _error_code(body) or _QUOTA_WORDS.search(message) is not None
        return ProviderError(ErrorKind.QUOTA if quota else ErrorKind.AUTH, message, status)
    return ProviderError(ErrorKind.INVALID, message, status)


class RelayDialect:
    """The relay sites' API (see the module's docstring)."""

    name = "relay"
    image_mode: str | None = None  # links, data: URIs or raw base64: the account says
    probe_path = SUBMIT_PATH + "/veo-batch-doctor-probe"

    def headers(self, key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}

    def request(self, ask: Ask) -> Request:
        body = job_payload(
            ask.prompt, ask.api_model, ask.images, ask.aspect_ratio, ask.enhance_prompt, ask.extra
        )
        return Request(SUBMIT_PATH, body)

    def task_id(self, data: Any) -> tuple[str | None, str | None]:
        if not isinstance(data, dict):
            return None, "not a JSON object"
        task_id = data.get("task_id")
        problem = task_id_problem(task_id)
        return (None, problem) if problem is not None else (task_id, None)

    def poll_path(self, task_id: str) -> str:
        return f"{SUBMIT_PATH}/{quote(task_id, safe='')}"  # (ids may contain ':')

    def task_state(self, task_id: str, data: Any) -> TaskState | str:
        status = data.get("status") if isinstance(data, dict) else None
        status = status.replace("\x00", "") if isinstance(status, str) else None
        if status is None or not _STATUS.fullmatch(status):
            return "no usable status"
        status = status.upper()
        output = data.get("data")
        video = output.get("output") if isinstance(output, dict) else None
        problem = video_url_problem(video) if video not in (None, "") else None
        reason = text_field(data.get("fail_reason"), MAX_MESSAGE)
        filtered = None
        if status == "SUCCESS" and video in (None, ""):
            filtered = reason or _NO_VIDEO
        elif status == "FAILURE" and filtered_reason(reason):
            filtered = reason
        return TaskState(
            task_id=task_id,
            status=status,
            progress=text_field(data.get("progress"), _MAX_FIELD),
            fail_reason=reason,
            video_url=video if video and problem is None else None,
            video_problem=problem,
            filtered=filtered,
        )

    def classify(self, status: int, body: bytes, headers: Mapping[str, str]) -> ProviderError:
        return classify(status, body, headers)

    def download_header(self, key: str) -> tuple[str, str] | None:
        return None  # a relay's video links are public: they never carry the key

    def refusal(
        self, model: str, images: Sequence[object], extra: Mapping[str, Any] | None
    ) -> tuple[str, str] | None:
        return None  # a relay takes what the job file may hold


RELAY: Final = RelayDialect()
