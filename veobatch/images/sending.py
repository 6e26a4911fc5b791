"""A row's images as the relay wants them, by VEO_IMAGE_MODE:

    data-uri  data:image/jpeg;base64,... read from disk at the time of the POST
    base64    the same without the `data:` prefix (relays that want raw base64)
    url       uploaded once to the bucket (VEO_S3_URL) and sent as a link

Entries that are links or data: URIs in the job file are sent as written. A local image is
read again and its sha256 compared with the one taken at load: a file changed or deleted since
then is never sent (the row fails with kind `image`, nothing is spent on it).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from veobatch.errors import ImageError
from veobatch.images.files import read_image_file
from veobatch.images.formats import FORMATS
from veobatch.settings import Settings

if TYPE_CHECKING:  # boto3 is imported only in url mode (it takes a quarter second)
    from veobatch.images.bucket import Bucket

_EXTENSIONS: Final = dict(FORMATS.values())  # MIME type: extension


class ImageSender:
    """Turns stored `images` entries into the payload's `images`."""

    def __init__(self, mode: str, bucket: Bucket | None = None) -> None:
        self.mode = mode
        self.bucket = bucket

    @classmethod
    def of(cls, settings: Settings) -> ImageSender:
        """The sender of these settings; in url mode the bucket is checked now, so a wrong
        bucket or key is one clear error at start, not a batch of failed rows."""
        bucket = None
        if settings.image_mode == "url":
            from veobatch.images.bucket import Bucket  # noqa: PLC0415 - see above

            bucket = Bucket.of(settings)
        if bucket is not None:
            bucket.check()
        return cls(settings.image_mode, bucket)

    def images_for(self, entries: Sequence[Any]) -> tuple[list[str], list[Any] | None]:
        """The payload's images, and the entries to store again when this added to them (in
        url mode: where each image was uploaded), else None."""
        sent: list[str] = []
        updated: list[Any] | None = None
        for index, entry in enumerate(entries):
            if isinstance(entry, str):
                sent.append(entry)
                continue
            image = _stored(entry)
            if self.mode != "url":
                data = checked_bytes(image)
                text = base64.b64encode(data).decode("ascii")
                sent.append(
                    f"data:{image['type']};base64,{text}" if self.mode == "data-uri" else text
                )
                continue
            link, uploaded = self._link(image)
            sent.append(link)
            if entry.get("uploaded") != uploaded:
                updated = list(entries) if updated is None else updated
                updated[index] = {**entry, "uploaded": uploaded}
        return sent, updated

    def _link(self, image: Mapping[str, Any]) -> tuple[str, str]:
        if self.bucket is None:
            raise ImageError(
                "VEO_IMAGE_MODE is url but VEO_S3_URL is not set: there is no bucket to upload "
                "local images to (set VEO_S3_URL, or VEO_IMAGE_MODE=data-uri)",
                scope="batch",
            )
        key = self.bucket.key_for(image["sha256"], _EXTENSIONS[image["type"]])
        self.bucket.ensure(key, lambda: checked_bytes(image), image["type"])
        return self.bucket.link(key), f"s3://{self.bucket.name}/{key}"


def checked_bytes(image: Mapping[str, Any]) -> bytes:
    """The image's bytes, if the file is still the one checked at load. Messages name the
    image as its job file did (a row's error is shown in pages: no server path in it)."""
    name = str(image.get("name") or Path(image["path"]).name)
    try:
        data = read_image_file(Path(image["path"]), name)
    except ImageError as exc:
        if "no such file" in exc.message:  # read_image_file's words
            message = f"{name} was deleted or moved since the load: not sent; put it back"
            raise ImageError(f"{message}, then `veo-batch rerun BATCH --kind image`") from None
        raise
    digest = hashlib.sha256(data).hexdigest()
    if digest != image["sha256"]:
        raise ImageError(
            f"{name} changed since the load (sha256 {digest[:12]}..., was "
            f"{image['sha256'][:12]}...): not sent, so no other picture is paid for; restore "
            "it and `veo-batch rerun BATCH --kind image`, or load the job into a new batch to "
            "send the new picture"
        )
    return data


def _stored(entry: object) -> Mapping[str, Any]:
    """A stored entry, checked for the fields sending needs (the database is ours, but a row
    written by hand or by an older version must not crash a worker)."""
    if (
        isinstance(entry, Mapping)
        and isinstance(entry.get("path"), str)
        and isinstance(entry.get("sha256"), str)
        and type(entry.get("bytes")) is int
        and entry.get("type") in _EXTENSIONS
    ):
        return entry
    raise ImageError(f"a stored image entry is not one veo-batch wrote: {str(entry)[:80]}")
