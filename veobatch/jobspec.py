"""What a job is, and the checks every row passes before anything is stored.

Pure logic: rows come in as dicts of Python values (the readers in `sources.py` have already
turned CSV text into lists and booleans where the text allowed it), and go out either as a
`JobRow` ready to insert or as a list of `Problem`s naming the line and field.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from dataclasses import dataclass
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
_TRUE: Final = frozenset({"true", "yes", "1", "y", "on"})
_FALSE: Final = frozenset({"false", "no", "0", "n", "off"})


class JobRow(NamedTuple):
    """A checked row, in the column order the loader inserts."""

    ref: str
    line: int
    prompt: str
    model: str
    images: str  # JSON list of strings
    aspect_ratio: str | None
    enhance_prompt: bool | None
    extra: str | None  # JSON object of pass-through provider fields
    image_count: int


@dataclass(frozen=True, slots=True)
class RawJob:
    """One row as read from a file: its starting line, values, and (YAML) each field's line."""

    line: int
    values: dict[str, Any]
    field_lines: Mapping[str, int] | None = None
    problems: tuple[Problem, ...] = ()  # found by the reader (bad JSON, wrong column count)

    def line_of(self, name: str) -> int:
        if self.field_lines is None:
            return self.line
        return self.field_lines.get(name, self.line)


def parse_bool_text(text: str) -> bool | str:
    """`true`/`false` (and yes/no, 1/0) as booleans; anything else is returned for the checker."""
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    return text


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
    if not isinstance(value, str):
        return f"must be a URL string, got {type(value).__name__}"
    if value.startswith(_URL_PREFIXES):
        host = value.split("/", 3)[2]
        if not host or any(ch.isspace() for ch in value):
            return f"{_short(value)} is not a valid URL (no host, or a space: write %20)"
        return None
    if value.startswith("data:"):
        header, comma, payload = value.partition(",")
        if not comma or not header[5:].startswith("image/"):
            return "a data: URI must look like data:image/png;base64,...."
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


def _short(value: str, limit: int = 60) -> str:
    return repr(value if len(value) <= limit else value[: limit - 3] + "...")


def _bool_problem(value: object) -> str:
    return f"must be true or false, got {_short(str(value))}"


class JobChecker:
    """Checks rows of one file; remembers ids seen, so duplicates are found across the file."""

    def __init__(self, models: Mapping[str, ImageRange]) -> None:
        self.models = models
        self._seen_refs: set[str] = set()
        self._name_problems: dict[str, str | None] = {}
        self.ignored_fields: set[str] = set()

    def name_problem(self, name: str) -> str | None:
        try:
            return self._name_problems[name]
        except KeyError:
            problem = self._name_problems[name] = field_name_problem(name)
            return problem

    def check(self, raw: RawJob) -> tuple[JobRow | None, list[Problem]]:
        """The row to store and its problems.

        With problems, the row is only stored with --skip-invalid (as failed); a row whose id is
        taken by an earlier row comes back as None: it cannot be stored under that id at all.
        """
        values = raw.values
        problems: list[Problem] = list(raw.problems)

        def bad(name: str, message: str) -> None:
            problems.append(Problem(raw.line_of(name), name, message))

        # id: the row's own reference, else its line number.
        ref_value = values.get("id")
        if ref_value is None:
            ref = str(raw.line)
        elif isinstance(ref_value, bool) or not isinstance(ref_value, str | int):
            ref = f"line:{raw.line}"
            bad("id", f"must be text or a number, got {type(ref_value).__name__}")
        else:
            ref = str(ref_value).strip()
            if not ref or len(ref) > MAX_REF_CHARS:
                bad("id", f"must be 1 to {MAX_REF_CHARS} characters")
                ref = f"line:{raw.line}"
        if ref in self._seen_refs:
            bad("id", f"duplicate id {_short(ref)}: an earlier row has the same id")
            return None, problems
        self._seen_refs.add(ref)
        if raw.problems:  # the reader could not make a row of it: nothing more to check
            return JobRow(ref, raw.line, "", "", "[]", None, None, None, 0), problems

        prompt = values.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            bad("prompt", "missing or empty" if prompt in (None, "") else "must be text")
            prompt = "" if prompt is None else str(prompt)
        elif len(prompt) > MAX_PROMPT_CHARS:
            bad("prompt", f"is {len(prompt)} characters; the limit is {MAX_PROMPT_CHARS}")

        model = values.get("model")
        span = self.models.get(model) if isinstance(model, str) else None
        if span is None:
            if model in (None, ""):
                bad("model", f"missing; one of: {', '.join(self.models)}")
            else:
                close = difflib.get_close_matches(str(model), list(self.models), n=1)
                hint = (
                    f"did you mean {close[0]!r}?" if close else f"one of: {', '.join(self.models)}"
                )
                bad("model", f"unknown model {_short(str(model))}; {hint}")
            model = "" if model is None else str(model)
        assert isinstance(model, str)

        images = values.get("images")
        if isinstance(images, str):
            images = [images]
        if not isinstance(images, list) or not images:
            bad(
                "images",
                "missing; give 1 to 3 image URLs"
                if images in (None, "")
                else "must be a list of image URLs",
            )
            images = [] if not isinstance(images, list) else images
        else:
            if span is not None and not span.low <= len(images) <= span.high:
                bad("images", f"{model} takes {span} image(s), got {len(images)}")
            for index, image in enumerate(images, 1):
                message = image_problem(image)
                if message is not None:
                    bad("images", f"image {index}: {message}" if len(images) > 1 else message)

        aspect_ratio = values.get("aspect_ratio")
        if aspect_ratio is not None and aspect_ratio not in ASPECT_RATIOS:
            bad(
                "aspect_ratio",
                f"must be one of {', '.join(ASPECT_RATIOS)}, got {_short(str(aspect_ratio))}",
            )
            aspect_ratio = None

        enhance_prompt = values.get("enhance_prompt")
        if enhance_prompt is not None and not isinstance(enhance_prompt, bool):
            bad("enhance_prompt", _bool_problem(enhance_prompt))
            enhance_prompt = None

        extra: dict[str, Any] | None = None
        if not values.keys() <= _JOB_FIELD_SET:
            extra = self._extras(values, bad)

        return (
            JobRow(
                ref=ref,
                line=raw.line,
                prompt=prompt,
                model=model,
                images=json.dumps(images, ensure_ascii=False, default=str),
                aspect_ratio=aspect_ratio,
                enhance_prompt=enhance_prompt,
                extra=json.dumps(extra, ensure_ascii=False, default=str) if extra else None,
                image_count=len(images),
            ),
            problems,
        )

    def _extras(self, values: Mapping[str, Any], bad: Any) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        for name, value in values.items():
            if name in _JOB_FIELD_SET:
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
