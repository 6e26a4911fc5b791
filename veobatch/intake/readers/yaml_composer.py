"""A YAML composer that refuses what could exhaust memory: the guard of the YAML reader.

PyYAML's own composer builds a whole document as a tree of nodes. This one builds one node
(with its children) at a time from the parser's events, so the YAML reader can take the jobs
one by one, and it refuses nesting deeper than MAX_YAML_DEPTH and an alias to an unknown
anchor. `expansion_problem` then sizes a node with its aliases expanded, before any Python
object is built from it: a job may hold at most MAX_JOB_NODES values and MAX_JOB_TEXT
characters. Problems raise `JobFileError` with the file name and line.
"""

from __future__ import annotations

from typing import Any, Final

import yaml

from veobatch.errors import JobFileError
from veobatch.intake.readers.formats import MAX_JOB_NODES, MAX_JOB_TEXT, MAX_YAML_DEPTH

_NODE_OF_EVENT: Final[dict[type, type[yaml.Node]]] = {
    yaml.ScalarEvent: yaml.ScalarNode,
    yaml.SequenceStartEvent: yaml.SequenceNode,
    yaml.MappingStartEvent: yaml.MappingNode,
}


class GuardedComposer:
    """Composes nodes from `loader`'s events; anchors are kept across calls, for the whole
    file, so a job may refer to an anchor set in `defaults:` or in an earlier job."""

    def __init__(self, loader: Any, name: str) -> None:
        self.loader = loader
        self.name = name
        self.anchors: dict[str, yaml.Node] = {}

    def compose(self, depth: int = 0) -> yaml.Node:
        """Build one node (and its children) from parser events, as PyYAML's composer does."""
        loader = self.loader
        event: Any = loader.get_event()
        start: Any = event.start_mark
        if depth > MAX_YAML_DEPTH:
            message = f"is nested more than {MAX_YAML_DEPTH} levels deep"
            raise JobFileError(self.name, message, start.line + 1)
        if isinstance(event, yaml.AliasEvent):
            try:
                return self.anchors[str(event.anchor)]
            except KeyError:
                message = f"unknown alias *{event.anchor}"
                raise JobFileError(self.name, message, start.line + 1) from None
        kind = _NODE_OF_EVENT[type(event)]
        tag = event.tag
        if tag is None or tag == "!":
            tag = loader.resolve(kind, getattr(event, "value", None), event.implicit)
        node: yaml.Node
        if kind is yaml.ScalarNode:
            node = yaml.ScalarNode(tag, event.value, start, event.end_mark, event.style)
        elif kind is yaml.SequenceNode:
            node = yaml.SequenceNode(tag, [], start, None, event.flow_style)
            while not loader.check_event(yaml.SequenceEndEvent):
                node.value.append(self.compose(depth + 1))
            node.end_mark = loader.get_event().end_mark
        else:
            node = yaml.MappingNode(tag, [], start, None, event.flow_style)
            while not loader.check_event(yaml.MappingEndEvent):
                node.value.append((self.compose(depth + 1), self.compose(depth + 1)))
            node.end_mark = loader.get_event().end_mark
        if event.anchor is not None:
            self.anchors[event.anchor] = node
        return node


def expansion_problem(node: yaml.Node) -> str | None:
    """Why `node` is too big once its aliases are expanded (None if it is not): more than
    MAX_JOB_NODES values or MAX_JOB_TEXT characters. Anchors and aliases share nodes, so each
    is sized once; a few hundred bytes of nested aliases cannot become gigabytes."""
    sizes: dict[int, tuple[int, int]] = {}  # node id: (values, characters) expanded
    stack: list[tuple[yaml.Node, bool]] = [(node, False)]
    while stack:
        item, children_done = stack.pop()
        if id(item) in sizes:
            continue
        if isinstance(item, yaml.ScalarNode):
            sizes[id(item)] = (1, len(item.value))
            continue
        children = (
            [child for pair in item.value for child in pair]
            if isinstance(item, yaml.MappingNode)
            else list(item.value)
        )
        if not children_done:
            stack.append((item, True))
            stack.extend((child, False) for child in children if id(child) not in sizes)
            continue
        values = 1 + sum(sizes[id(child)][0] for child in children)
        chars = sum(sizes[id(child)][1] for child in children)
        sizes[id(item)] = (min(values, MAX_JOB_NODES + 1), min(chars, MAX_JOB_TEXT + 1))
    values, chars = sizes[id(node)]
    if values > MAX_JOB_NODES:
        return f"expands to more than {MAX_JOB_NODES:,} values (YAML aliases inside aliases?)"
    if chars > MAX_JOB_TEXT:
        return f"expands to more than {MAX_JOB_TEXT:,} characters of text"
    return None
