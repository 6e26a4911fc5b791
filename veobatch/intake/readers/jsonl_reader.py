"""The JSON Lines reader: one JSON object per line, one job per object; blank lines are skipped.

If the first line with text is not a JSON object, the file is probably not JSON Lines at all
and the whole file is refused; a bad line after that becomes a broken row with its number.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import IO

from veobatch.errors import JobFileError
from veobatch.intake.raw_job import RawJob


def read_jsonl(text: IO[str], name: str) -> Iterator[RawJob]:
    rows = 0
    for number, line in enumerate(text, 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            if rows == 0:
                raise JobFileError(
                    name, f"is not JSON Lines: {exc.msg} at column {exc.colno}", number
                ) from None
            yield RawJob.broken(number, f"not valid JSON: {exc.msg} at column {exc.colno}")
        except RecursionError:  # a line nested thousands deep
            yield RawJob.broken(number, "the JSON is nested too deep to be a job")
        else:
            if not isinstance(value, dict):
                message = f"each line must be a JSON object, this one is {type(value).__name__}"
                if rows == 0:
                    raise JobFileError(name, message, number)
                yield RawJob.broken(number, message)
            else:
                yield RawJob.from_mapping(number, value)
        rows += 1
    if rows == 0:
        raise JobFileError(name, "is empty: no jobs to load")
