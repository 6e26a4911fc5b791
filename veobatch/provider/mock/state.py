"""The mock's settings (`MockConfig`) and what it remembers (`MockState`): tasks, counts,
the requests of the last window, the images seen."""

from __future__ import annotations

import hashlib
import heapq
import random
import re
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Final

from veobatch.provider.clips import ClipMaker

MP4_START: Final = b"\x00\x00\x00\x14ftypisom\x00\x00\x02\x00isom"  # an MP4's first box
MARKER: Final = re.compile(r"\[mock:([a-z-]+)(?:=([^\]]*))?\]")
_OUR_TASK_ID: Final = re.compile(r"^veo3:(\d+)-[0-9a-f]{10}$")
_KEPT_IMAGES: Final = 256  # distinct first images the mock keeps for its clips


@dataclass
class MockConfig:
    api_key: str = "mock-key"
    limit: int | None = None  # requests allowed per `window` seconds (every route counts)
    window: float = 60.0
    balance: int | None = None  # tasks that can still be created; None: no end
    down: int | None = None  # answer every request with this status (502: an HTML page)
    task_seconds: float = 0.0  # time from creation to SUCCESS or FAILURE
    failure_rate: float = 0.0  # share of tasks that end in FAILURE
    video_bytes: int = 64 * 1024
    seed: int = 0
    accepts: list[str] = field(default_factory=lambda: ["url", "data-uri", "base64"])
    clips: bool = False  # videos are real MP4 clips of the first image (else `video_bytes` of text)
    drip_polls: float = 0.0  # seconds between the bytes of each poll's answer (0: at once)
    drip_videos: float = 0.0  # seconds between the bytes of each video's answer (0: at once)


@dataclass
class Task:
    task_id: str
    prompt: str
    created: float
    ends: float
    fails: bool
    cut_video: bool = False  # the next full download of its video stops halfway
    echo: str = ""  # the caller's key, echoed in every answer about the task (a careless relay)
    fetching: int = 0  # image links not fetched yet: the task does not end before they are
    first_image: str | None = None  # sha256 of its first image, when the mock has its bytes
    image_error: str = ""  # a link that gave no image: the task ends in FAILURE with this
    portrait: bool = False  # asked for 9:16: its clip is upright

    def video(self, size: int) -> bytes:
        """`size` bytes that start as an MP4 file does (an `ftyp` box), then the task's id."""
        unit = (self.task_id + "\n").encode()
        body = MP4_START + unit * (size // len(unit) + 1)
        return body[:size]


@dataclass
class MockState:
    """Everything the mock remembers; one lock guards it (handlers run on many threads)."""

    config: MockConfig
    lock: threading.Lock = field(default_factory=threading.Lock)
    tasks: dict[str, Task] = field(default_factory=dict)
    created_by_prompt: Counter[str] = field(default_factory=Counter)
    arrivals: deque[float] = field(default_factory=deque)  # within the last window
    requests: int = 0
    polls: int = 0
    rejected_429: int = 0
    recalled: int = 0  # polls of tasks this mock did not make (see `recall`)
    busiest_window: int = 0
    video_requests: int = 0
    video_bytes_sent: int = 0
    dripping: int = 0  # answers being dripped now
    running_ends: list[float] = field(default_factory=list)  # a heap: when each task ends
    peak_running: int = 0
    rng: random.Random = field(default_factory=random.Random)
    images_by_prompt: dict[str, list[str]] = field(default_factory=dict)  # sha256 of each
    images_not_fetched: int = 0  # links to other machines, which the mock does not fetch
    # Google's dialect: each prompt's images by role (sha256) and its last parameters
    gemini_images_by_prompt: dict[str, dict[str, Any]] = field(default_factory=dict)
    gemini_parameters_by_prompt: dict[str, dict[str, Any]] = field(default_factory=dict)
    video_requests_keyed: int = 0  # Google's file downloads that carried the key
    video_refused_no_key: int = 0  # Google's file downloads refused: no key, or a wrong one
    first_images: dict[str, bytes] = field(default_factory=dict)  # by sha256, for the clips
    clips: ClipMaker = field(default_factory=ClipMaker)

    def keep_first_image(self, task: Task | None, data: bytes) -> None:
        """Keep a task's first image for its clip (at most _KEPT_IMAGES distinct ones)."""
        if task is None or not self.config.clips:
            return
        digest = hashlib.sha256(data).hexdigest()
        task.first_image = digest
        if digest not in self.first_images and len(self.first_images) < _KEPT_IMAGES:
            self.first_images[digest] = data

    def video_of(self, task: Task) -> bytes:
        if not self.config.clips:
            return task.video(self.config.video_bytes)
        image = self.first_images.get(task.first_image or "")
        return self.clips.clip_for(image, portrait=task.portrait)

    def start_task(self, task: Task) -> None:
        self.tasks[task.task_id] = task
        self.created_by_prompt[task.prompt] += 1
        while self.running_ends and self.running_ends[0] <= task.created:
            heapq.heappop(self.running_ends)
        heapq.heappush(self.running_ends, task.ends)
        self.peak_running = max(self.peak_running, len(self.running_ends))

    def arrive(self, now: float) -> bool:
        """Record one request; False if it is over the limit (it still counts, as on relays)."""
        config = self.config
        self.requests += 1
        self.arrivals.append(now)
        while self.arrivals and self.arrivals[0] <= now - config.window:
            self.arrivals.popleft()
        self.busiest_window = max(self.busiest_window, len(self.arrivals))
        if config.limit is not None and len(self.arrivals) > config.limit:
            self.rejected_429 += 1
            return False
        return True

    def recall(self, task_id: str) -> Task | None:
        """A task of ours that this mock did not create: an earlier mock did (each `veo-batch
        run --mock` starts its own). Its id says when it was made; it succeeds."""
        match = _OUR_TASK_ID.match(task_id)
        if match is None:
            return None
        self.recalled += 1
        age = max(time.time() - int(match.group(1)), 0.0)
        created = time.monotonic() - age
        task = Task(task_id, "", created, created + self.config.task_seconds, fails=False)
        self.tasks[task_id] = task
        return task

    def stats(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "created": sum(self.created_by_prompt.values()),
            "polls": self.polls,
            "peak_running": self.peak_running,
            "video_requests": self.video_requests,
            "video_bytes_sent": self.video_bytes_sent,
            "dripping": self.dripping,
            "rejected_429": self.rejected_429,
            "recalled": self.recalled,
            "busiest_window": self.busiest_window,
            "limit": self.config.limit,
            "window": self.config.window,
            "balance": self.config.balance,
            "created_by_prompt": dict(self.created_by_prompt),
            "images_by_prompt": {k: list(v) for k, v in self.images_by_prompt.items()},
            "images_not_fetched": self.images_not_fetched,
            "gemini_images_by_prompt": {
                k: {**v, "referenceImages": list(v["referenceImages"])}
                for k, v in self.gemini_images_by_prompt.items()
            },
            "gemini_parameters_by_prompt": {
                k: dict(v) for k, v in self.gemini_parameters_by_prompt.items()
            },
            "video_requests_keyed": self.video_requests_keyed,
            "video_refused_no_key": self.video_refused_no_key,
        }
