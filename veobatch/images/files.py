"""A local image, checked at load: the file exists and is a regular file, is really a PNG,
JPEG or WebP (by its bytes, not its name), decodes, and fits the size the relay takes.

What a row keeps of it is `LocalImage.stored()`: path, size, sha256, pixels, type; never the
bytes. An image over the size limit (or with an EXIF orientation the provider would ignore) is
re-encoded, and scaled down if needed, into a content-addressed folder, and the row points at
that copy; with `oversize="refuse"` a too-big image is a problem of its row instead.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from veobatch.errors import ImageError
from veobatch.images.formats import FORMATS, SNIFF_BYTES, sniff, what_it_is
from veobatch.images.references import local_path
from veobatch.settings import Settings

if TYPE_CHECKING:  # Pillow is imported where a picture is opened: a load of links needs none
    from PIL import Image

# A file larger than this is not a photo we scale down: it is refused without being read.
MAX_SOURCE_BYTES: Final = 64 * 1024 * 1024
MAX_PIXELS: Final = 100_000_000  # a "photo" larger than this is a decompression bomb
_ORIENTATION: Final = 0x0112  # the EXIF tag
_SHRINK_STEPS: Final = 12


@dataclass(frozen=True, slots=True)
class LocalImage:
    """One checked image: the file that will be sent, and what the row keeps of it."""

    name: str  # as the job file wrote it (shown; `path` is this machine's business)
    path: str  # absolute path of the file sent (a scaled-down copy when `original` is set)
    bytes: int
    sha256: str
    width: int
    height: int
    format: str  # a key of FORMATS
    original: str | None = None  # the user's file, when `path` is a copy made from it

    def stored(self) -> dict[str, Any]:
        kept: dict[str, Any] = {
            "name": self.name,
            "path": self.path,
            "bytes": self.bytes,
            "sha256": self.sha256,
            "width": self.width,
            "height": self.height,
            "type": FORMATS[self.format][0],
        }
        if self.original is not None:
            kept["original"] = self.original
        return kept


@dataclass(frozen=True, slots=True)
class ImageFolder:
    """Where a job file's relative image paths point (`base`, its folder). With a `root` (an
    uploaded zip, unpacked there): only relative paths that stay inside `root`, and every
    image is copied into the store, since `root` is a temporary folder."""

    base: Path
    root: Path | None = None

    @property
    def confined(self) -> bool:
        return self.root is not None


@dataclass(frozen=True, slots=True)
class ImageRules:
    """The limits of one deployment (VEO_IMAGE_MAX_MB, VEO_IMAGE_OVERSIZE, VEO_DATA_DIR)."""

    max_bytes: int = 4 * 1024 * 1024
    shrink: bool = True  # else an image over `max_bytes` is refused
    store: Path = Path("veo-batch-data") / "images"  # content-addressed copies

    @classmethod
    def of(cls, settings: Settings) -> ImageRules:
        return cls(
            max_bytes=int(settings.image_max_mb * 1024 * 1024),
            shrink=settings.image_oversize == "shrink",
            store=Path(settings.data_dir).absolute() / "images",
        )


class ImageInspector:
    """Checks the local images of one load; each entry is looked at once (a photo named by
    1,000 rows is read once), and so is each problem."""

    def __init__(self, folder: ImageFolder, rules: ImageRules) -> None:
        self.folder = folder
        self.rules = rules
        self._seen: dict[str, LocalImage | ImageError] = {}

    def summary(self) -> tuple[int, int, int]:
        """Distinct image files checked, their bytes as sent, and how many are copies made
        (scaled down or turned upright)."""
        found = {i.sha256: i for i in self._seen.values() if isinstance(i, LocalImage)}
        made = sum(1 for image in found.values() if image.original is not None)
        return len(found), sum(image.bytes for image in found.values()), made

    def inspect(self, entry: str) -> LocalImage:
        """The checked image that `entry` names; ImageError says what is wrong with it."""
        found = self._seen.get(entry)
        if found is None:
            try:
                found = self._inspect(entry)
            except ImageError as exc:
                found = exc
            self._seen[entry] = found
        if isinstance(found, ImageError):
            raise found
        return found

    def _inspect(self, entry: str) -> LocalImage:
        path = self._resolve(entry)
        data = read_image_file(path, entry, where=None if self.folder.confined else path)
        kind = sniff(data[:SNIFF_BYTES])
        if kind is None:
            raise ImageError(
                f"{entry} is {what_it_is(data[:SNIFF_BYTES])}, not an image (PNG, JPEG or WebP)"
            )
        picture = _decoded(data, entry)
        turned = picture.getexif().get(_ORIENTATION, 1) not in (1, None)
        too_big = len(data) > self.rules.max_bytes
        if too_big and not self.rules.shrink:
            raise ImageError(
                f"{entry} is {_mb(len(data))}; VEO_IMAGE_MAX_MB is {_mb(self.rules.max_bytes)} "
                "(relays cap request bodies): make it smaller, or set VEO_IMAGE_OVERSIZE=shrink"
            )
        if too_big or turned:
            data, kind = _fitted(picture, kind, self.rules.max_bytes, entry)
            picture = _decoded(data, entry)
            original = None if self.folder.confined else str(path)  # not a temporary path
            return self._keep(entry, data, kind, picture, original)
        if self.folder.confined:
            return self._keep(entry, data, kind, picture, original=None)
        return LocalImage(
            entry,
            str(path),
            len(data),
            hashlib.sha256(data).hexdigest(),
            picture.width,
            picture.height,
            kind,
        )

    def _resolve(self, entry: str) -> Path:
        try:
            text = local_path(entry)
        except ValueError as exc:
            raise ImageError(f"{entry[:80]!r} {exc}") from None
        if "\x00" in text:
            raise ImageError("holds a NUL character")
        base, root = self.folder.base, self.folder.root
        if root is None:
            path = Path(os.path.expanduser(text))
            return Path(os.path.abspath(path if path.is_absolute() else base / path))
        if text.startswith(("/", "~", "\\")) or ":" in text or "\\" in text:
            raise ImageError(
                f"{entry} is not a path inside the zip; name each image by its path in the zip, "
                "such as photos/a.jpg"
            )
        path = (base / text).resolve()
        if not path.is_relative_to(root.resolve()):
            raise ImageError(f"{entry} leaves the zip's folder; name an image inside the zip")
        return path

    def _keep(
        self, name: str, data: bytes, kind: str, picture: Image.Image, original: str | None
    ) -> LocalImage:
        """`data` written into the store under its hash (once), as a LocalImage."""
        digest = hashlib.sha256(data).hexdigest()
        target = self.rules.store / digest[:2] / f"{digest}.{FORMATS[kind][1]}"
        if not target.is_file():
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                fd, temporary = tempfile.mkstemp(prefix=".part-", dir=target.parent)
                with os.fdopen(fd, "wb") as out:
                    out.write(data)
                os.replace(temporary, target)
            except OSError as exc:
                raise ImageError(
                    f"cannot keep a copy in {self.rules.store} (VEO_DATA_DIR): {exc.strerror}",
                    scope="batch",
                ) from None
        return LocalImage(
            name, str(target), len(data), digest, picture.width, picture.height, kind, original
        )


def read_image_file(
    path: Path, name: str, limit: int = MAX_SOURCE_BYTES, where: Path | None = None
) -> bytes:
    """The bytes of the regular file `path` (at most `limit`), or ImageError in words that
    call it `name` (and say `where` it was looked for, when that is given)."""
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            kind = "a folder" if stat.S_ISDIR(info.st_mode) else "not a regular file"
            raise ImageError(f"{name} is {kind}, not an image file")
        if info.st_size > limit:
            raise ImageError(f"{name} is {_mb(info.st_size)}; an image may be at most {_mb(limit)}")
        with open(path, "rb") as handle:
            return handle.read(limit + 1)[:limit]
    except FileNotFoundError:
        looked = f" (looked for {where})" if where is not None else ""
        raise ImageError(f"{name}: no such file{looked}") from None
    except PermissionError:
        raise ImageError(f"{name} cannot be read: permission denied") from None
    except OSError as exc:
        raise ImageError(f"{name} cannot be read: {exc.strerror or exc}") from None


def _decoded(data: bytes, name: str) -> Image.Image:
    """The picture in `data`, fully decoded (a truncated or corrupt file fails here)."""
    from PIL import Image, UnidentifiedImageError  # noqa: PLC0415 - see the module's imports

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            picture = Image.open(io.BytesIO(data))
            if picture.width * picture.height > MAX_PIXELS:
                raise ImageError(
                    f"{name} is {picture.width}×{picture.height} pixels; at most "
                    f"{MAX_PIXELS // 1_000_000} megapixels"
                )
            picture.load()
    except ImageError:
        raise
    except (
        Image.DecompressionBombError,
        UnidentifiedImageError,
        OSError,
        SyntaxError,
        ValueError,
        Warning,
    ) as exc:
        raise ImageError(f"{name} is damaged or not a whole image ({exc})") from None
    return picture


def _fitted(picture: Image.Image, kind: str, max_bytes: int, name: str) -> tuple[bytes, str]:
    """The picture upright (EXIF orientation applied) and re-encoded within `max_bytes`,
    scaled down, keeping its shape, only as far as needed."""
    from PIL import ImageOps  # noqa: PLC0415 - see the module's imports

    try:
        return _encoded_within(ImageOps.exif_transpose(picture), kind, max_bytes, name)
    except (OSError, ValueError) as exc:  # a mode JPEG cannot hold, a broken EXIF block...
        raise ImageError(f"{name} could not be re-encoded ({exc})") from None


def _encoded_within(
    upright: Image.Image, kind: str, max_bytes: int, name: str
) -> tuple[bytes, str]:
    from PIL import Image  # noqa: PLC0415 - see the module's imports

    alpha = upright.mode in ("RGBA", "LA", "PA") or "transparency" in upright.info
    target = kind if kind == "webp" else "png" if alpha else "jpeg"
    if target == "jpeg" and upright.mode not in ("RGB", "L"):
        upright = upright.convert("RGB")
    width, height = upright.size
    scale = 1.0
    for _ in range(_SHRINK_STEPS):
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        frame = upright if scale == 1.0 else upright.resize(size, Image.Resampling.LANCZOS)
        out = io.BytesIO()
        frame.save(out, format=target.upper(), quality=90)
        if out.tell() <= max_bytes:
            return out.getvalue(), target
        scale *= min(0.9, max(0.3, (max_bytes / out.tell()) ** 0.5 * 0.95))
    raise ImageError(f"{name} could not be brought under {_mb(max_bytes)}")


def _mb(size: int) -> str:
    return f"{size / 1024 / 1024:.1f} MB"
