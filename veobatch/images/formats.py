"""What an image file is, from its first bytes, and whether its shape suits the video.

Pure: no I/O. The extension is never trusted: a `.jpg` that is a PDF is a PDF.
"""

from __future__ import annotations

from typing import Final

# The formats the relays take, by name: their MIME type and the extension we store them under.
FORMATS: Final = {
    "png": ("image/png", "png"),
    "jpeg": ("image/jpeg", "jpg"),
    "webp": ("image/webp", "webp"),
}
SNIFF_BYTES: Final = 16  # enough of the head to tell every format below apart

# What else a file named like a photo often is, to say so.
_OTHERS: Final = (
    (b"%PDF", "a PDF document"),
    (b"GIF8", "a GIF"),
    (b"PK\x03\x04", "a zip archive (or an Office document)"),
    (b"BM", "a BMP bitmap"),
    (b"II*\x00", "a TIFF"),
    (b"MM\x00*", "a TIFF"),
    (b"<svg", "an SVG drawing"),
    (b"<?xml", "an XML file"),
)
# How far an image's width/height may be from the video's before the row is warned: a 4:3
# photo in a 16:9 video (ratio 1.33) is fine, a portrait photo in it (3.2) is cropped hard.
SHAPE_TOLERANCE: Final = 1.5
ASPECTS: Final = {"16:9": 16 / 9, "9:16": 9 / 16}


def sniff(head: bytes) -> str | None:
    """The format name of FORMATS that `head` (a file's first bytes) starts, or None."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return None


def what_it_is(head: bytes) -> str:
    """Words for a file that is not an image we take."""
    if len(head) >= 12 and head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"heic", b"heix", b"mif1", b"msf1"):
            return "a HEIC photo (save it as JPEG)"
        return "a video or MP4-family file"
    for signature, name in _OTHERS:
        if head.lstrip().startswith(signature):
            return name
    if not head:
        return "an empty file"
    if all(32 <= byte < 127 or byte in (9, 10, 13) for byte in head):
        return "a text file"
    return "not an image this tool knows"


def shape_warning(width: int, height: int, aspect_ratio: str | None) -> str | None:
    """A warning when a `width` by `height` image is far from the video's `aspect_ratio` (the
    provider crops it to fit), else None. No aspect ratio given: nothing to compare with."""
    target = ASPECTS.get(aspect_ratio or "")
    if target is None or width <= 0 or height <= 0:
        return None
    ratio = width / height
    if max(ratio / target, target / ratio) <= SHAPE_TOLERANCE:
        return None
    shape = "portrait" if ratio < 1 else "landscape" if ratio > 1 else "square"
    return (
        f"is {width}×{height} ({shape}) but the row asks for a {aspect_ratio} video: the "
        "provider will crop it"
    )
