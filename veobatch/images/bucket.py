"""An S3-compatible bucket (AWS, MinIO, R2...) that holds each image once, under its hash.

The key is `PREFIX/<sha256>.<ext>`: a photo named by 1,000 rows is uploaded once, and a file
changed after its upload can never be mistaken for it. Rows are sent a presigned GET link that
lasts 7 days (the most S3 and MinIO allow), long enough for a relay that fetches it late; with
VEO_S3_PUBLIC_URL, the public URL of the key instead. Credentials are boto3's usual ones.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any, Final

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from veobatch.errors import ConfigError, ImageError
from veobatch.settings import Settings

LINK_SECONDS: Final = 7 * 24 * 3600  # SigV4's longest presigned URL
RENEW_AFTER: Final = 24 * 3600  # a cached link is made again once it is a day old
_SETTING_ERRORS: Final = frozenset(
    {"AccessDenied", "NoSuchBucket", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403", "404"}
)


class Bucket:
    """Uploads by content hash, and links to what was uploaded; safe to share between threads
    (boto3's client is), and each key is uploaded by one thread at a time."""

    def __init__(
        self,
        url: str,
        *,
        endpoint: str | None = None,
        public_url: str | None = None,
        client: Any = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url = url
        self.name, _, prefix = url.removeprefix("s3://").partition("/")
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.public_url = public_url
        # boto3's client keeps a pool of connections: a forked process makes its own
        self._make = (
            None
            if client is not None
            else partial(
                boto3.client,
                "s3",
                endpoint_url=endpoint,
                config=Config(
                    signature_version="s3v4",
                    s3={"addressing_style": "path" if endpoint else "auto"},
                    connect_timeout=10,
                    read_timeout=60,
                    retries={"max_attempts": 3, "mode": "standard"},
                ),
            )
        )
        self._client = client if self._make is None else self._make()
        self._pid = os.getpid()
        self._clock = clock
        self._lock = threading.Lock()
        self._key_locks: dict[str, threading.Lock] = {}
        self._present: set[str] = set()  # keys known to be in the bucket
        self._links: dict[str, tuple[str, float]] = {}
        self.uploads = 0  # objects this process put into the bucket

    @classmethod
    def of(cls, settings: Settings) -> Bucket | None:
        if settings.s3_url is None:
            return None
        return cls(
            settings.s3_url, endpoint=settings.s3_endpoint, public_url=settings.s3_public_url
        )

    def _s3(self) -> Any:
        """The S3 client of this process (one made anew in a forked process)."""
        if self._make is not None and os.getpid() != self._pid:
            with self._lock:
                if os.getpid() != self._pid:
                    self._client, self._pid = self._make(), os.getpid()
        return self._client

    def key_for(self, sha256: str, extension: str) -> str:
        return f"{self.prefix}{sha256}.{extension}"

    def check(self) -> None:
        """ConfigError, in words, unless the bucket answers with these credentials."""
        try:
            self._s3().head_bucket(Bucket=self.name)
        except (ClientError, BotoCoreError) as exc:
            raise ConfigError(
                f"VEO_S3_URL: bucket {self.name!r} cannot be used: {_reason(exc)} (check the "
                "bucket name, VEO_S3_ENDPOINT and the AWS credentials)"
            ) from None

    def ensure(self, key: str, read: Callable[[], bytes], content_type: str) -> None:
        """Key `key` is in the bucket: uploaded from `read()` unless it is there already."""
        if key in self._present:
            return
        with self._lock:
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            if key in self._present:
                return
            try:
                if not self._exists(key):
                    self._s3().put_object(
                        Bucket=self.name, Key=key, Body=read(), ContentType=content_type
                    )
                    with self._lock:
                        self.uploads += 1
            except (ClientError, BotoCoreError) as exc:
                scope = "batch" if _is_setting_error(exc) else "retry"
                raise ImageError(f"uploading to {self.url}: {_reason(exc)}", scope) from None
            self._present.add(key)

    def link(self, key: str) -> str:
        """The URL a relay fetches the object from."""
        if self.public_url is not None:
            return f"{self.public_url}/{key}"
        now = self._clock()
        cached = self._links.get(key)
        if cached is not None and now - cached[1] < RENEW_AFTER:
            return cached[0]
        url: str = self._s3().generate_presigned_url(
            "get_object", Params={"Bucket": self.name, "Key": key}, ExpiresIn=LINK_SECONDS
        )
        self._links[key] = (url, now)
        return url

    def _exists(self, key: str) -> bool:
        try:
            self._s3().head_object(Bucket=self.name, Key=key)
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True


def _is_setting_error(exc: Exception) -> bool:
    if isinstance(exc, NoCredentialsError):
        return True
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code")) in _SETTING_ERRORS
    return False


def _reason(exc: Exception) -> str:
    if isinstance(exc, NoCredentialsError):
        return "no AWS credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return f"{error.get('Code', 'error')} (HTTP {status}): {error.get('Message', '')}".strip()
    return str(exc)
