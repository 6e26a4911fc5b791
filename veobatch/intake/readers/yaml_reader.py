"""The YAML reader: `defaults:` (optional, before `jobs:`) and `jobs:`, or a bare list of jobs.

The file is never loaded whole: the guarded composer (`yaml_composer`) builds one job's nodes
at a time, each is sized before it becomes Python values, and each field keeps the line it is
on, for the problems the checker finds. `defaults:` fill in what a job leaves out. A YAML
syntax error, or a file shaped otherwise, raises `JobFileError` with the file name and line.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from typing import IO, Any

import yaml

from veobatch.errors import JobFileError
from veobatch.intake.raw_job import RawJob
from veobatch.intake.readers.yaml_composer import GuardedComposer, expansion_problem

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_yaml(text: IO[str], name: str) -> Iterator[RawJob]:
    """`defaults:` (optional, before `jobs:`) and `jobs:`, or a bare list of jobs.

    Jobs are composed one at a time from the parser's events, keeping each field's line.
    """
    loader = _Loader(text)
    try:
        yield from _YamlJobs(loader, name).read()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise JobFileError(name, f"YAML syntax error: {exc.problem or exc.context}", line) from None
    except yaml.YAMLError as exc:
        raise JobFileError(name, f"YAML error: {exc}") from None
    finally:
        loader.dispose()


class _YamlJobs:
    def __init__(self, loader: Any, name: str) -> None:
        self.loader = loader
        self.name = name
        self._compose = GuardedComposer(loader, name).compose
        self.defaults: dict[str, Any] = {}
        self.default_lines: dict[str, int] = {}

    def read(self) -> Iterator[RawJob]:
        loader = self.loader
        count: int
        loader.get_event()  # stream start
        if loader.check_event(yaml.StreamEndEvent):
            raise JobFileError(self.name, "is empty: no jobs to load")
        loader.get_event()  # document start
        if loader.check_event(yaml.SequenceStartEvent):
            count = yield from self._jobs()
        elif loader.check_event(yaml.MappingStartEvent):
            count = yield from self._top_mapping()
        else:
            node = self._compose()
            raise JobFileError(
                self.name,
                "expected `jobs:` (a list of jobs, optionally after `defaults:`); "
                f"found {_kind(node)}",
                node.start_mark.line + 1,
            )
        if count == 0:
            raise JobFileError(self.name, "`jobs:` is empty: no jobs to load")

    def _top_mapping(self) -> Generator[RawJob, None, int]:
        loader = self.loader
        loader.get_event()
        count: int | None = None
        while not loader.check_event(yaml.MappingEndEvent):
            key_node = self._compose()
            key, line = str(key_node.value), key_node.start_mark.line + 1
            if key == "jobs":
                if not loader.check_event(yaml.SequenceStartEvent):
                    raise JobFileError(self.name, "`jobs:` must be a list of jobs", line)
                count = yield from self._jobs()
            elif key == "defaults":
                if count is not None:
                    raise JobFileError(self.name, "`defaults:` must come before `jobs:`", line)
                node = self._compose()
                if not isinstance(node, yaml.MappingNode):
                    raise JobFileError(
                        self.name, "`defaults:` must be a mapping of job fields", line
                    )
                if (too_big := expansion_problem(node)) is not None:
                    raise JobFileError(self.name, f"`defaults:` {too_big}", line)
                self.defaults, self.default_lines = self._fields(node)
            else:
                hint = " (did you mean 'jobs'?)" if key.lower().startswith("job") else ""
                raise JobFileError(
                    self.name,
                    f"unknown top-level key {key!r}{hint}; a job file has `defaults:` and `jobs:`",
                    line,
                )
        if count is None:
            raise JobFileError(self.name, "no `jobs:` list")
        return count

    def _jobs(self) -> Generator[RawJob, None, int]:
        loader = self.loader
        loader.get_event()  # sequence start
        count = 0
        while not loader.check_event(yaml.SequenceEndEvent):
            node = self._compose()
            line = node.start_mark.line + 1
            count += 1
            if not isinstance(node, yaml.MappingNode):
                message = f"each job must be a mapping of fields, this one is {_kind(node)}"
                yield RawJob.broken(line, message)
                continue
            if (too_big := expansion_problem(node)) is not None:
                yield RawJob.broken(line, f"the job {too_big}")
                continue
            values, lines = self._fields(node)
            if self.defaults:
                values = {**self.defaults, **values}
                lines = {**self.default_lines, **lines}
            yield RawJob.from_mapping(line, values, lines)
        loader.get_event()
        return count

    def _fields(self, node: yaml.MappingNode) -> tuple[dict[str, Any], dict[str, int]]:
        loader = self.loader
        loader.flatten_mapping(node)  # applies `<<: *anchor` merge keys
        values: dict[str, Any] = {}
        lines: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(loader.construct_object(key_node, deep=True))
            values[key] = loader.construct_object(value_node, deep=True)
            lines[key] = value_node.start_mark.line + 1
        loader.constructed_objects = {}  # keep memory flat: nothing refers back to old rows
        return values, lines


def _kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.ScalarNode):
        return f"the text {node.value[:40]!r}"
    return "a list" if isinstance(node, yaml.SequenceNode) else "a mapping"
