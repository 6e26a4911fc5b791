"""Google's own Veo through the Gemini API: the `gemini` dialect (see docs/gemini-api.md for
what this relies on and where it comes from). Pure: no I/O.

    submit  POST {base}/v1beta/models/{model}:predictLongRunning   (x-goog-api-key: KEY)
            {"instances": [{"prompt", "image", "lastFrame" | "referenceImages"}],
             "parameters": {"sampleCount": 1, "aspectRatio", "enhancePrompt", ...}}
            → {"name": "models/{model}/operations/{id}"}: the task id
    poll    GET {base}/v1beta/{name} → no "done" while running; then "done": true with
            "error": {code, message, status}, or
            "response": {"generateVideoResponse": {"generatedSamples": [{"video": {"uri"}}]}},
            or, when a safety filter stopped it, "raiMediaFilteredCount" and
            "raiMediaFilteredReasons" without samples
    video   the uri is on the API's host and needs the key (the one download that carries it,
            and only to the account's own origin)

Images always go inline (Google takes bytes, not links): the first as `image`, a second as
`lastFrame` (frames models); for components models, 1 to 3 as `referenceImages` (asset). A
job field the Gemini API does not take, and an image that is a link, are refused when the
job is loaded (`refusal`), not sent to fail one by one.

Errors come as `{"error": {"code", "message", "status"}}`: 429 RESOURCE_EXHAUSTED is a rate
limit (`retryDelay` read when Google sends it), or, when its words say a daily quota, the
account's quota for the day; 400 INVALID_ARGUMENT is the row's, except a key Google refuses
(`API_KEY_INVALID`, "API key not valid"), which is the account's; 401 and 403
PERMISSION_DENIED are the key's; 404 NOT_FOUND (an unknown model) is the row's.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final
from urllib.parse import quote

from veobatch.errors import ImageError, ProviderError
from veobatch.provider.answers import parsed_json, text_field, video_url_problem
from veobatch.provider.dialect import Ask, Request, TaskState, filtered_reason
from veobatch.provider.relay import MAX_MESSAGE, error_message, retry_after_seconds
from veobatch.states import ErrorKind

API: Final = "/v1beta"
RUNNING: Final = "RUNNING"
# The job file's extra fields and the Gemini API's parameter for each.
PARAMETERS: Final[Mapping[str, str]] = {
    "negative_prompt": "negativePrompt",
    "duration_seconds": "durationSeconds",
    "resolution": "resolution",
    "person_generation": "personGeneration",
}
# Fields the Gemini API refuses, and why (Google's SDK refuses them there: Vertex AI only).
VERTEX_ONLY: Final = frozenset(
    {"seed", "generate_audio", "storage_uri", "fps", "output_gcs_uri", "compression_quality"}
)
MODEL_NAME: Final = re.compile(r"[a-z0-9][a-z0-9.\-]{0,79}")
# What an operation's name may be: it becomes a path, so nothing else is asked for.
_OPERATION: Final = re.compile(r"models/[a-z0-9][a-z0-9.\-]{0,79}/operations/[A-Za-z0-9_\-]{1,100}")
_DATA_URI: Final = re.compile(r"data:(image/[a-z0-9.+\-]{1,40});base64,", re.IGNORECASE)
_NOT_CHARGED: Final = re.compile(r"not (be )?(charged|billed)|no charge|won't be charged", re.I)
_CHARGED: Final = re.compile(r"\b(will be|was|were|are|is) (charged|billed)\b", re.IGNORECASE)
_DAILY: Final = re.compile(r"per ?day|daily|PerDay", re.IGNORECASE)
_BAD_KEY: Final = re.compile(r"API_KEY_INVALID|API key not valid|API key expired", re.IGNORECASE)


def is_references(model: str) -> bool:
    """Whether a job file's model takes reference images (components) rather than frames."""
    return "components" in model


class GeminiDialect:
    """Google's Gemini API for Veo (see the module's docstring)."""

    name = "gemini"
    image_mode: str | None = "data-uri"  # always inline: Google takes bytes
    probe_path = API + "/models?pageSize=1"

    def headers(self, key: str) -> dict[str, str]:
        return {"x-goog-api-key": key}

    def request(self, ask: Ask) -> Request:
        images = [_inline(entry) for entry in ask.images]
        instance: dict[str, Any] = {"prompt": ask.prompt}
        if is_references(ask.model):
            instance["referenceImages"] = [
                {"image": image, "referenceType": "asset"} for image in images
            ]
        elif images:
            instance["image"] = images[0]
            if len(images) > 1:
                instance["lastFrame"] = images[1]
        parameters: dict[str, Any] = {"sampleCount": 1}
        if ask.aspect_ratio is not None:
            parameters["aspectRatio"] = ask.aspect_ratio
        if ask.enhance_prompt is not None:
            parameters["enhancePrompt"] = ask.enhance_prompt
        for field, value in (ask.extra or {}).items():
            if field in PARAMETERS:  # (`refusal` kept every other one from here)
                parameters[PARAMETERS[field]] = value
        path = f"{API}/models/{quote(ask.api_model, safe='')}:predictLongRunning"
        return Request(path, {"instances": [instance], "parameters": parameters})

    def task_id(self, data: Any) -> tuple[str | None, str | None]:
        name = data.get("name") if isinstance(data, dict) else None
        if not isinstance(name, str) or not _OPERATION.fullmatch(name):
            return None, "no operation name models/MODEL/operations/ID"
        return name, None

    def poll_path(self, task_id: str) -> str:
        if not _OPERATION.fullmatch(task_id):
            raise ValueError(f"{task_id[:80]!r} is not an operation of Google's API")
        return f"{API}/{quote(task_id, safe='/')}"

    def task_state(self, task_id: str, data: Any) -> TaskState | str:
        if not isinstance(data, dict):
            return "not a JSON object"
        done = data.get("done")
        if done is not True:
            if done not in (None, False):
                return "done is neither true nor false"
            return TaskState(task_id, RUNNING, None, None, None)
        error = data.get("error")
        if error is not None:
            reason = _error_words(error)
            filtered = reason if filtered_reason(reason) else None
            return TaskState(task_id, "FAILURE", None, reason, None, filtered=filtered)
        response = data.get("response")
        answer = response.get("generateVideoResponse") if isinstance(response, dict) else None
        if not isinstance(answer, dict):
            return "done without a response.generateVideoResponse or an error"
        samples = answer.get("generatedSamples")
        video = _first_uri(samples)
        if video is not None:
            problem = video_url_problem(video)
            return TaskState(task_id, "SUCCESS", "100%", None, None if problem else video, problem)
        reasons = answer.get("raiMediaFilteredReasons")
        count = answer.get("raiMediaFilteredCount")
        if reasons or (type(count) is int and count > 0):
            said = _reasons(reasons) or f"{count} video(s) filtered, no reason given"
            charged = (
                False if _NOT_CHARGED.search(said) else True if _CHARGED.search(said) else None
            )
            filtered = f"Google's safety filters: {said}"[:MAX_MESSAGE]
            return TaskState(
                task_id, "FAILURE", None, filtered, None, filtered=filtered, charged=charged
            )
        return TaskState(
            task_id, "SUCCESS", "100%", None, None, "the operation is done without a video"
        )

    def classify(self, status: int, body: bytes, headers: Mapping[str, str]) -> ProviderError:
        code, message, details = _error_of(body)
        words = f"{code}: {message}" if code and message else message
        words = words or error_message(body, headers.get("content-type", ""))
        if status == 429:
            if _DAILY.search(words) or _DAILY.search(details):
                return ProviderError(ErrorKind.QUOTA, words, status)
            wait = retry_after_seconds(headers.get("retry-after")) or _retry_delay(details)
            return ProviderError(ErrorKind.RATE_LIMITED, words, status, wait)
        if status >= 500 or status == 408:
            return ProviderError(ErrorKind.SERVER, words, status)
        if status in (401, 403) or (status == 400 and _BAD_KEY.search(words + details)):
            return ProviderError(ErrorKind.AUTH, words, status)
        return ProviderError(ErrorKind.INVALID, words, status)

    def download_header(self, key: str) -> tuple[str, str] | None:
        return ("x-goog-api-key", key)

    def refusal(
        self, model: str, images: Sequence[object], extra: Mapping[str, Any] | None
    ) -> tuple[str, str] | None:
        for field in extra or {}:
            if field in PARAMETERS:
                continue
            if field in VERTEX_ONLY:
                why = "Google's Gemini API does not take it (Vertex AI only)"
            else:
                taken = ", ".join(PARAMETERS)
                why = f"Google's Gemini API does not take it (its extra fields: {taken})"
            return field, why
        for entry in images:
            if isinstance(entry, str) and entry.startswith(("http://", "https://")):
                return "images", (
                    "a link: Google's Gemini API takes image bytes, not links (give a local "
                    "file or a data: URI)"
                )
        return None


def _inline(entry: str) -> dict[str, str]:
    """An image as the Gemini API takes it, from a `data:` URI."""
    match = _DATA_URI.match(entry)
    if match is None:
        raise ImageError(
            "Google's Gemini API takes image bytes: a link or raw base64 cannot be sent to it",
            scope="row",
        )
    return {"bytesBase64Encoded": entry[match.end() :], "mimeType": match.group(1).lower()}


def _charged(reasons: str) -> bool | None:
    """Whether Google's reason says the filtered video is billed (None: it does not say)."""
    if _NOT_CHARGED.search(reasons):
        return False
    return True if _CHARGED.search(reasons) else None


def _first_uri(samples: Any) -> str | None:
    if not isinstance(samples, list) or not samples or not isinstance(samples[0], dict):
        return None
    video = samples[0].get("video")
    uri = video.get("uri") if isinstance(video, dict) else None
    return uri if isinstance(uri, str) and uri else None


def _reasons(reasons: Any) -> str:
    if not isinstance(reasons, list):
        return text_field(reasons, MAX_MESSAGE) or ""
    return "; ".join(filter(None, (text_field(r, MAX_MESSAGE) for r in reasons[:5])))


def _error_words(error: Any) -> str:
    if not isinstance(error, dict):
        return text_field(error, MAX_MESSAGE) or "the operation failed without a reason"
    status = text_field(error.get("status"), 40)
    message = text_field(error.get("message"), MAX_MESSAGE) or "no message"
    return f"{status}: {message}" if status else message


def _error_of(body: bytes) -> tuple[str, str, str]:
    """Google's error body: (status, message, the details as text); empty where missing."""
    try:
        data = parsed_json(body)
    except ValueError:
        return "", "", ""
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict):
        return "", "", ""
    status = text_field(error.get("status"), 40) or ""
    message = (text_field(error.get("message"), MAX_MESSAGE) or "").replace("\x00", "")
    details = json.dumps(error.get("details"), ensure_ascii=False)[:4000]
    return status, message, details


def _retry_delay(details: str) -> float | None:
    """A `RetryInfo` detail's `retryDelay` ("30s"), in seconds."""
    match = re.search(r'"retryDelay":\s*"(\d+(?:\.\d+)?)s"', details)
    return float(match.group(1)) if match else None


GEMINI: Final = GeminiDialect()
