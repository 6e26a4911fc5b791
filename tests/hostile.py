"""A hostile relay for tests: it speaks the relay's two endpoints, and answers as a relay
that wants to hurt its client would.

A job asks for a misdeed with a word in its prompt, `hostile:NAME`:

- to the POST (`SUBMIT`): `html` (a 200 page), `number`, `null`, `object`, `list`, `empty`
  (the task id as that), `huge-id` (a task id of 500 KB), `deep-json` (a 200 of JSON nested
  200,000 deep), `huge-json` (50 MB of JSON); `deep-error` (a 400 whose JSON is nested as
  deep);
- to the polls (`POLL`): `nested-output` (data.output an object), `newline-url`, `long-url`
  (100 KB), `ansi-reason` (a failure reason that clears the screen and sets the title),
  `huge-poll` (50 MB of JSON);
- video URLs that lead into this machine's network (`INSIDE`): `loopback-url` (another port
  of this machine: `internal`, a stand-in for an internal service), `decimal-url` and
  `mapped-url` (the same, spelt as a decimal number and as IPv4-mapped IPv6),
  `metadata-url` (169.254.169.254), `redirect-inside` (the relay's own origin, which
  redirects to `internal`);
- videos that are not what they say (`VIDEOS`): `html-video` (an HTML page), `huge-video`
  (announced as 2 GB), `endless-video` (an MP4 start, then bytes without end or length).

Any other prompt gets an honest task that succeeds at once with a video on this server.
It counts the POSTs per prompt (`created`), so a test can see a row was not sent twice.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final

SUBMIT: Final = frozenset(
    {"html", "number", "null", "object", "list", "empty", "huge-id", "deep-json"}
)
DEEP: Final = b"[" * 200_000 + b"]" * 200_000  # (under the 1 MiB an answer may take)
POLL: Final = frozenset({"nested-output", "newline-url", "long-url", "ansi-reason"})
INSIDE: Final = frozenset(
    {"loopback-url", "decimal-url", "mapped-url", "metadata-url", "redirect-inside"}
)
VIDEOS: Final = frozenset({"html-video", "huge-video", "endless-video"})
ANSI: Final = "\x1b[2J\x1b]0;pwned\x07\x1b]8;;http://evil.example/\x07click\x1b]8;;\x07 failed"
HUGE: Final = 50 * 1024 * 1024


def misdeed(prompt: str) -> str | None:
    for word in prompt.split():
        if word.startswith("hostile:"):
            return word.removeprefix("hostile:")
    return None


class HostileRelay(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.created: Counter[str] = Counter()
        self.internal = ""  # the URL of a service of this machine's (a test sets it)
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05})

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def __enter__(self) -> HostileRelay:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.shutdown()
        self.server_close()
        self.thread.join()


class _Handler(BaseHTTPRequestHandler):
    server: HostileRelay

    def log_message(self, *_args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        prompt = str(body.get("prompt"))
        with self.server.lock:
            self.server.created[prompt] += 1
            number = sum(self.server.created.values())
        deed = misdeed(prompt)
        answers: dict[str | None, Any] = {
            "number": 12345,
            "null": None,
            "object": {"id": "x"},
            "list": ["x"],
            "empty": "",
            "huge-id": "t" * 500_000,  # (under the 1 MiB an answer may take)
        }
        if deed == "html":
            self._send(200, b"<html><title>Welcome</title><body>hi</body></html>", "text/html")
        elif deed == "huge-json":
            self._huge()
        elif deed == "deep-json":
            self._send(200, DEEP, "application/json")
        elif deed == "deep-error":
            self._send(400, DEEP, "application/json")
        elif deed in answers:
            self._json({"task_id": answers[deed]})
        else:
            self._json({"task_id": f"h:{deed or 'honest'}:{number}"})

    def do_GET(self) -> None:
        if self.path.startswith("/redirect"):
            self.send_response(302)
            self.send_header("Location", f"{self.server.internal}/secret.mp4")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.path.startswith("/video/"):
            self._video(self.path.removeprefix("/video/").removesuffix(".mp4"))
            return
        deed = self.path.rsplit("/", 1)[-1].split("%3A")[1]
        if deed == "huge-poll":
            self._huge()
            return
        video = f"{self.url}/video/{deed}.mp4"
        answer: dict[str, Any] = {"status": "SUCCESS", "progress": "100%", "data": {}}
        if deed == "nested-output":
            answer["data"] = {"output": {"url": video}}
        elif deed == "newline-url":
            answer["data"] = {"output": f"{video}\nX-Injected: 1"}
        elif deed == "long-url":
            answer["data"] = {"output": f"{video}?{'a' * 100_000}"}
        elif deed in INSIDE:
            port = self.server.internal.rsplit(":", 1)[-1]
            answer["data"] = {
                "output": {
                    "loopback-url": f"{self.server.internal}/secret.mp4",
                    "decimal-url": f"http://2130706433:{port}/secret.mp4",
                    "mapped-url": f"http://[::ffff:127.0.0.1]:{port}/secret.mp4",
                    "metadata-url": "http://169.254.169.254/latest/meta-data/v.mp4",
                    "redirect-inside": f"{self.url}/redirect/v.mp4",
                }[deed]
            }
        elif deed == "ansi-reason":
            answer = {"status": "FAILURE", "fail_reason": ANSI}
        else:
            answer["data"] = {"output": video}
        self._json(answer)

    @property
    def url(self) -> str:
        return self.server.url

    def _video(self, deed: str) -> None:
        start = b"\x00\x00\x00\x18ftypmp42"
        if deed == "html-video":
            self._send(200, b"<!doctype html><title>login</title>secret", "video/mp4")
            return
        self.send_response(200)
        self.send_header("Content-Type", "video/mp4")
        if deed == "huge-video":
            self.send_header("Content-Length", str(2 * 1024**3))
        elif deed == "endless-video":
            self.send_header("Connection", "close")  # no length: until the connection ends
        else:
            self.send_header("Content-Length", str(len(start) + 1000))
        self.end_headers()
        try:
            self.wfile.write(start)
            if deed in ("huge-video", "endless-video"):
                chunk = b"\x00" * 65536
                for _ in range(32768):  # 2 GB at most: the client stops long before
                    self.wfile.write(chunk)
            else:
                self.wfile.write(b"\x00" * 1000)
        except OSError:
            pass

    def _json(self, data: Any) -> None:
        self._send(200, json.dumps(data).encode(), "application/json")

    def _huge(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(HUGE))
        self.end_headers()
        chunk = b" " * (1024 * 1024)
        try:
            self.wfile.write(b'{"task_id": "')
            for _ in range(HUGE // len(chunk) - 1):
                self.wfile.write(chunk)
        except OSError:  # the client stopped reading: as it should
            pass

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
