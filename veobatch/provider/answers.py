"""The checks every field of a relay's answer passes before anything keeps it: pure, no I/O.

A relay is a third party: its answers may be malformed, oversized or hostile. A task id is
a string of at most MAX_TASK_ID printable characters (the column holds 200); a video URL is an
http(s) URL of at most MAX_URL characters with a host and no control or space characters; a
text (a failure reason, a progress) is a string or a number, cut to its length. What fails a
check is described in words (with the raw value cut and escaped), never kept as it came.
"""

from __future__ import annotations

import json
from typing import Any, Final
from urllib.parse import urlsplit

from veobatch.visible import hidden, shown

MAX_TASK_ID: Final = 200
MAX_URL: Final = 2048


def parsed_json(data: bytes | str) -> Any:
    """A stranger's JSON, parsed; ValueError for what is not JSON, and for JSON nested too
    deep for the parser (a megabyte of `[` raises RecursionError in `json.loads`)."""
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError("JSON nested too deep to read") from None


def task_id_problem(value: Any) -> str | None:
    """Why `value` is not a usable task id, or None when it is."""
    if not isinstance(value, str):
        return f"task_id is {_kind(value)}, not a string"
    if not value:
        return "task_id is empty"
    if len(value) > MAX_TASK_ID:
        return f"task_id is {len(value):,} characters long (at most {MAX_TASK_ID})"
    if value != value.strip() or any(hidden(c) for c in value):
        return f"task_id {shown(value)} holds control, blank or invisible characters"
    return None


def video_url_problem(value: Any) -> str | None:
    """Why `value` is not a usable video URL, or None when it is (whether its host may be
    reached is the download's own check)."""
    if not isinstance(value, str):
        return f"the video URL is {_kind(value)}, not a string"
    if len(value) > MAX_URL:
        return f"the video URL is {len(value):,} characters long (at most {MAX_URL})"
    if any(c.isspace() or not c.isprintable() for c in value):
        return f"the video URL {shown(value)} holds control or blank characters"
    try:
        parts = urlsplit(value)
        port = parts.port  # raises on a port that is not a number
    except ValueError:
        return f"the video URL {shown(value)} cannot be parsed"
    if parts.scheme.lower() not in ("http", "https"):
        return f"the video URL {shown(value)} is not http(s)"
    if not parts.hostname or (port is not None and not 0 < port < 65536):
        return f"the video URL {shown(value)} has no host"
    return None


def text_field(value: Any, limit: int) -> str | None:
    """A text field (a failure reason, a progress) as kept: a string or a number, cut to
    `limit`; None for nothing, and a short description for anything else."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return f"({_kind(value)})"
    return str(value)[:limit]


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "a list", bool: "a boolean", type(None): "null"}
    name = names.get(type(value)) or ("a number" if isinstance(value, (int, float)) else None)
    return name or type(value).__name__
