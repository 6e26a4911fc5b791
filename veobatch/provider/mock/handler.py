"""The mock's HTTP handler: the two endpoints with the relay's habits and faults, its videos,
and its stats; Google's routes (`/v1beta/...`) go to `gemini.py`."""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import ipaddress
import json
import re
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, fields
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final
from urllib.parse import quote, unquote, urlsplit

import httpx

from veobatch.images.formats import SNIFF_BYTES, sniff
from veobatch.provider.mock import gemini
from veobatch.provider.mock.state import MARKER, MockConfig, MockState, Task
from veobatch.provider.relay import SUBMIT_PATH

_HTML_502: Final = (
    "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway"
    "</h1></center><hr><center>nginx</center></body></html>"
)


def _echoed(key: str) -> str:
    """The key as careless relays echo it: whole, cut short, and in base64."""
    return f"key={key} (starts {key[:14]}...) b64={base64.b64encode(key.encode()).decode()}"


def _error(message: str, code: str | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"message": message, "type": "new_api_error"}
    if code:
        error["code"] = code
    return {"error": error}


class Server(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's listen backlog is 5: a burst of new connections past it (every worker
    # process opening its connections at once) would be refused or reset, which no relay
    # behind a real web server does. The kernel caps it at net.core.somaxconn.
    request_queue_size = 1024
    state: MockState

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up (a killed worker, a timeout) is normal here, not an error."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a relay behind nginx
    # Headers and body go out in two writes; with Nagle's algorithm the second waits for the
    # client's delayed ACK, 40 ms per answer. A real server does not do that.
    disable_nagle_algorithm = True
    server: Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests run thousands
        pass

    # ------------------------------------------------------------------ plumbing

    def _reply(self, status: int, body: dict[str, Any] | str) -> None:
        payload = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)
        data = payload.encode()
        self.send_response(status)
        kind = "text/html" if isinstance(body, str) else "application/json; charset=utf-8"
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    @contextlib.contextmanager
    def _dripping(self, seconds: float) -> Iterator[None]:
        """What is written meanwhile goes out a byte every `seconds` (headers too), until
        the client hangs up."""
        if seconds <= 0:
            yield
            return
        state = self.server.state
        plain = self.wfile
        self.wfile = _Drip(plain, seconds)  # type: ignore[assignment]
        with state.lock:
            state.dripping += 1
        try:
            yield
        except OSError:  # the client gave up
            self.close_connection = True
        finally:
            self.wfile = plain
            with state.lock:
                state.dripping -= 1

    def _drop(self) -> None:
        """Close the connection without a word, as a crashed proxy would."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            return json.loads(raw)
        except ValueError:
            return None

    def _token(self) -> str:
        return self.headers.get("Authorization", "").removeprefix("Bearer ")

    def _admitted(self, arrived: float) -> bool:
        """The key and the request limit, as every relay route checks them; the limit counts
        the request at `arrived`, when its first line came (not after its body was read)."""
        state = self.server.state
        with state.lock:
            allowed = state.arrive(arrived)
            key = state.config.api_key
            down = state.config.down
        if down is not None:  # a relay that is down: every route answers the same
            self._reply(down, _HTML_502 if down == 502 else _error(f"服务暂时不可用 {down}"))
            return False
        if self.headers.get("Authorization") != f"Bearer {key}":
            self._reply(401, _error("无效的令牌"))
            return False
        if not allowed:
            window = state.config.window
            span = f"{window / 60:g}分钟" if window >= 60 else f"{window:g}秒"
            message = f"您已达到请求数限制：{span}内最多请求{state.config.limit}次"
            self._reply(429, _error(message))
            return False
        return True

    # ------------------------------------------------------------------ routes

    def do_POST(self) -> None:
        arrived = time.monotonic()
        if self.path.startswith(gemini.API):
            gemini.post(self, arrived)
            return
        self._post(arrived)

    def _post(self, arrived: float) -> None:
        """A POST of the relay's (or the mock's own settings)."""
        if self.path == "/_mock/config":
            self._configure()
            return
        if self.path != SUBMIT_PATH:
            self._reply(404, _error(f"Invalid URL (POST {self.path})"))
            return
        body = self._body()
        if not self._admitted(arrived):
            return
        prompt = self._prompt_of(body)
        if prompt is None:
            return
        markers = dict(MARKER.findall(prompt))
        if "status" in markers:
            status = int(markers["status"])
            self._reply(status, _HTML_502 if status == 502 else _error(f"模拟错误 {status}"))
            return
        if "drop-before" in markers:
            self._drop()
            return
        if "echo-key" in markers:  # a careless relay: the caller's key in its error, in forms
            self._reply(400, _error(f"无效的请求 {_echoed(self._token())}"))
            return
        images = self._images_of(body["images"])
        if images is None:
            return
        inline, links, first = images
        portrait = body.get("aspect_ratio") == "9:16"
        task_id = self._create_task(prompt, markers, fetching=len(links), portrait=portrait)
        if task_id is None:
            return
        state = self.server.state
        with state.lock:
            state.images_by_prompt.setdefault(prompt, []).extend(inline)
            if first is not None:
                state.keep_first_image(state.tasks.get(task_id), first)
        for index, link in enumerate(links):
            first_link = first is None and index == 0 and body["images"][0] == link
            threading.Thread(
                target=_fetch_image, args=(state, task_id, prompt, link, first_link), daemon=True
            ).start()
        self._answer_created(task_id, markers)

    def _images_of(self, images: Any) -> tuple[list[str], list[str], bytes | None] | None:
        """The sha256 of each inline image, the links to fetch, and the first image's bytes
        when it came inline; None (answered 400) if an image is sent a way this relay does
        not take, or is not an image."""
        accepts = self.server.state.config.accepts
        if not isinstance(images, list) or not all(isinstance(i, str) for i in images):
            self._reply(400, _error("参数错误：images 必须是字符串数组"))
            return None
        inline: list[str] = []
        links: list[str] = []
        first: bytes | None = None
        for index, image in enumerate(images):
            way = (
                "url"
                if image.startswith(("http://", "https://"))
                else "data-uri"
                if image.startswith("data:")
                else "base64"
            )
            if way not in accepts:
                self._reply(400, _error(f"不支持的图片格式（{way}）：仅支持 {', '.join(accepts)}"))
                return None
            if way == "url":
                if _on_this_machine(image):
                    links.append(image)
                else:
                    with self.server.state.lock:
                        self.server.state.images_not_fetched += 1
                continue
            try:
                data = base64.b64decode(image.partition(",")[2] if way == "data-uri" else image)
            except (binascii.Error, ValueError):
                data = b""
            if sniff(data[:SNIFF_BYTES]) is None:
                self._reply(400, _error("图片无法解码：不是有效的 PNG、JPEG 或 WebP 图片"))
                return None
            inline.append(hashlib.sha256(data).hexdigest())
            first = data if index == 0 else first
        return inline, links, first

    def _prompt_of(self, body: Any) -> str | None:
        """The submission's prompt; None (answered 400) if the body is not a submission."""
        if not isinstance(body, dict):
            self._reply(400, _error("请求体不是有效的JSON"))
            return None
        missing = [k for k in ("prompt", "model", "images") if not body.get(k)]
        if missing:
            self._reply(400, _error(f"参数错误：缺少 {', '.join(missing)}"))
            return None
        return str(body["prompt"])

    def _create_task(
        self, prompt: str, markers: dict[str, str], fetching: int = 0, portrait: bool = False
    ) -> str | None:
        """A new task's id; None (answered 403) when the balance is spent."""
        state = self.server.state
        with state.lock:
            config = state.config
            if config.balance is not None and config.balance <= 0:
                self._reply(403, _error("用户额度不足，请充值", code="insufficient_user_quota"))
                return None
            if config.balance is not None:
                config.balance -= 1
            task_id = f"veo3:{int(time.time())}-{uuid.uuid4().hex[:10]}"
            if markers.get("task-id-size"):  # an id longer than any column keeps
                task_id = task_id.ljust(int(markers["task-id-size"]), "x")
            fails = "fail" in markers or state.rng.random() < config.failure_rate
            created = time.monotonic()
            echo = self._token() if "echo-key-poll" in markers else ""
            task = Task(
                task_id,
                prompt,
                created,
                created + config.task_seconds,
                fails or bool(echo),
                cut_video="cut-video" in markers,
                echo=echo,
                fetching=fetching,
                portrait=portrait,
            )
            state.start_task(task)
        return task_id

    def _answer_created(self, task_id: str, markers: dict[str, str]) -> None:
        """Answer a created task, or fail to, as the prompt's markers ask."""
        if "drop-after" in markers:
            self._drop()
            return
        if "slow" in markers:
            time.sleep(float(markers["slow"] or 30))
        if "no-task-id" in markers:
            self._reply(200, {"code": "success", "message": "ok"})
            return
        with self._dripping(float(markers.get("drip") or 0)):
            self._reply(200, {"task_id": task_id})

    def do_GET(self) -> None:
        arrived = time.monotonic()
        if self.path == "/_mock/stats":
            with self.server.state.lock:
                self._reply(200, self.server.state.stats())
            return
        if self.path.startswith("/_mock/videos/"):
            self._video(unquote(self.path[len("/_mock/videos/") :]).removesuffix(".mp4"))
            return
        if self.path.startswith(gemini.API):
            gemini.get(self, arrived)
            return
        if not self.path.startswith(SUBMIT_PATH + "/"):
            self._reply(404, _error(f"Invalid URL (GET {self.path})"))
            return
        if not self._admitted(arrived):
            return
        task_id = unquote(self.path[len(SUBMIT_PATH) + 1 :])
        state = self.server.state
        with state.lock:
            state.polls += 1
            task = state.tasks.get(task_id) or state.recall(task_id)
        if task is None:
            self._reply(404, {"code": "task_not_exist", "message": "task_not_exist", "data": None})
            return
        with self._dripping(state.config.drip_polls):
            self._reply(200, self._task_view(task))

    def _task_view(self, task: Task) -> dict[str, Any]:
        now = time.monotonic()
        done = now >= task.ends and task.fetching == 0
        share = min(1.0, (now - task.created) / (task.ends - task.created or 1.0))
        blocked = _blocked(task)
        failed = task.fails or bool(task.image_error) or blocked == "failure"
        status = "IN_PROGRESS" if not done else "FAILURE" if failed else "SUCCESS"
        if not done and share < 0.1:
            status = "NOT_START"
        host = self.headers.get("Host", "127.0.0.1")
        output = f"http://{host}/_mock/videos/{quote(task.task_id, safe='')}.mp4"
        if blocked == "empty":
            output = ""  # a filter's SUCCESS without a video, as some relays answer
        reason = "视频生成失败：上游服务异常" if done and task.fails else ""
        if done and blocked == "failure":
            reason = "视频生成失败：内容审核未通过（违反安全策略）"
        if done and task.image_error:
            reason = task.image_error
        progress = f"{int(share * 100)}%"
        if task.echo:
            reason, progress = f"鉴权失败 {_echoed(task.echo)}", f"{progress} ({task.echo[:12]})"
        return {
            "task_id": task.task_id,
            "platform": "google",
            "action": "google-videos",
            "status": status,
            "fail_reason": reason,
            "progress": progress,
            "data": {"output": output} if status == "SUCCESS" else None,
            "search_item": "",
        }

    def _video(self, task_id: str) -> None:
        """The task's video; `Range: bytes=N-` answered 206 (or 416 past the end)."""
        state = self.server.state
        with state.lock:
            state.video_requests += 1
            task = state.tasks.get(task_id)
            cut = task is not None and task.cut_video and "Range" not in self.headers
            if cut and task is not None:
                task.cut_video = False
        if (
            task is None
            or time.monotonic() < task.ends
            or task.fails
            or task.image_error
            or _blocked(task) is not None
        ):
            self._reply(404, _error("video not found"))
            return
        data = state.video_of(task)  # a clip is made outside the lock: it takes a moment
        with self._dripping(state.config.drip_videos):
            self._send_video(data, cut)

    def _send_video(self, data: bytes, cut: bool) -> None:
        state = self.server.state
        size = len(data)
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", "").strip())
        if match and int(match.group(1)) >= size:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if match:
            start = int(match.group(1))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        else:
            self.send_response(200)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(size - start))
        self.end_headers()
        body = data[: size // 2] if cut else data[start:]
        with state.lock:
            state.video_bytes_sent += len(body)
        self.wfile.write(body)
        if cut:
            self.wfile.flush()
            self._drop()

    def _configure(self) -> None:
        body = self._body()
        state = self.server.state
        names = {f.name for f in fields(MockConfig)}
        if not isinstance(body, dict) or not set(body) <= names:
            self._reply(400, _error(f"config fields are {sorted(names)}"))
            return
        with state.lock:
            for name, value in body.items():
                setattr(state.config, name, value)
            config = asdict(state.config)
        self._reply(200, config)


def _blocked(task: Task) -> str | None:
    """How a relay says a filter stopped the task, as its prompt's markers ask:
    `[mock:filtered]` (or `filtered-charged`) a FAILURE whose reason speaks of moderation,
    `[mock:filtered-empty]` a SUCCESS without a video; None: not filtered."""
    markers = dict(MARKER.findall(task.prompt))
    if "filtered-empty" in markers:
        return "empty"
    return "failure" if "filtered" in markers or "filtered-charged" in markers else None


def _on_this_machine(link: str) -> bool:
    """A link to localhost or a loopback address (decided without DNS: no lookup leaves)."""
    host = urlsplit(link).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _fetch_image(state: MockState, task_id: str, prompt: str, link: str, first: bool) -> None:
    """Fetch one image link of a task, as a relay does after accepting it (`first`: the
    task's first image, which its clip shows)."""
    problem, digest = "", None
    try:
        answer = httpx.get(link, timeout=10.0)
        if answer.status_code != 200:
            problem = f"图片下载失败：HTTP {answer.status_code}"
        elif sniff(answer.content[:SNIFF_BYTES]) is None:
            problem = "图片下载失败：链接返回的不是图片"
        else:
            digest = hashlib.sha256(answer.content).hexdigest()
    except httpx.HTTPError as exc:
        problem = f"图片下载失败：{type(exc).__name__}"
    with state.lock:
        task = state.tasks.get(task_id)
        if digest is not None:
            state.images_by_prompt.setdefault(prompt, []).append(digest)
            if first:
                state.keep_first_image(task, answer.content)
        if task is not None:
            task.fetching -= 1
            task.image_error = task.image_error or problem


class _Drip:
    """A writer that sends what it is given a byte at a time, `seconds` apart."""

    def __init__(self, plain: Any, seconds: float) -> None:
        self._plain, self._seconds = plain, seconds

    def write(self, data: bytes) -> int:
        for index in range(len(data)):
            self._plain.write(data[index : index + 1])
            time.sleep(self._seconds)
        return len(data)

    def flush(self) -> None:
        self._plain.flush()
