"""A batch's name: the one rule every face checks it with."""

from __future__ import annotations

from typing import Final

from veobatch.errors import VeoBatchError
from veobatch.intake.field_rules import BAD_NAME_CHARS, text_problem

MAX_BATCH_NAME: Final = 200


def check_batch_name(name: object) -> str:
    """A batch name: 1 to MAX_BATCH_NAME characters, no spaces around it, and one safe path
    segment (results and videos are written under it): no `/`, `\\`, `.` or `..`, no NUL
    or control character, no lone surrogate."""
    rule = (
        f"a batch name is 1 to {MAX_BATCH_NAME} characters, without spaces around it, "
        "slashes, or control characters"
    )
    if not isinstance(name, str) or not name.strip() or name != name.strip():
        raise VeoBatchError(rule)
    if len(name) > MAX_BATCH_NAME or name in (".", "..") or "/" in name or "\\" in name:
        raise VeoBatchError(f"{rule}; not {name[:MAX_BATCH_NAME]!r}")
    if (problem := text_problem(name, BAD_NAME_CHARS)) is not None:
        raise VeoBatchError(f"batch name {name[:60]!r} {problem}; {rule}")
    return name
