"""`JobChecker.check`'s rules run over whole columns of rows at once (`JobChecker.check_plain`):
each a C loop over a column (`map`, `set`, one pass over the joined texts) that only answers
"does every row keep it?". A block of rows any of them refuses goes through `check`, row by
row, which says what is wrong; `tests/test_check_plain.py` holds the two to one outcome.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from itertools import chain, repeat
from typing import Any, Final

from veobatch.catalog import ImageRange
from veobatch.intake.field_rules import (
    ASPECTS_OR_EMPTY,
    BAD_NAME_CHARS,
    BAD_PROMPT_CHARS,
    MAX_PROMPT_CHARS,
    MAX_REF_CHARS,
    PLAIN_IMAGES,
    URL_PREFIXES,
)

_PRINTABLE_ASCII: Final = bytes(range(0x20, 0x7F))
# Every byte of UTF-8 but the characters of BAD_PROMPT_CHARS that it can hold.
_PROMPT_BYTES: Final = _PRINTABLE_ASCII + b"\t\n\r" + bytes(range(0x80, 0x100))
_NO_HOST: Final = re.compile(r"://(?:[/?#\s]|$)")  # a link's scheme with no host after it
_ASPECTS_OR_NONE: Final = frozenset({*ASPECTS_OR_EMPTY, None})
_ENHANCE_TYPES: Final = frozenset({type(None), bool, str})  # (text: only "", see check_plain)


def refs_of(refs: Sequence[Any], lines: Sequence[int]) -> Sequence[Any]:
    """The rows' ids as `check` takes them: a missing one is the row's line, a number text."""
    if None not in refs and "" not in refs and int not in set(map(type, refs)):
        return refs
    return [
        str(line) if ref is None or ref == "" else str(ref) if type(ref) is int else ref
        for ref, line in zip(refs, lines, strict=True)
    ]


def fits(span: ImageRange | None, images: int) -> bool:
    return span is not None and span.low <= images <= span.high


def plain_columns(
    refs: Sequence[Any],
    prompts: Sequence[Any],
    models: Sequence[Any],
    images: Sequence[Any],
    aspects: Sequence[Any],
    enhances: Sequence[Any],
) -> bool:
    """Whether every row's values pass `check`'s rules of types, lengths and characters
    (whole columns at once). May raise TypeError for a value of another type."""
    return (
        set(map(type, refs)) | set(map(type, prompts)) | set(map(type, models)) == {str}
        and set(map(type, images)) == {list}
        and set(aspects) <= _ASPECTS_OR_NONE
        and set(map(type, enhances)) <= _ENHANCE_TYPES
        and {e for e in enhances if type(e) is str} <= {""}
        and max(map(len, refs)) <= MAX_REF_CHARS
        and not any(map(str.isspace, refs))
        and _clean_names(" ".join(refs))
        and 0 < min(map(len, prompts)) <= max(map(len, prompts)) <= MAX_PROMPT_CHARS
        and not any(map(str.isspace, prompts))
        and _clean_prompts(" ".join(prompts))
        and _plain_links(images)
    )


def _clean_names(text: str) -> bool:
    """Whether `text` holds no character of BAD_NAME_CHARS. For ASCII text, the common case,
    those are its control characters, which bytes.translate finds four times as fast as the
    search."""
    if text.isascii():
        return not text.encode("ascii").translate(None, _PRINTABLE_ASCII)
    return BAD_NAME_CHARS.search(text) is None


def _clean_prompts(text: str) -> bool:
    """Whether `text` holds no character of BAD_PROMPT_CHARS: once in UTF-8 (where a lone
    surrogate cannot go), the bytes left when every other byte is deleted."""
    try:
        return not text.encode("utf-8").translate(None, _PROMPT_BYTES)
    except UnicodeEncodeError:
        return BAD_PROMPT_CHARS.search(text) is None


def _plain_links(images: Sequence[list[str]]) -> bool:
    """Whether every entry of every row's images is a plain http(s) link (`PLAIN_IMAGES`).
    Links that are all printable, with no space, quote or backslash, that each start with
    the scheme and a host, are: that is told without the regex, which then only decides for
    the others."""
    links = list(chain.from_iterable(images))
    text = " ".join(links)
    if (
        (_clean_names(text) if text.isascii() else text.isprintable())
        and text.count(" ") == len(links) - 1
        and '"' not in text
        and "\\" not in text
        and all(map(str.startswith, links, repeat(URL_PREFIXES)))
        and _NO_HOST.search(text) is None
    ):
        return True
    return PLAIN_IMAGES.fullmatch("\n".join(map("\n".join, images))) is not None


def not_ascii(text: str) -> bool:
    return not text.isascii()


def json_lists(images: Sequence[list[str]]) -> list[str]:
    """Each row's plain links as the JSON list `check` stores (`["a", "b"]`), made by joining
    all rows' links at once: no link holds a NUL, which separates the rows."""
    lists = '"]\0["'.join(map('", "'.join, images))
    return ('["' + lists + '"]').split("\0")
