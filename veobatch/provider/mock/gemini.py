"""The mock's Gemini API: Google's own Veo routes under `/v1beta/`, on the same server, tasks,
limits and faults as the relay's routes, in Google's shapes (see docs/gemini-api.md).

    POST /v1beta/models/{model}:predictLongRunning   → {"name": "models/{model}/operations/{id}"}
    GET  /v1beta/models/{model}/operations/{id}      → running (no "done"), then "done": true
                                                        with a response or an error
    GET  /v1beta/files/{id}:download?alt=media       → the video (only with the key)
    GET  /v1beta/models?pageSize=1                   → one model (the doctor's probe)

The key comes in `x-goog-api-key` or `?key=`. Every error is `{"error": {"code", "message",
"status"}}`: a wrong key 400 API_KEY_INVALID, the request limit 429 with a RetryInfo of 1 s,
a spent balance 429 with a daily quota's words, an unknown model 404, a field Google does not
know 400 "Unknown name". Markers in the prompt: `[mock:status=N]` (that answer),
`[mock:fail]` (the operation ends with an error), `[mock:filtered]` and
`[mock:filtered-charged]` (safety filters stopped it; the first reason says it is not billed,
the second says nothing of it), `[mock:video-at=URL]` (its video is at another origin),
`[mock:video-redirect=URL]` (its download answers 302 to the same path at URL),
`[mock:cut-video]` (the first download stops halfway).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import re
import time
import uuid
from collections.abc import Iterator, Mapping
from email.message import Message
from typing import Any, Final, NamedTuple, Protocol
from urllib.parse import parse_qs, parse_qsl, unquote, urlencode, urlsplit

from veobatch.images.formats import SNIFF_BYTES, sniff
from veobatch.provider.mock.state import MARKER, MockState, Task


class Served(Protocol):
    """The server under the handler: what it remembers."""

    state: MockState


class Handler(Protocol):
    """What these routes use of the mock's request handler (`handler.Handler`): the request,
    its body, and the ways to answer."""

    path: str
    headers: Message

    @property
    def server(self) -> Served: ...

    def _reply(self, status: int, body: dict[str, Any] | str) -> None: ...

    def _body(self) -> Any: ...

    def _video(self, task_id: str) -> None: ...

    def send_response(self, code: int, message: str | None = None) -> None: ...

    def send_header(self, keyword: str, value: str) -> None: ...

    def end_headers(self) -> None: ...


API: Final = "/v1beta/"
MODELS: Final = (
    "veo-3.1-generate-preview",
    "veo-3.1-fast-generate-preview",
    "veo-3.0-generate-001",
    "veo-3.0-fast-generate-001",
    "veo-2.0-generate-001",
)
INSTANCE_FIELDS: Final = frozenset({"prompt", "image", "lastFrame", "referenceImages"})
PARAMETER_FIELDS: Final = frozenset(
    {
        "aspectRatio",
        "sampleCount",
        "durationSeconds",
        "resolution",
        "negativePrompt",
        "personGeneration",
        "enhancePrompt",
    }
)
IMAGE_FIELDS: Final = frozenset({"bytesBase64Encoded", "mimeType"})
REFERENCE_FIELDS: Final = frozenset({"image", "referenceType"})
NOT_CHARGED_REASON: Final = (
    "The prompt could not be submitted. Your prompt may violate our policies. "
    "You will not be charged for blocked videos."
)
BLOCKED_REASON: Final = "Video was blocked by safety filters."
FAILED: Final = {
    "code": 13,
    "message": "Video generation failed due to an internal error.",
    "status": "INTERNAL",
}
BAD_KEY: Final = "API key not valid. Please pass a valid API key."
RATE_LIMITED: Final = (
    "Quota exceeded for metric: generativelanguage.googleapis.com/generate_requests_per_model "
    "per minute"
)
DAILY_QUOTA: Final = "You exceeded your current quota: generate requests per day per project"
_TYPES: Final = "type.googleapis.com/google.ai.generativelanguage.v1beta."
_STATUS: Final = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_SUBMIT: Final = re.compile(r"/v1beta/models/([^/:]+):predictLongRunning")
_OPERATION: Final = re.compile(r"/v1beta/(models/[^/]+/operations/[^/]+)")
_FILE: Final = re.compile(r"/v1beta/files/([^/:]+):download")


class Refusal(Exception):
    """An error answer in Google's shape, raised where the problem is found."""

    def __init__(
        self, code: int, message: str, status: str | None = None, details: list[Any] | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        error: dict[str, Any] = {
            "code": code,
            "message": message,
            "status": status or _STATUS.get(code, "UNKNOWN"),
        }
        if details is not None:
            error["details"] = details
        self.body = {"error": error}


class Images(NamedTuple):
    """A submission's images, decoded, by role."""

    image: bytes | None
    last_frame: bytes | None
    references: list[bytes]

    def first(self) -> bytes | None:
        """The image its clip shows: the first frame, else the first reference."""
        if self.image is not None:
            return self.image
        return self.references[0] if self.references else None


# ------------------------------------------------------------------ routes


def post(handler: Handler, arrived: float) -> None:
    """A POST under `/v1beta/`: a submission, or 404."""
    body = handler._body()  # read before any answer: the connection is kept alive
    path = unquote(urlsplit(handler.path).path)
    with _answering(handler):
        match = _SUBMIT.fullmatch(path)
        if match is None:
            raise Refusal(404, f"Invalid URL (POST {path})")
        name = _submit(handler, arrived, match.group(1), body)
        handler._reply(200, {"name": name})


def get(handler: Handler, arrived: float) -> None:
    """A GET under `/v1beta/`: an operation, a video file, the models, or 404."""
    path = unquote(urlsplit(handler.path).path)
    with _answering(handler):
        if path == API + "models":
            _admit(handler, arrived)
            handler._reply(200, {"models": [{"name": f"models/{MODELS[0]}"}]})
        elif match := _OPERATION.fullmatch(path):
            _operation(handler, arrived, match.group(1))
        elif match := _FILE.fullmatch(path):
            _download(handler, match.group(1))
        else:
            raise Refusal(404, f"Invalid URL (GET {path})")


@contextlib.contextmanager
def _answering(handler: Handler) -> Iterator[None]:
    """A `Refusal` raised meanwhile is answered."""
    try:
        yield
    except Refusal as refusal:
        handler._reply(refusal.code, refusal.body)


def _key_of(handler: Handler) -> str | None:
    """The key the request carries: its `x-goog-api-key` header, else its `?key=`."""
    header = handler.headers.get("x-goog-api-key")
    if header is not None:
        return str(header)
    keys = parse_qs(urlsplit(handler.path).query).get("key")
    return keys[0] if keys else None


def _admit(handler: Handler, arrived: float) -> None:
    """Whether the service is up, the key right and the request within the limit, as every
    API route checks them (the limit counts the request at `arrived`); raises Refusal."""
    state = handler.server.state
    with state.lock:
        allowed = state.arrive(arrived)
        key, down = state.config.api_key, state.config.down
    if down is not None:
        raise Refusal(down, "The service is currently unavailable.", "UNAVAILABLE")
    if _key_of(handler) != key:
        reason = {
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "API_KEY_INVALID",
            "domain": "googleapis.com",
        }
        raise Refusal(400, BAD_KEY, "INVALID_ARGUMENT", [reason])
    if not allowed:
        retry = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1s"}
        raise Refusal(429, RATE_LIMITED, "RESOURCE_EXHAUSTED", [retry])


# ------------------------------------------------------------------ submission


def _submit(handler: Handler, arrived: float, model: str, body: Any) -> str:
    """The new operation's name, once the key, the limit, the model and the body pass."""
    _admit(handler, arrived)
    if model not in MODELS:
        raise Refusal(404, f"models/{model} is not found for API version v1beta")
    instance, parameters = _submission(body)
    prompt: str = instance["prompt"]
    markers = dict(MARKER.findall(prompt))
    if "status" in markers:
        code = int(markers["status"])
        raise Refusal(code, f"Mock error {code}.")
    images = _images(instance)
    return _create(handler.server.state, model, prompt, markers, images, parameters)


def _invalid(message: str) -> Refusal:
    return Refusal(400, message, "INVALID_ARGUMENT")


def _known(value: Mapping[str, Any], names: frozenset[str], where: str) -> None:
    """Every field of `value` is one Google knows at `where`; raises Refusal."""
    for name in value:
        if name not in names:
            at = f" at '{where}'" if where else ""
            raise _invalid(
                f'Invalid JSON payload received. Unknown name "{name}"{at}: Cannot find field.'
            )


def _submission(body: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The one instance (with its prompt) and the parameters of a submission's body."""
    if not isinstance(body, dict):
        raise _invalid("Invalid JSON payload received. Expected an object.")
    _known(body, frozenset({"instances", "parameters"}), "")
    instances = body.get("instances")
    if not isinstance(instances, list) or len(instances) != 1:
        raise _invalid("instances: exactly one instance is supported.")
    instance = instances[0]
    if not isinstance(instance, dict):
        raise _invalid("Invalid value at 'instances[0]': an instance is an object.")
    _known(instance, INSTANCE_FIELDS, "instances[0]")
    prompt = instance.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        raise _invalid("instances[0].prompt: a prompt is required.")
    parameters = body.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise _invalid("Invalid value at 'parameters': parameters are an object.")
    _known(parameters, PARAMETER_FIELDS, "parameters")
    _check_parameters(parameters)
    return instance, parameters


def _check_parameters(parameters: Mapping[str, Any]) -> None:
    """The parameters whose values Google checks; raises Refusal."""
    ratio = parameters.get("aspectRatio")
    if ratio is not None and ratio not in ("16:9", "9:16"):
        raise _invalid(f"aspectRatio {ratio!r} is not supported: use 16:9 or 9:16.")
    count = parameters.get("sampleCount")
    if count is not None and (type(count) is not int or not 1 <= count <= 4):
        raise _invalid(f"sampleCount {count!r} is out of range: 1 to 4.")
    enhance = parameters.get("enhancePrompt")
    if enhance is not None and not isinstance(enhance, bool):
        raise _invalid(f"Invalid value at 'parameters.enhancePrompt' (TYPE_BOOL), {enhance!r}")


def _images(instance: Mapping[str, Any]) -> Images:
    """The instance's images decoded, by role; raises Refusal for one that is not an image
    or roles that do not go together."""
    image = _image_at(instance.get("image"), "instances[0].image")
    last = _image_at(instance.get("lastFrame"), "instances[0].lastFrame")
    references = _references(instance.get("referenceImages"))
    if last is not None and image is None:
        raise _invalid("lastFrame needs image: a last frame is only taken with a first frame.")
    if references and (image is not None or last is not None):
        raise _invalid("referenceImages cannot be used together with image or lastFrame.")
    return Images(image, last, references)


def _image_at(value: Any, where: str) -> bytes | None:
    """An image's bytes (None when there is none); raises Refusal for one that is not an
    image."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _invalid(f"Invalid value at '{where}': an image is an object.")
    _known(value, IMAGE_FIELDS, where)
    encoded, mime = value.get("bytesBase64Encoded"), value.get("mimeType")
    if not isinstance(encoded, str) or not isinstance(mime, str) or not mime.startswith("image/"):
        raise _invalid(f"{where}: bytesBase64Encoded and an image mimeType are required.")
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise _invalid(f"Invalid value at '{where}.bytesBase64Encoded': not base64.") from None
    if sniff(data[:SNIFF_BYTES]) is None:
        raise _invalid(f"{where}: unable to process input image (not a PNG, JPEG or WebP).")
    return data


def _references(value: Any) -> list[bytes]:
    """The reference images' bytes (1 to 3, each an asset); raises Refusal."""
    if value is None:
        return []
    if not isinstance(value, list) or not 1 <= len(value) <= 3:
        raise _invalid("referenceImages: 1 to 3 reference images are supported.")
    images: list[bytes] = []
    for index, reference in enumerate(value):
        where = f"instances[0].referenceImages[{index}]"
        if not isinstance(reference, dict):
            raise _invalid(f"Invalid value at '{where}': a reference image is an object.")
        _known(reference, REFERENCE_FIELDS, where)
        if reference.get("referenceType") != "asset":
            raise _invalid(f"{where}.referenceType: only asset is supported.")
        data = _image_at(reference.get("image"), f"{where}.image")
        if data is None:
            raise _invalid(f"{where}.image is required.")
        images.append(data)
    return images


def _create(
    state: MockState,
    model: str,
    prompt: str,
    markers: Mapping[str, str],
    images: Images,
    parameters: Mapping[str, Any],
) -> str:
    """A new operation's name; raises Refusal (a daily quota) when the balance is spent."""
    with state.lock:
        config = state.config
        if config.balance is not None and config.balance <= 0:
            raise Refusal(429, DAILY_QUOTA, "RESOURCE_EXHAUSTED")
        if config.balance is not None:
            config.balance -= 1
        name = f"models/{model}/operations/{uuid.uuid4().hex[:12]}"
        created = time.monotonic()
        task = Task(
            name,
            prompt,
            created,
            created + config.task_seconds,
            "fail" in markers or state.rng.random() < config.failure_rate,
            cut_video="cut-video" in markers,
            portrait=parameters.get("aspectRatio") == "9:16",
        )
        state.start_task(task)
        _record(state, task, images, parameters)
    return name


def _record(state: MockState, task: Task, images: Images, parameters: Mapping[str, Any]) -> None:
    """What the submission sent, kept for the stats: each image's sha256 in its role, the
    parameters; and its first image, for the clip."""
    image, last_frame = (_digest(images.image), _digest(images.last_frame))
    references = [hashlib.sha256(data).hexdigest() for data in images.references]
    state.images_by_prompt.setdefault(task.prompt, []).extend(
        digest for digest in (image, last_frame, *references) if digest is not None
    )
    state.gemini_images_by_prompt[task.prompt] = {
        "image": image,
        "lastFrame": last_frame,
        "referenceImages": references,
    }
    state.gemini_parameters_by_prompt[task.prompt] = dict(parameters)
    first = images.first()
    if first is not None:
        state.keep_first_image(task, first)


def _digest(data: bytes | None) -> str | None:
    return None if data is None else hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------ operations and videos


def _operation(handler: Handler, arrived: float, name: str) -> None:
    """An operation's state: running, then done with a response or an error."""
    _admit(handler, arrived)
    state = handler.server.state
    with state.lock:
        state.polls += 1
        task = state.tasks.get(name)
    if task is None:
        raise Refusal(404, f"Operation {name} is not found.")
    handler._reply(200, _operation_view(handler, task))


def _operation_view(handler: Handler, task: Task) -> dict[str, Any]:
    name = task.task_id
    if time.monotonic() < task.ends:
        return {"name": name, "metadata": {"@type": _TYPES + "PredictLongRunningMetadata"}}
    if task.fails:
        return {"name": name, "done": True, "error": dict(FAILED)}
    reason = _filtered(task)
    if reason is not None:
        answer: dict[str, Any] = {"raiMediaFilteredCount": 1, "raiMediaFilteredReasons": [reason]}
    else:
        answer = {"generatedSamples": [{"video": {"uri": _video_uri(handler, task)}}]}
    response = {"@type": _TYPES + "PredictLongRunningResponse", "generateVideoResponse": answer}
    return {"name": name, "done": True, "response": response}


def _filtered(task: Task) -> str | None:
    """The reason Google's filters give for stopping the task, or None if they did not."""
    markers = dict(MARKER.findall(task.prompt))
    if "filtered" in markers:
        return NOT_CHARGED_REASON
    if "filtered-charged" in markers:
        return BLOCKED_REASON
    return None


def _file_id(task: Task) -> str:
    return task.task_id.rsplit("/", 1)[1]


def _video_uri(handler: Handler, task: Task) -> str:
    """Where the task's video is: on this API's host, or where `[mock:video-at=URL]` says."""
    elsewhere = dict(MARKER.findall(task.prompt)).get("video-at")
    base = elsewhere or f"http://{handler.headers.get('Host', '127.0.0.1')}"
    return f"{base.rstrip('/')}{API}files/{_file_id(task)}:download?alt=media"


def _file_task(state: MockState, file_id: str) -> Task | None:
    """The task whose video file is `file_id` (its operation's id, under one of the models)."""
    for model in MODELS:
        task = state.tasks.get(f"models/{model}/operations/{file_id}")
        if task is not None:
            return task
    return None


def _download(handler: Handler, file_id: str) -> None:
    """A video file: only with the key; redirected where `[mock:video-redirect=URL]` says."""
    state = handler.server.state
    with state.lock:
        keyed = _key_of(handler) == state.config.api_key
        if keyed:
            state.video_requests_keyed += 1
        else:
            state.video_refused_no_key += 1
        task = _file_task(state, file_id)
    if not keyed:
        raise Refusal(
            403,
            "Method doesn't allow unregistered callers (callers without established "
            "identity). Please use API Key or other form of API consumer identity to call "
            "this API.",
            "PERMISSION_DENIED",
        )
    ready = task is not None and time.monotonic() >= task.ends and not task.fails
    if task is None or not ready or _filtered(task) is not None:
        raise Refusal(404, f"File {file_id} is not found.")
    elsewhere = dict(MARKER.findall(task.prompt)).get("video-redirect")
    if elsewhere:
        _redirect(handler, elsewhere)
        return
    handler._video(task.task_id)


def _redirect(handler: Handler, base: str) -> None:
    """302 to the same path and query at `base` (without a `key` of the query)."""
    parts = urlsplit(handler.path)
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query, True) if k != "key"])
    handler.send_response(302)
    handler.send_header("Location", base.rstrip("/") + parts.path + (f"?{query}" if query else ""))
    handler.send_header("Content-Length", "0")
    handler.end_headers()
