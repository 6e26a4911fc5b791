"""Short, real, playable videos for the mock provider: a slow zoom over the job's first image,
landscape (16:9, 640 by 360) or, for a job that asked for 9:16, portrait (360 by 640).

Encoded with PyAV (FFmpeg's libraries, shipped in its wheels): H.264 in MP4 with the index at
the front, so a browser starts playing before the end arrives. Each distinct image is encoded
once and kept (by its sha256); a job whose first image the mock never saw (a link to another
machine) gets a drawn picture instead.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import threading
from typing import Final

import av
from PIL import Image, ImageDraw

SIZE: Final = (640, 360)
PORTRAIT: Final = (360, 640)
FPS: Final = 24
SECONDS: Final = 3.0
ZOOM: Final = 0.15  # how much closer the last frame is than the first
_CACHED: Final = 256  # clips kept in memory, most recent first


class ClipMaker:
    """Makes (and keeps) one clip per distinct image and orientation; safe to share between
    threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._clips: dict[str, bytes] = {}

    def clip_for(self, image: bytes | None, *, portrait: bool = False) -> bytes:
        key = hashlib.sha256(image).hexdigest() if image else "drawn"
        key += ":portrait" if portrait else ":landscape"
        with self._lock:
            found = self._clips.get(key)
        if found is not None:
            return found
        made = make_clip(_picture(image), size=PORTRAIT if portrait else SIZE)
        with self._lock:
            self._clips[key] = made
            while len(self._clips) > _CACHED:
                self._clips.pop(next(iter(self._clips)))
        return made


def make_clip(
    picture: Image.Image, seconds: float = SECONDS, size: tuple[int, int] = SIZE
) -> bytes:
    """`seconds` of a slow zoom into `picture`, cropped to `size`'s shape, as MP4 bytes."""
    frames = max(1, round(seconds * FPS))
    width, height = picture.size
    aspect = size[0] / size[1]
    fd, path = tempfile.mkstemp(suffix=".mp4", prefix="veo-mock-")  # the muxer seeks back
    os.close(fd)
    try:
        with av.open(path, mode="w", format="mp4", options={"movflags": "+faststart"}) as out:
            stream = out.add_stream("libx264", rate=FPS, options={"crf": "26", "preset": "fast"})
            stream.width, stream.height = size
            stream.pix_fmt = "yuv420p"
            for index in range(frames):
                closer = 1.0 + ZOOM * index / frames
                crop_w = min(width, height * aspect) / closer
                crop_h = crop_w / aspect
                left, top = (width - crop_w) / 2, (height - crop_h) / 2
                frame = picture.resize(
                    size, Image.Resampling.BILINEAR, box=(left, top, left + crop_w, top + crop_h)
                )
                picture_frame = av.VideoFrame.from_image(frame)  # type: ignore[no-untyped-call]
                out.mux(stream.encode(picture_frame))
            out.mux(stream.encode())
        with open(path, "rb") as made:
            return made.read()
    finally:
        os.unlink(path)


def _picture(image: bytes | None) -> Image.Image:
    if image:
        try:
            with Image.open(io.BytesIO(image)) as opened:
                return opened.convert("RGB")
        except (OSError, ValueError, Image.DecompressionBombError):
            pass
    drawn = Image.new("RGB", (1280, 720), (32, 48, 72))
    pen = ImageDraw.Draw(drawn)
    for ring in range(8):  # rings around the middle, to show the zoom
        radius = 320 - 36 * ring
        box = (640 - radius, 360 - radius * 0.9, 640 + radius, 360 + radius * 0.9)
        pen.ellipse(box, outline=(90 + 20 * ring, 140, 200 - 10 * ring), width=10)
    return drawn
