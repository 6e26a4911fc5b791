"""One row of jobs as a reader found it, before any check (`RawJob`), and the names of the
fields veo-batch itself understands."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, NamedTuple

from veobatch.errors import Problem

# The fields of a job that veo-batch itself understands.
JOB_FIELDS: Final = ("id", "prompt", "model", "images", "aspect_ratio", "enhance_prompt")
# Another name for `id`, as systems that queue jobs call it: the job's key in its batch. The
# same id sent again to the same batch never makes a second row.
ID_ALIAS: Final = "external_id"
JOB_FIELD_SET: Final = frozenset(JOB_FIELDS)


class RawJob(NamedTuple):
    """One row as a reader found it. None or "" (how CSV says it) means the field is absent.

    `field_lines` (YAML) gives the line of each field; `problems` are what the reader itself
    found (a line that is not JSON, a CSV row with too many values).
    """

    line: int
    id: Any = None
    prompt: Any = None
    model: Any = None
    images: Any = None
    aspect_ratio: Any = None
    enhance_prompt: Any = None
    extras: dict[str, Any] | None = None  # every other field, passed to the provider
    field_lines: Mapping[str, int] | None = None
    problems: tuple[Problem, ...] = ()

    @classmethod
    def from_mapping(
        cls, line: int, values: Mapping[str, Any], field_lines: Mapping[str, int] | None = None
    ) -> RawJob:
        images = values.get("images")
        extras = {k: v for k, v in values.items() if k not in JOB_FIELD_SET and k != ID_ALIAS}
        ref, alias = values.get("id"), values.get(ID_ALIAS)
        problems: tuple[Problem, ...] = ()
        if ref in (None, ""):
            ref = alias
        elif alias not in (None, "") and alias != ref:
            problems = (Problem(line, ID_ALIAS, f"differs from id {ref!r}; give one of them"),)
        return cls(
            line,
            ref,
            values.get("prompt"),
            values.get("model"),
            [images] if type(images) is str and images else images,
            values.get("aspect_ratio"),
            values.get("enhance_prompt"),
            extras or None,
            field_lines,
            problems,
        )

    @classmethod
    def broken(cls, line: int, message: str) -> RawJob:
        """A row the reader could not make sense of."""
        return cls(line, problems=(Problem(line, None, message),))

    def line_of(self, name: str) -> int:
        if self.field_lines is None:
            return self.line
        return self.field_lines.get(name, self.line)
