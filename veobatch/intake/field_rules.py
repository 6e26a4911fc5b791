"""The rules one value of a job must keep, each a pure function that says what is wrong
(or None): lengths, the characters no stored text may hold, what an image reference, a
pass-through field and a field's name may be, and the script of a prompt.

`job_checker.JobChecker` applies them to a row, and `column_checks` to a column of rows at
once; both take their limits and character classes from here.
"""

from __future__ import annotations

import difflib
import functools
import json
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Callable
from typing import Any, Final

from veobatch.catalog import ASPECT_RATIOS
from veobatch.intake.raw_job import ID_ALIAS, JOB_FIELDS
from veobatch.store.export_columns import OUTPUT_COLUMNS

MAX_PROMPT_CHARS: Final = 4000
MAX_REF_CHARS: Final = 200
MODEL_COLUMN_CHARS: Final = 64  # the jobs table's `model` (store.tables): a catalogue name fits
MAX_IMAGE_BYTES: Final = 20 * 1024 * 1024  # Google's limit for one input image
MAX_EXTRA_DEPTH: Final = 8  # nesting of a pass-through field's value
MAX_EXTRA_BYTES: Final = 16 * 1024  # its size as JSON
# Provider fields seen in relay clients: passed through, but checked when we know their type.
KNOWN_EXTRAS: Final = ("enable_upsample", "notify_hook")
BOOL_FIELDS: Final = frozenset({"enhance_prompt", "enable_upsample"})
OUTPUT_FIELDS: Final = frozenset(OUTPUT_COLUMNS)
_KNOWN_NAMES: Final = (*JOB_FIELDS, ID_ALIAS, *KNOWN_EXTRAS)
ASPECTS_OR_EMPTY: Final = frozenset({*ASPECT_RATIOS, ""})

_SURROGATES: Final = re.compile(r"[\ud800-\udfff]")
URL_PREFIXES: Final = ("https://", "http://")
# Usable image references contain no whitespace, quotes, backslashes or control characters,
# which also lets the fast path write them into JSON without an escaping pass.
_URL_CHARS: Final = r'[^\s"\\\x00-\x1f\x7f\ud800-\udfff]'
# A host's first character, then any of _URL_CHARS. (Not `[host]+` then `_URL_CHARS*`: the
# two overlap, and a regex that can split a link in as many ways as it has characters tried
# each way on a link that failed: three links of 200 letters and a space took 18 s.)
_URL: Final = rf"https?://[^\s/?#\"\\\x00-\x1f\x7f\ud800-\udfff]{_URL_CHARS}*"
# Characters no stored text may hold: NUL and the other control characters (a prompt may
# have tabs and line breaks), and lone surrogates (text that is not Unicode, as JSON's
# "\ud800" makes); the databases refuse them, or store what the provider cannot read.
# A name (a batch's, a row's id) shows in files, pages and hints: no control character, and no
# bidi control or zero-width character (`spring\u202egnp.exe` would read as `springexe.png`).
_INVISIBLE: Final = r"\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff"
BAD_NAME_CHARS: Final = re.compile(rf"[\x00-\x1f\x7f-\x9f\ud800-\udfff{_INVISIBLE}]")
BAD_PROMPT_CHARS: Final = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
_HTTP_URL: Final = re.compile(_URL)
_DATA_URI: Final = re.compile(rf"data:image/[\w.+-]+(?:;[\w.+=-]+)*,{_URL_CHARS}*")
# http(s) URLs joined by newlines (which no URL contains): a whole `images` list in one call.
PLAIN_IMAGES: Final = re.compile(rf"{_URL}(?:\n{_URL})*")


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
    """What is wrong with one entry of `images` that is not a local file, or None if it is a
    usable link or data: URI."""
    if not isinstance(value, str):
        return f"must be a URL string, got {type(value).__name__}"
    if _HTTP_URL.fullmatch(value):
        return None
    if not value.strip():
        return "is empty (a stray '|' between URLs?)"
    if value.startswith(URL_PREFIXES):
        return f"{short_repr(value)} is not a valid URL (no host, or a space or quote: write %20)"
    if value.startswith("data:"):
        if not _DATA_URI.fullmatch(value):
            return "a data: URI must look like data:image/png;base64,...."
        header, _, payload = value.partition(",")
        size = len(payload) * 3 // 4 if header.endswith(";base64") else len(payload)
        if size > MAX_IMAGE_BYTES:
            return f"the embedded image is {size / 2**20:.1f} MB; the provider takes at most 20 MB"
        return None
    scheme = value.partition("://")[0]
    return (
        f"{short_repr(value)}: {scheme}:// is not supported; give an http(s) URL, a data: URI or "
        "the path of an image file"
    )


def local_refused(value: str) -> str:
    """Why a path is refused where the jobs came over HTTP, Celery or Python's `add`: the
    caller's paths name files of the server, which it must never be made to read."""
    return (
        f"{short_repr(value)} is a file path; jobs sent as data (HTTP, Celery, Client.add) give "
        "http(s) URLs or data: URIs: load the file with `veo-batch load`, or upload a .zip of "
        "the job file and its images"
    )


def is_plain_image(value: object) -> bool:
    """A usable image reference that can go into JSON without escaping (the fast path)."""
    return type(value) is str and (
        _HTTP_URL.fullmatch(value) is not None
        or (value.startswith("data:") and image_problem(value) is None)
    )


def short_repr(value: str, limit: int = 60) -> str:
    """A value quoted for a message, cut to `limit` characters."""
    return repr(value if len(value) <= limit else value[: limit - 3] + "...")


def bool_problem(value: object) -> str:
    """The message for a boolean field holding something else."""
    return f"must be true or false, got {short_repr(str(value))}"


def checked_prompt(prompt: Any, bad: Callable[[str, str], None]) -> str:
    """The prompt as text, telling `bad` what is wrong with it."""
    if not isinstance(prompt, str) or not prompt.strip():
        bad(
            "prompt",
            "must be text" if prompt and not isinstance(prompt, str) else "missing or empty",
        )
        return "" if prompt is None else str(prompt)
    if len(prompt) > MAX_PROMPT_CHARS:
        bad("prompt", f"is {len(prompt)} characters; the limit is {MAX_PROMPT_CHARS}")
    if (problem := text_problem(prompt, BAD_PROMPT_CHARS)) is not None:
        bad("prompt", problem)
    return prompt


def extra_problem(value: Any) -> str | None:
    """Why a pass-through value cannot be sent (None: it can): nested deeper than
    MAX_EXTRA_DEPTH, or larger than MAX_EXTRA_BYTES as JSON. The depth is found without
    recursion: the depth is what a hostile value attacks."""
    if isinstance(value, str):
        text = text_problem(value, BAD_PROMPT_CHARS)
        return text or _too_long(len(value.encode("utf-8", errors="surrogatepass")))
    if isinstance(value, float) and not math.isfinite(value):
        return "is not a finite number"
    if not isinstance(value, dict | list):
        return None
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_EXTRA_DEPTH:
            return f"is nested more than {MAX_EXTRA_DEPTH} deep"
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError):
        return "is not a JSON value (or holds a number that is not finite)"
    if "\\u0000" in text:
        return "holds a NUL character"
    return text_problem(text, _SURROGATES) or _too_long(len(text.encode("utf-8", "surrogatepass")))


# What a prompt's letters are written in, by the first word of their Unicode names.
_SCRIPTS: Final = {
    "CJK": "Chinese",
    "HIRAGANA": "Japanese",
    "KATAKANA": "Japanese",
    "HANGUL": "Korean",
    "CYRILLIC": "Cyrillic",
    "ARABIC": "Arabic",
    "HEBREW": "Hebrew",
    "GREEK": "Greek",
    "THAI": "Thai",
    "DEVANAGARI": "Devanagari",
}


@functools.lru_cache(maxsize=4096)
def _script_word(char: str) -> str:
    """The first word of a character's Unicode name (`CJK`, `HIRAGANA`, ...): a prompt's
    letters repeat, from one prompt to the next too, so each is looked up once."""
    return unicodedata.name(char, "?").split()[0]


def script_problem(prompt: str) -> str | None:
    """Why a prompt mostly not in Latin script is worth a warning (Veo takes English), or
    None. Only asked when `enhance_prompt` is not true (the provider then translates)."""
    if prompt.isascii():
        return None
    letters = [char for char in prompt if char.isalpha()]
    # Latin: below U+0250 (Basic Latin to Latin Extended-B), or Latin Extended Additional.
    other = [c for c in letters if not (c < "\u0250" or "\u1e00" <= c <= "\u1eff")]
    if not other or len(other) * 2 <= len(letters):
        return None
    word = Counter(map(_script_word, other)).most_common(1)[0][0]
    script = _SCRIPTS.get(word, word.title())
    return (
        f"is mostly in {script} script and enhance_prompt is not true: Veo takes English "
        "prompts, so this video would be paid for and usually wrong (write it in English, or "
        "set enhance_prompt: true to let the provider translate it)"
    )


def text_problem(text: str, bad: re.Pattern[str]) -> str | None:
    """What in `text` no stored text may hold (the first one, by position), or None."""
    found = bad.search(text)
    if found is None:
        return None
    char, where = found.group(), f"at character {found.start() + 1}"
    if char == "\x00":
        return f"holds a NUL character {where}"
    if "\ud800" <= char <= "\udfff":
        return f"holds a lone surrogate (U+{ord(char):04X}, not Unicode text) {where}"
    if re.fullmatch(f"[{_INVISIBLE}]", char):
        return f"holds an invisible or direction-changing character (U+{ord(char):04X}) {where}"
    return f"holds a control character (U+{ord(char):04X}) {where}"


def _too_long(size: int) -> str | None:
    if size > MAX_EXTRA_BYTES:
        return f"is {size:,} bytes; a pass-through field holds at most {MAX_EXTRA_BYTES:,}"
    return None
