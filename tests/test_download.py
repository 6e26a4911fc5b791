"""Fetching a video: resumed with Range, started over when the host ignores ranges, checked
against the length announced, named safely. A real HTTP server on a local port."""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import serving
from tests.helpers import wait_until
from veobatch.destinations import Destinations
from veobatch.errors import Abandoned, DownloadError
from veobatch.lifecycle.download import abandon, fetch, video_client
from veobatch.lifecycle.video_files import safe_name, video_path
from veobatch.provider.mock import MP4_START

VIDEO = MP4_START + bytes(range(256)) * 400  # an MP4 box, then 102,400 bytes

THIS_MACHINE = Destinations(allow_private=True)  # the test's own video host is local


class Host(ThreadingHTTPServer):
    daemon_threads = True
    ranges = True  # answer Range requests with 206
    short = False  # announce the whole length, send less
    drip = 0.0  # seconds between the bytes of an answer, status line and headers too
    requests: list[str | None]


class Handler(BaseHTTPRequestHandler):
    server: Host

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        wanted = self.headers.get("Range")
        self.server.requests.append(wanted)
        if self.server.drip:
            self.wfile = Drip(self.wfile, self.server.drip)  # type: ignore[assignment]
        start = int(wanted[6:-1]) if wanted and self.server.ranges else 0
        if start >= len(VIDEO):
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(VIDEO)}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(VIDEO) - 1}/{len(VIDEO)}")
        self.send_header("Content-Length", str(len(VIDEO) - start))
        self.end_headers()
        body = VIDEO[start:]
        with contextlib.suppress(OSError):  # (a client that gave up)
            self.wfile.write(body[: len(body) // 2] if self.server.short else body)
        self.close_connection = True


class Drip:
    """A writer that sends a byte at a time."""

    def __init__(self, plain: Any, seconds: float) -> None:
        self.plain, self.seconds = plain, seconds

    def write(self, data: bytes) -> int:
        for index in range(len(data)):
            self.plain.write(data[index : index + 1])
            time.sleep(self.seconds)
        return len(data)

    def flush(self) -> None:
        self.plain.flush()


@pytest.fixture
def host() -> Iterator[Host]:
    server = Host(("127.0.0.1", 0), Handler)
    server.requests = []
    with serving(server):
        yield server


def url(host: Host) -> str:
    return f"http://127.0.0.1:{host.server_address[1]}/v.mp4"


def test_a_part_file_is_resumed_with_a_range_request(host: Host, tmp_path: Path) -> None:
    target = tmp_path / "v.mp4"
    (tmp_path / "v.mp4.part").write_bytes(VIDEO[:1000])
    with video_client(THIS_MACHINE) as http:
        size, sha256 = fetch(http, url(host), target)
    assert (size, sha256) == (len(VIDEO), hashlib.sha256(VIDEO).hexdigest())
    assert target.read_bytes() == VIDEO
    assert host.requests == ["bytes=1000-"]
    assert not (tmp_path / "v.mp4.part").exists()


def test_a_host_that_ignores_ranges_starts_over(host: Host, tmp_path: Path) -> None:
    host.ranges = False
    target = tmp_path / "v.mp4"
    (tmp_path / "v.mp4.part").write_bytes(b"x" * 1000)  # not even the right bytes
    with video_client(THIS_MACHINE) as http:
        size, sha256 = fetch(http, url(host), target)
    assert (size, sha256) == (len(VIDEO), hashlib.sha256(VIDEO).hexdigest())
    assert target.read_bytes() == VIDEO


def test_a_complete_part_file_is_only_renamed(host: Host, tmp_path: Path) -> None:
    (tmp_path / "v.mp4.part").write_bytes(VIDEO)
    with video_client(THIS_MACHINE) as http:
        size, _ = fetch(http, url(host), tmp_path / "v.mp4")
    assert size == len(VIDEO)
    assert host.requests == [f"bytes={len(VIDEO)}-"]


def test_a_short_body_keeps_its_part_and_no_final_file(host: Host, tmp_path: Path) -> None:
    host.short = True
    target = tmp_path / "v.mp4"
    with video_client(THIS_MACHINE) as http, pytest.raises(httpx.HTTPError):
        fetch(http, url(host), target)
    assert not target.exists()
    assert (tmp_path / "v.mp4.part").stat().st_size == len(VIDEO) // 2
    host.short = False
    with video_client(THIS_MACHINE) as http:
        fetch(http, url(host), target)
    assert target.read_bytes() == VIDEO
    assert host.requests[-1] == f"bytes={len(VIDEO) // 2}-"


def test_only_http_urls_are_fetched(tmp_path: Path) -> None:
    with video_client(THIS_MACHINE) as http, pytest.raises(DownloadError, match="not an http"):
        fetch(http, "file:///etc/passwd", tmp_path / "v.mp4")


@pytest.mark.parametrize(
    ("ref", "name"),
    [("sku-4512", "sku-4512"), ("a b/c", "a_b_c-"), ("../up", "_up-"), (".hidden", "hidden-")],
)
def test_names_are_safe_and_distinct(ref: str, name: str) -> None:
    assert safe_name(ref).startswith(name)
    assert "/" not in safe_name(ref)
    assert safe_name("a/b") != safe_name("a_b")


def test_the_video_path_keeps_a_known_extension(tmp_path: Path) -> None:
    assert video_path(tmp_path, "b", "r", "https://cdn/x.webm?sig=1") == tmp_path / "b" / "r.webm"
    assert video_path(tmp_path, "b", "r", "https://cdn/x.php") == tmp_path / "b" / "r.mp4"


def test_a_dripping_host_ends_at_the_whole_deadline(host: Host, tmp_path: Path) -> None:
    host.drip = 0.05  # headers and body, a byte every 0.05 s: no read ever waits 60 s
    target = tmp_path / "v.mp4"
    started = time.monotonic()
    with (
        video_client(THIS_MACHINE) as http,
        pytest.raises(httpx.ReadTimeout, match="whole deadline of 1 s"),
    ):
        fetch(http, url(host), target, deadline=1.0)
    assert time.monotonic() - started < 3.0
    assert not target.exists()
    host.drip = 0.0
    with video_client(THIS_MACHINE) as http:  # tried again later, from what came
        fetch(http, url(host), target)
    assert target.read_bytes() == VIDEO


def test_an_abandoned_download_ends_at_once_and_leaves_no_part(host: Host, tmp_path: Path) -> None:
    host.drip = 0.001
    target = tmp_path / "v.mp4"
    outcome: list[BaseException] = []

    def download(http: httpx.Client) -> None:
        try:
            fetch(http, url(host), target, deadline=60.0)
        except BaseException as exc:
            outcome.append(exc)

    with video_client(THIS_MACHINE) as http:
        thread = threading.Thread(target=download, args=(http,))
        thread.start()
        part = tmp_path / "v.mp4.part"
        wait_until(lambda: part.exists() and part.stat().st_size > 0, 10, "bytes to arrive")
        abandon(http)
        thread.join(2.0)
        assert not thread.is_alive()
        assert isinstance(outcome[0], Abandoned)
        assert not part.exists()
        assert not target.exists()
        with pytest.raises(Abandoned):  # and no download from now on
            fetch(http, url(host), target)
