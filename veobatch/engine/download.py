"""Fetch a finished video to disk: streamed, resumable, checked, then renamed into place.

A video goes to `DIR/<batch>/<row ref>.mp4`, first as `<name>.part`. An interrupted download
leaves its `.part`; the next try asks only for the rest (`Range: bytes=N-`), or starts over if
the server ignores ranges. The file gets its final name only once every byte announced has
arrived, and its size and sha256 are recorded on the row.

The video host is not the provider's API: downloads use their own HTTP client, which never
carries the API key, and no rate slot.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import time
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path, PurePosixPath
from typing import Final
from urllib.parse import urlsplit

import httpx
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from veobatch.engine import events, transitions
from veobatch.engine.backoff import DOWNLOAD_RETRY
from veobatch.errors import DownloadError, WriteError
from veobatch.metrics import count_request
from veobatch.store.tables import Batch, Job

MAX_DOWNLOADS: Final = 5  # tries before a download waits for the next `veo-batch run`
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


def video_path(directory: Path, batch: str, ref: str, url: str) -> Path:
    suffix = PurePosixPath(urlsplit(url).path).suffix.lower()
    name = safe_name(ref) + (suffix if suffix in _EXTENSIONS else ".mp4")
    return directory / safe_name(batch) / name


def fetch(http: httpx.Client, url: str, target: Path) -> tuple[int, str]:
    """Download `url` to `target`, resuming a `.part` left by an earlier try; (bytes, sha256)."""
    if urlsplit(url).scheme not in ("http", "https"):
        raise DownloadError(f"not an http(s) URL: {url[:200]!r}")
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    digest = hashlib.sha256()
    have = 0
    if part.exists():
        with part.open("rb") as existing:
            for block in iter(lambda: existing.read(1 << 20), b""):
                digest.update(block)
                have += len(block)
    headers = {"Accept-Encoding": "identity"}  # byte offsets must be the file's own
    if have:
        headers["Range"] = f"bytes={have}-"
    with http.stream("GET", url, headers=headers) as response:
        if response.status_code == 206 and _range_start(response) == have:
            mode, total = "ab", _range_total(response)
        elif response.status_code == 200:
            mode, have, digest = "wb", 0, hashlib.sha256()  # no ranges here: start over
            total = _int(response.headers.get("content-length"))
        elif response.status_code == 416 and have and _range_total(response) == have:
            mode, total = "", have  # the .part already holds every byte
        else:
            raise DownloadError(f"HTTP {response.status_code} from the video host")
        if mode:
            with part.open(mode) as out:
                for block in response.iter_bytes():  # as it arrives: a cut keeps what came
                    out.write(block)
                    digest.update(block)
                    have += len(block)
                out.flush()
                os.fsync(out.fileno())
    if total is not None and have != total:
        raise DownloadError(f"got {have:,} of {total:,} bytes")
    os.replace(part, target)
    return have, digest.hexdigest()


def _range_start(response: httpx.Response) -> int | None:
    match = re.match(r"bytes (\d+)-", response.headers.get("content-range", ""))
    return int(match.group(1)) if match else None


def _range_total(response: httpx.Response) -> int | None:
    match = re.search(r"/(\d+)\s*$", response.headers.get("content-range", ""))
    return int(match.group(1)) if match else None


def _int(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() else None


def download_one(
    engine: Engine,
    http: httpx.Client,
    job_id: int,
    directory: Path,
    *,
    write_lock: AbstractContextManager[object] | None = None,
) -> bool:
    """Fetch row `job_id`'s video into `directory` and record the outcome; True if on disk."""
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(
                Job.ref,
                Job.batch_id,
                Job.task_id,
                Job.video_url,
                Job.downloads,
                Batch.name.label("batch"),
            )
            .join(Batch, Batch.id == Job.batch_id)
            .where(Job.id == job_id)
        ).first()
    if row is None or row.video_url is None:
        return False
    target = video_path(directory, row.batch, row.ref, row.video_url)
    started = time.perf_counter()
    try:
        size, sha256 = fetch(http, row.video_url, target)
    except (httpx.HTTPError, OSError, DownloadError) as exc:
        count_request("download", time.perf_counter() - started, None, "download")
        tries = row.downloads + 1
        cause = str(exc) if isinstance(exc, DownloadError) else f"{type(exc).__name__}: {exc}"
        error = f"download: {cause}"
        retry_in = DOWNLOAD_RETRY.delay(tries) if tries < MAX_DOWNLOADS else None
        with write_lock or nullcontext(), engine.begin() as conn:
            transitions.downloaded(
                conn, job_id, transitions.utcnow(), error=error[:500], retry_in=retry_in
            )
        events.downloaded(row, error)
        return False
    count_request("download", time.perf_counter() - started, 200)
    with write_lock or nullcontext(), engine.begin() as conn:
        transitions.downloaded(
            conn,
            job_id,
            transitions.utcnow(),
            path=str(target.resolve()),
            size=size,
            sha256=sha256,
        )
    events.downloaded(row, None)
    return True


def video_client() -> httpx.Client:
    """The HTTP client for video hosts: redirects followed, no credentials of ours."""
    return httpx.Client(follow_redirects=True, timeout=httpx.Timeout(60.0, connect=10.0))
