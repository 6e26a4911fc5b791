"""Fetch a finished video to disk: streamed, resumable, checked, then renamed into place.

A video goes to `DIR/<batch>/<row ref>.mp4`, first as `<name>.part`. An interrupted download
leaves its `.part`; the next try asks only for the rest (`Range: bytes=N-`), or starts over if
the server ignores ranges. The file gets its final name only once every byte announced has
arrived, and its size and sha256 are recorded on the row.

The video host is not the provider's API: downloads use their own HTTP client, which never
carries the API key, and no rate slot.

A download must end within its whole deadline (VEO_DOWNLOAD_TIMEOUT: connect, headers, every
byte), however slowly the host sends: past it, it fails with `ReadTimeout` and is tried again
later from its `.part`. A download given up because the process stops (`abandon`) removes its
`.part` and hands the row back, due again at once, without counting a try.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from contextvars import Token
from pathlib import Path
from typing import IO, Any, Final
from urllib.parse import urlsplit

import httpx
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from veobatch.destinations import Destinations
from veobatch.errors import Abandoned, DownloadError, DownloadRefused, UnusableVideo
from veobatch.lifecycle import events, transitions
from veobatch.lifecycle.backoff import DOWNLOAD_RETRY
from veobatch.lifecycle.video_files import part_of, video_container, video_path
from veobatch.metrics import count_request
from veobatch.provider.deadline import CURRENT, WATCHDOG, Ticket
from veobatch.provider.transport import origin_of
from veobatch.provider.watched import watched_transport
from veobatch.settings import Settings
from veobatch.store.tables import Batch, Job

MAX_DOWNLOADS: Final = 5  # tries before a download waits for the next `veo-batch run`
MAX_REDIRECTS: Final = 5


DOWNLOAD_TIMEOUT: Final = Settings().download_timeout


MAX_BYTES: Final = int(Settings().video_max_mb * 1024 * 1024)
SPARE: Final = 64 * 1024 * 1024  # bytes left free on the disk beside a video


def _discard(part: Path) -> None:
    """A `.part` removed, if it can be (what stops that is the download's error already)."""
    with contextlib.suppress(OSError):
        part.unlink(missing_ok=True)


def fetch(
    http: httpx.Client,
    url: str,
    target: Path,
    deadline: float | None = DOWNLOAD_TIMEOUT,
    max_bytes: int = MAX_BYTES,
) -> tuple[int, str]:
    """Download `url` to `target`, resuming a `.part` left by an earlier try, within
    `deadline` seconds in all; (bytes, sha256). Raises Abandoned (the `.part` removed) if
    `abandon(http)` was called meanwhile, and UnusableVideo (nothing kept) for what is not a
    video, or is larger than `max_bytes`."""
    if urlsplit(url).scheme not in ("http", "https"):
        raise DownloadError(f"not an http(s) URL: {url[:200]!r}")
    target.parent.mkdir(parents=True, exist_ok=True)
    part = part_of(target)
    ticket = WATCHDOG.start(deadline, http, True)
    token = CURRENT.set(ticket)
    try:
        have, digest, total = _stream(http, url, part, ticket.check, max_bytes)
    except UnusableVideo:
        _ended(ticket, token, part)
        _discard(part)  # nothing of it is kept
        raise
    except OSError as exc:
        if (failure := _ended(ticket, token, part)) is not None:
            raise failure from exc
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            _discard(part)
            raise DownloadError(
                f"the disk of {target.parent} is full ({exc.strerror}): free space there"
            ) from None
        raise
    except (httpx.HTTPError, DownloadError, Abandoned) as exc:
        failure = _ended(ticket, token, part)
        if failure is None:
            raise
        raise failure from exc  # (its socket was shut down: the error says only that)
    except BaseException:
        _ended(ticket, token, part)
        raise
    if (failure := _ended(ticket, token, part)) is not None:  # it passed as the end came
        raise failure
    if total is not None and have != total:
        raise DownloadError(f"got {have:,} of {total:,} bytes")
    os.replace(part, target)
    return have, digest.hexdigest()


def _ended(ticket: Ticket, token: Token[Ticket | None], part: Path) -> Exception | None:
    """The download is over: what the watchdog made of it (abandoned: its `.part` removed)."""
    CURRENT.reset(token)
    WATCHDOG.stop(ticket)
    failure = ticket.failure()
    if isinstance(failure, Abandoned):
        _discard(part)
    return failure


def _stream(
    http: httpx.Client, url: str, part: Path, check: Callable[[], None], max_bytes: int
) -> tuple[int, Any, int | None]:
    """The answer's bytes appended to `part` (or written anew); (bytes in `part`, their
    hash, the length announced). `check()` between blocks raises once time is up; what is
    not a video, or passes `max_bytes`, raises UnusableVideo."""
    digest = hashlib.sha256()
    have = 0
    head = b""
    if part.exists():
        with part.open("rb") as existing:
            for block in iter(lambda: existing.read(1 << 20), b""):
                head = head or block[:16]
                digest.update(block)
                have += len(block)
    headers = {"Accept-Encoding": "identity"}  # byte offsets must be the file's own
    if have:
        headers["Range"] = f"bytes={have}-"
    with http.stream("GET", url, headers=headers) as response:
        if response.status_code == 206 and _range_start(response) == have:
            mode, total = "ab", _range_total(response)
        elif response.status_code == 200:  # no ranges here: start over
            mode, have, digest, head = "wb", 0, hashlib.sha256(), b""
            total = _int(response.headers.get("content-length"))
        elif response.status_code == 416 and have and _range_total(response) == have:
            mode, total = "", have  # the .part already holds every byte
        else:
            raise DownloadError(f"HTTP {response.status_code} from the video host")
        _room_for(part, total, have, max_bytes)
        if mode:
            with part.open(mode) as out:
                have, head = _write(response, out, (have, head), digest, check, max_bytes)
    if video_container(head) is None:  # (a file of fewer than 12 bytes, say)
        raise UnusableVideo(_not_a_video(head, None))
    return have, digest, total


def _write(
    response: httpx.Response,
    out: IO[Any],
    start: tuple[int, bytes],
    digest: Any,
    check: Callable[[], None],
    max_bytes: int,
) -> tuple[int, bytes]:
    """The answer's blocks written to `out` as they arrive (a cut keeps what came), from
    `start` (bytes in the file, its first bytes); the new (bytes, first bytes). Its first
    bytes must be a video's, its size at most `max_bytes` (else UnusableVideo)."""
    have, head = start
    for block in response.iter_bytes():
        check()
        if len(head) < 16:
            head += block[: 16 - len(head)]
            if len(head) >= 12 and video_container(head) is None:
                raise UnusableVideo(_not_a_video(head, response))
        if have + len(block) > max_bytes:
            raise UnusableVideo(_too_large(have + len(block), max_bytes, "passed"))
        out.write(block)
        digest.update(block)
        have += len(block)
    out.flush()
    os.fsync(out.fileno())
    return have, head


def _room_for(part: Path, total: int | None, have: int, max_bytes: int) -> None:
    """Refuse a video announced larger than `max_bytes`, and wait for room on a disk
    without space for it (and SPARE beside it)."""
    if total is None:
        return
    if total > max_bytes:
        raise UnusableVideo(_too_large(total, max_bytes, "announced"))
    free = shutil.disk_usage(part.parent).free
    if free < total - have + SPARE:
        raise DownloadError(
            f"not enough free space in {part.parent} for a video of {total:,} bytes "
            f"({free:,} free): free some, it is tried again later"
        )


def _too_large(size: int, max_bytes: int, how: str) -> str:
    return (
        f"the video is over VEO_VIDEO_MAX_MB ({size:,} bytes {how}, at most {max_bytes:,}): "
        "not kept"
    )


def _not_a_video(head: bytes, response: httpx.Response | None) -> str:
    kind = response.headers.get("content-type", "")[:60] if response is not None else ""
    said = f", served as {kind!r}" if kind else ""
    return (
        f"the video host sent something that is not a video (it begins {head[:12]!r}{said}): "
        "not kept"
    )


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
    deadline: float = DOWNLOAD_TIMEOUT,
    max_bytes: int = MAX_BYTES,
) -> bool:
    """Fetch row `job_id`'s video into `directory` within `deadline` seconds and record the
    outcome; True if on disk. Abandoned (the process stops): handed back, nothing recorded."""
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
    # The row keeps the whole path: `serve`, started elsewhere, finds the file where it is.
    target = video_path(directory.absolute(), row.batch, row.ref, row.video_url)
    started = time.perf_counter()
    try:
        size, sha256 = fetch(http, row.video_url, target, deadline, max_bytes)
    except Abandoned:
        with write_lock or nullcontext(), engine.begin() as conn:
            transitions.hand_back_download(conn, job_id, transitions.utcnow())
        return False
    except (httpx.HTTPError, httpx.InvalidURL, OSError, ValueError, DownloadError) as exc:
        # (A link from a stranger may fail in any of these ways: each is this row's error.)
        count_request("download", time.perf_counter() - started, None, "download")
        tries = row.downloads + 1
        cause = str(exc) if isinstance(exc, DownloadError) else f"{type(exc).__name__}: {exc}"
        error = f"download: {cause}"
        again = tries < MAX_DOWNLOADS and not isinstance(exc, DownloadRefused)
        retry_in = DOWNLOAD_RETRY.delay(tries) if again else None  # (a refusal stays one)
        if not again:  # given up: nothing half-written is left behind
            _discard(part_of(target))
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


def video_client(
    destinations: Destinations | None = None,
    keyed: Mapping[str, tuple[str, str]] | None = None,
) -> httpx.Client:
    """The HTTP client for video hosts: redirects followed (at most MAX_REDIRECTS, each hop
    checked), its sockets within the watchdog's reach (each download's deadline is
    `fetch`'s), its connections only where `destinations` allows (default: public addresses
    only). No credentials of ours, except `keyed`: a header (Google's key) sent to one
    account's own origin (its base URL) and to no other, redirect hops included."""
    hooks = {"request": [_keyed_hook(keyed)]} if keyed else {}
    return httpx.Client(
        follow_redirects=True,
        max_redirects=MAX_REDIRECTS,
        timeout=httpx.Timeout(60.0, connect=10.0),
        transport=watched_transport(destinations or Destinations()),
        event_hooks=hooks,
    )


def _keyed_hook(keyed: Mapping[str, tuple[str, str]]) -> Callable[[httpx.Request], None]:
    """A hook run before each request (each redirect hop too: httpx copies the headers of
    the hop before, so the header is taken off again where the origin is another)."""
    by_origin = {origin_of(httpx.URL(base)): header for base, header in keyed.items()}
    names = {name.lower() for name, _ in keyed.values()}

    def hook(request: httpx.Request) -> None:
        for name in names:
            request.headers.pop(name, None)
        header = by_origin.get(origin_of(request.url))
        if header is not None:
            request.headers[header[0]] = header[1]

    return hook


def destinations_of(settings: Settings, bases: Sequence[str | None] = ()) -> Destinations:
    """Where this deployment's videos may come from: its accounts' own origins (`bases`;
    else VEO_API_BASE's), public hosts, and this network only with
    VEO_DOWNLOAD_ALLOW_PRIVATE."""
    return Destinations.of(
        list(bases) or [settings.api_base],
        settings.download_allow_private,
        "VEO_DOWNLOAD_ALLOW_PRIVATE",
    )


def abandon(http: httpx.Client) -> None:
    """End the downloads in flight through `http` at once, and fail its later ones: the
    process is stopping (each row is handed back, its `.part` removed)."""
    WATCHDOG.abandon(http)
