"""Where a row's video is saved and what a video file is: names, folders and the first bytes
of a video, with no HTTP (pages, answers and `run` use them without the downloader)."""

from __future__ import annotations

import hashlib
import re
import tempfile
from pathlib import Path, PurePosixPath
from typing import Final
from urllib.parse import urlsplit

from veobatch.errors import WriteError

_UNSAFE: Final = re.compile(r"[^A-Za-z0-9._-]")
_EXTENSIONS: Final = frozenset({".mp4", ".webm", ".mov", ".mkv"})


def check_directory(directory: Path) -> None:
    """Fail at once, before anything is spent, if videos cannot be written into `directory`."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as exc:
        raise WriteError(
            f"cannot save videos into {directory}: {exc.strerror}; choose another --download "
            "folder (or VEO_DOWNLOAD_DIR)"
        ) from None


def safe_name(text: str) -> str:
    """A file name made from a batch name or row ref; a short hash keeps changed names apart."""
    name = _UNSAFE.sub("_", text)[:120]
    if name != text or name.startswith("."):
        name = f"{name.lstrip('.') or 'row'}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"
    return name


def is_video_path_of(path: Path, batch: str, ref: str) -> bool:
    """Whether `path` is where a download of row `ref` of `batch` is written (`video_path`,
    under any folder): its name and its folder's are those the row's own would be."""
    return (
        path.suffix in _EXTENSIONS
        and path.stem == safe_name(ref)
        and path.parent.name == safe_name(batch)
    )


def video_path(directory: Path, batch: str, ref: str, url: str) -> Path:
    suffix = PurePosixPath(urlsplit(url).path).suffix.lower()
    name = safe_name(ref) + (suffix if suffix in _EXTENSIONS else ".mp4")
    return directory / safe_name(batch) / name


def video_container(head: bytes) -> str | None:
    """The kind of video file `head` (its first 12 bytes or more) begins: MP4 or MOV (an
    ISO box: `ftyp`, or a QuickTime file's first atom), WebM or Matroska (EBML); None for
    anything else (an HTML page, a JSON error, text)."""
    if len(head) >= 8 and head[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip"):
        return "mp4"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "webm"
    return None


def part_of(target: Path) -> Path:
    """Where a video is written until every byte has arrived."""
    return target.with_name(target.name + ".part")
