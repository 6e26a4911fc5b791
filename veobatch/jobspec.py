"""What a job is, and the checks every row passes before anything is stored.

Pure logic: rows come in as dicts of Python values (the readers in `sources.py` have already
turned CSV text into lists and booleans where the text allowed it), and go out either as a
`JobRow` ready to insert or as a list of `Problem`s naming the line and field.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping
from typing import Any, Final, NamedTuple

from veobatch.catalog import ASPECT_RATIOS, ImageRange
from veobatch.problems import Problem

MAX_PROMPT_CHARS: Final = 4000
MAX_REF_CHARS: Final = 200
MAX_IMAGE_BYTES: Final = 20 * 1024 * 1024  # Google's limit for one input image

# The fields of a job that veo-batch itself understands.
JOB_FIELDS: Final = ("id", "prompt", "model", "images", "aspect_ratio", "enhance_prompt")
# Provider fields seen in relay clients: passed through, but checked when we know their type.
KNOWN_EXTRAS: Final = ("enable_upsample", "notify_hook")
BOOL_FIELDS: Final = frozenset({"enhance_prompt", "enable_upsample"})
# Columns that `veo-batch export` adds: a re-loaded export ignores them instead of sending them.
OUTPUT_FIELDS: Final = frozenset(
    {
        "status",
        "task_id",
        "error",
        "error_kind",
        "http_status",
        "attempts",
        "remote_status",
        "progress",
        "video_url",
        "created_at",
        "updated_at",
        "submitted_at",
        "finished_at",
        "line",
    }
)
_KNOWN_NAMES: Final = (*JOB_FIELDS, *KNOWN_EXTRAS)
_URL_PREFIXES: Final = ("https://", "http://")
# Usable image references contain no whitespace, quotes, backslashes or control characters,
# which also lets `images_json` write them without an escaping pass.
_URL_CHARS: Final = r'[^\s"\\\x00-\x1f]'
_HTTP_URL: Final = re.compile(rf"https?://[^\s/?#\"\\\x00-\x1f]+{_URL_CHARS}*")
_DATA_URI: Final = re.compile(rf"data:image/[\w.+-]+(?:;[\w.+=-]+)*,{_URL_CHARS}*")


# A stored row: the values of `ROW_COLUMNS`, in that order, ready for executemany or COPY.
ROW_COLUMNS: Final = (
    "batch_id", "ref", "line", "prompt", "model", "images", "aspect_ratio", "enhance_prompt",
    "extra", "status", "error", "error_kind",
)  # fmt: skip
StoredRow = tuple[Any, ...]


class RawJob(NamedTuple):
    """One row as read from a file: its starting line, values, and (YAML) each field's line.

    An empty string stands for a missing value (that is how CSV says it).
    """

    line: int
    values: dict[str, Any]
    field_lines: Mapping[str, int] | None = None
    problems: tuple[Problem, ...] = ()  # found by the reader (bad JSON, wrong column count)

    def line_of(self, name: str) -> int:
        if self.field_lines is None:
            return self.line
        return self.field_lines.get(name, self.line)


def field_name_problem(name: str) -> str | None:
    """A field name that looks like a misspelling of one we know is an error, not an extra."""
    if name in _KNOWN_NAMES or name in OUTPUT_FIELDS:
        return None
    normalized = name.strip().lower().replace("-", "_").replace(" ", "_")
    close = difflib.get_close_matches(normalized, _KNOWN_NAMES, n=1, cutoff=0.75)
    if normalized in _KNOWN_NAMES or close:
        suggestion = normalized if normalized in _KNOWN_NAMES else close[0]
        return f"unknown field {name!r}; did you mean {suggestion!r}?"
    return None


def image_problem(value: object) -> str | None:
    """What is wrong with one entry of `images`, or None if it is a usable URL."""
    if not isinstance(value, str):
        return f"must be a URL string, got {type(value).__name__}"
    if _HTTP_URL.fullmatch(value):
        return None
    if value.startswith(_URL_PREFIXES):
        return f"{_short(value)} is not a valid URL (no host, or a space or quote: write %20)"
    if value.startswith("data:"):
        if not _DATA_URI.fullmatch(value):
            return "a data: URI must look like data:image/png;base64,...."
        header, _, payload = value.partition(",")
        size = len(payload) * 3 // 4 if header.endswith(";base64") else len(payload)
        if size > MAX_IMAGE_BYTES:
            return f"the embedded image is {size / 2**20:.1f} MB; the provider takes at most 20 MB"
        return None
    scheme, sep, _ = value.partition("://")
    if sep and scheme.isalnum():
        return f"{_short(value)}: {scheme}:// is not supported; give an http(s) URL or a data: URI"
    return (
        f"{_short(value)} is a local path, not a URL; veo-batch sends image URLs: upload the "
        "file and give its https:// URL, or embed it as a data:image/...;base64 URI"
    )


def _is_plain_image(value: object) -> bool:
    """A usable image reference that can go into JSON without escaping (the fast path)."""
    return type(value) is str and (
        _HTTP_URL.fullmatch(value) is not None
        or (value.startswith("data:") and image_problem(value) is None)
    )


_PENDING: Final = ("pending", None, None)  # status, error, error_kind of a row to submit


def _json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def _short(value: str, limit: int = 60) -> str:
    return repr(value if len(value) <= limit else value[: limit - 3] + "...")


def _bool_problem(value: object) -> str:
    return f"must be true or false, got {_short(str(value))}"


class JobChecker:
    """Checks the rows of one load and turns them into `StoredRow`s of batch `batch_id`.

    It remembers the ids seen, so duplicates are found across the whole file, and counts rows
    per model and per number of images for the summary. The common case (a valid row) runs
    without building a single message: this is the loader's hot loop.
    """

    def __init__(self, models: Mapping[str, ImageRange], batch_id: int = 0) -> None:
        self.models = models
        self.batch_id = batch_id
        self.model_counts: dict[str, int] = {}
        self.image_counts: dict[int, int] = {}
        self.ignored_fields: set[str] = set()
        # The hashes of the refs seen so far (64 bits each), not the refs: a million ids then
        # take ~70 MB instead of ~100 MB. Two different ids with the same hash (odds of about
        # 1 in 30 million for a million rows) would be reported as a duplicate: a false alarm
        # that stores nothing, never a row stored twice.
        self._seen_refs: set[int] = set()
        self._name_problems: dict[str, str | None] = {}

    def name_problem(self, name: str) -> str | None:
        try:
            return self._name_problems[name]
        except KeyError:
            problem = self._name_problems[name] = field_name_problem(name)
            return problem

    def check(self, raw: RawJob) -> tuple[StoredRow | None, list[Problem]]:
        """The row to store (status pending) and its problems.

        With problems, the row is only stored with --skip-invalid (as failed); a row whose id is
        taken by an earlier row comes back as None: it cannot be stored under that id at all.
        """
        values = raw.values
        line = raw.line
        problems: list[Problem] = list(raw.problems)

        def bad(name: str, message: str) -> None:
            problems.append(Problem(raw.line_of(name), name, message))

        # id: the row's own reference, else its line number.
        ref = values.get("id")
        if ref is None or ref == "":
            ref = str(line)
        elif type(ref) is not str or len(ref) > MAX_REF_CHARS or not ref.strip():
            if type(ref) is int:
                ref = str(ref)
            else:
                what = f"must be 1 to {MAX_REF_CHARS} characters"
                bad(
                    "id",
                    what
                    if isinstance(ref, str)
                    else f"must be text or a number, got {type(ref).__name__}",
                )
                ref = f"line:{line}"
        ref_hash = hash(ref)
        if ref_hash in self._seen_refs:
            bad("id", f"duplicate id {_short(ref)}: an earlier row has the same id")
            return None, problems
        self._seen_refs.add(ref_hash)
        if raw.problems:  # the reader could not make a row of it: nothing more to check
            return (self.batch_id, ref, line, "", "", "[]", None, None, None, *_PENDING), problems

        prompt = values.get("prompt")
        if (
            type(prompt) is not str
            or not prompt
            or len(prompt) > MAX_PROMPT_CHARS
            or prompt.isspace()
        ):
            if isinstance(prompt, str) and len(prompt) > MAX_PROMPT_CHARS:
                bad("prompt", f"is {len(prompt)} characters; the limit is {MAX_PROMPT_CHARS}")
            else:
                bad(
                    "prompt",
                    "must be text"
                    if prompt and not isinstance(prompt, str)
                    else "missing or empty",
                )
                prompt = "" if prompt is None else str(prompt)

        raw_model = values.get("model")
        model: str = raw_model if type(raw_model) is str else str(raw_model or "")
        span = self.models.get(model)
        if span is None:
            bad("model", self._model_problem(raw_model))

        images = values.get("images")
        if type(images) is str and images:
            images = [images]
        if (
            type(images) is list
            and images
            and (span is None or span.low <= len(images) <= span.high)
            and all(map(_is_plain_image, images))
        ):
            images_text = '["' + '", "'.join(images) + '"]'
            image_count = len(images)
        else:
            images_text = self._images_problems(images, model, span, bad)
            image_count = 0

        aspect_ratio = values.get("aspect_ratio")
        if aspect_ratio is not None and aspect_ratio not in ASPECT_RATIOS:
            if aspect_ratio == "":
                aspect_ratio = None
            else:
                bad(
                    "aspect_ratio",
                    f"must be one of {', '.join(ASPECT_RATIOS)}, got {_short(str(aspect_ratio))}",
                )
                aspect_ratio = None

        enhance_prompt = values.get("enhance_prompt")
        if enhance_prompt is not None and type(enhance_prompt) is not bool:
            if enhance_prompt != "":
                bad("enhance_prompt", _bool_problem(enhance_prompt))
            enhance_prompt = None

        extra = None
        if not values.keys() <= _JOB_FIELD_SET:
            extra_values = self._extras(values, bad)
            extra = _json(extra_values) if extra_values else None

        if not problems:
            counts = self.model_counts
            counts[model] = counts.get(model, 0) + 1
            self.image_counts[image_count] = self.image_counts.get(image_count, 0) + 1
        return (
            (
                self.batch_id,
                ref,
                line,
                prompt,
                model,
                images_text,
                aspect_ratio,
                enhance_prompt,
                extra,
                *_PENDING,
            ),
            problems,
        )

    def _model_problem(self, model: object) -> str:
        if model is None or model == "":
            return f"missing; one of: {', '.join(self.models)}"
        close = difflib.get_close_matches(str(model), list(self.models), n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"one of: {', '.join(self.models)}"
        return f"unknown model {_short(str(model))}; {hint}"

    @staticmethod
    def _images_problems(images: object, model: str, span: ImageRange | None, bad: Any) -> str:
        """Report what is wrong with `images` (the slow path) and return it as JSON text."""
        if type(images) is not list or not images:
            empty = images is None or images in ("", [])
            bad(
                "images",
                "missing; give 1 to 3 image URLs" if empty else "must be a list of image URLs",
            )
            return _json(images if type(images) is list else [])
        if span is not None and not span.low <= len(images) <= span.high:
            bad("images", f"{model} takes {span} image(s), got {len(images)}")
        for index, image in enumerate(images, 1):
            message = image_problem(image)
            if message is not None:
                bad("images", f"image {index}: {message}" if len(images) > 1 else message)
        return _json(images)

    def _extras(self, values: Mapping[str, Any], bad: Any) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        for name, value in values.items():
            if name in _JOB_FIELD_SET or value == "":
                continue
            if name in OUTPUT_FIELDS:
                self.ignored_fields.add(name)
                continue
            message = self.name_problem(name)
            if message is not None:
                bad(name, message)
            elif name in BOOL_FIELDS and not isinstance(value, bool):
                bad(name, _bool_problem(value))
            elif name == "notify_hook" and (
                not isinstance(value, str) or not value.startswith(_URL_PREFIXES)
            ):
                bad(name, "must be an http(s) URL")
            else:
                extra[name] = value
        return extra


_JOB_FIELD_SET: Final = frozenset(JOB_FIELDS)


def describe(problems: list[Problem]) -> str:
    """One line for the `error` column of a row stored invalid with --skip-invalid."""
    return "; ".join(f"line {p.line}: {p.field}: {p.message}" for p in problems)
