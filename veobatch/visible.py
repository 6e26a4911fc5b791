"""Text from strangers (a relay's answers, a job file's fields) made safe to show.

A relay's failure reason may carry escape sequences that clear a terminal, set its title or
plant a hyperlink; a name may carry right-to-left overrides and zero-width characters that
make `spring\\u202egnp.exe` read as `springexe.png`. `visible` shows every such character as
its escape (`\\x1b`, `\\u202e`), leaving the rest (Chinese included) as it is; `shown` also
cuts a long value, for messages and log lines.
"""

from __future__ import annotations

import unicodedata
from typing import Any, Final

SHOWN: Final = 120  # characters of a raw value in a message
_KEPT: Final = frozenset("\n\t")


def hidden(char: str) -> bool:
    """Whether `char` would act on a terminal or a page rather than show: a control, a
    format character (bidi controls, zero-width), a separator or an unassigned one."""
    return not char.isprintable() or unicodedata.category(char) == "Cf"


def visible(text: str, *, lines: bool = True) -> str:
    """`text` with every hidden character escaped (line breaks and tabs kept, if `lines`)."""
    if text.isascii() and text.isprintable():
        return text
    return "".join(_escape(c) if hidden(c) and not (lines and c in _KEPT) else c for c in text)


def shown(value: Any) -> str:
    """A raw value fit for a message or a log line: on one line, escaped, cut if long."""
    text = value if isinstance(value, str) else repr(value)
    cut = text if len(text) <= SHOWN else f"{text[:SHOWN]}… ({len(text):,} chars)"
    return visible(cut, lines=False)


def _escape(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
