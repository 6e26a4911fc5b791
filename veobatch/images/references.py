"""Which entries of a job's `images` name a local file, and which file. Pure: no I/O.

An entry is a link (http:// or https://), an inline image (data:), or else a local file: a
path (relative to the job file's folder, or absolute, `~` expanded) or a `file://` URL.
"""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import unquote, urlsplit

_REMOTE: Final = ("https://", "http://", "data:")
_OTHER_SCHEME: Final = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
MAX_PATH_CHARS: Final = 1024


def is_local(entry: object) -> bool:
    """True when `entry` names a file on this machine (a path or a file:// URL)."""
    if not isinstance(entry, str) or not entry.strip() or entry.startswith(_REMOTE):
        return False
    return entry.startswith("file://") or _OTHER_SCHEME.match(entry) is None


def local_path(entry: str) -> str:
    """The path that a local entry names, as written (`~` and relative paths unresolved).

    Raises ValueError with the reason when the entry cannot name a file."""
    if len(entry) > MAX_PATH_CHARS:
        raise ValueError(f"is a path of {len(entry):,} characters; at most {MAX_PATH_CHARS:,}")
    if entry.startswith("file://"):
        parts = urlsplit(entry)
        if parts.netloc not in ("", "localhost"):
            raise ValueError(f"file://{parts.netloc}/... names another host; give a local path")
        path = unquote(parts.path)
        if not path:
            raise ValueError("file:// without a path")
        return path
    if entry != entry.strip():
        raise ValueError("has spaces around it")
    return entry
