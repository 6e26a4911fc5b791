"""What an account's API is, as veo-batch speaks it: a dialect. Pure: no I/O.

A dialect turns a row into a request, reads the answers to a submission and to a poll,
names the header a download of its videos carries (if any), says why a row cannot go to it,
and sorts every error into the kinds the engine knows (`ErrorKind`). `ProviderClient` does
the rest the same way for every dialect: the connection, the deadlines, the size limits, the
key kept out of every text. The engine, the limiters, the ledger of spending and a row's life
never ask which dialect they run.

Two are built: `relay` (the relay sites' `/v2/videos/generations`, see `relay.py`) and
`gemini` (Google's own Veo through the Gemini API, see `gemini.py`); `dialects.py` names them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, NamedTuple, Protocol

from veobatch.errors import ProviderError

FINISHED: Final = frozenset({"SUCCESS", "FAILURE"})

# A failure reason that speaks of a safety filter, a policy or moderation (English and the
# relays' Chinese): the video was filtered, not broken.
FILTER_WORDS: Final = re.compile(
    r"safety|polic(y|ies)|moderat|filtered|responsible ai|\brai\b|sensitive|nsfw|"
    r"审核|违规|敏感|安全|政策|不当|屏蔽|拦截",
    re.IGNORECASE,
)


class Ask(NamedTuple):
    """What a row asks for, ready for an account: its images as the account's image mode
    made them (links, or `data:` URIs), its model by the name the account knows it."""

    prompt: str
    model: str  # the job file's name (what it is: frames or components)
    api_model: str  # the account's name for it (what the request names)
    images: list[str]
    aspect_ratio: str | None = None
    enhance_prompt: bool | None = None
    extra: Mapping[str, Any] | None = None


class Request(NamedTuple):
    """A submission: the path below the account's base, and the JSON body."""

    path: str
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class TaskState:
    """What the provider says of one task, in the engine's words whatever the dialect."""

    task_id: str
    status: str  # SUCCESS, FAILURE, or a status still running (NOT_START, IN_PROGRESS, ...)
    progress: str | None
    fail_reason: str | None
    video_url: str | None
    video_problem: str | None = None  # why the video URL given could not be used
    filtered: str | None = None  # a safety filter stopped it: the provider's reason
    charged: bool | None = None  # whether the provider says a filtered video is billed

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @property
    def succeeded(self) -> bool:
        return self.status == "SUCCESS"


class Dialect(Protocol):
    """One provider API (see the module's docstring). Answers are parsed JSON, unchecked:
    a dialect checks every field it reads and says what is wrong in words."""

    name: str
    image_mode: str | None  # the one way it takes local images; None: the account's setting
    probe_path: str  # a GET that needs the key and creates nothing (for `doctor`)

    def headers(self, key: str) -> dict[str, str]:
        """The headers that carry the key on every API request."""
        ...

    def request(self, ask: Ask) -> Request:
        """The submission of `ask` (raises ImageError for an image it cannot send)."""
        ...

    def task_id(self, data: Any) -> tuple[str | None, str | None]:
        """The task id in a submission's answer, or why there is none: (id, None) or
        (None, problem)."""
        ...

    def poll_path(self, task_id: str) -> str:
        """Where the state of task `task_id` is asked (raises ValueError for an id this
        dialect never gives)."""
        ...

    def task_state(self, task_id: str, data: Any) -> TaskState | str:
        """A poll's answer read, or why it cannot be (a problem in words)."""
        ...

    def classify(self, status: int, body: bytes, headers: Mapping[str, str]) -> ProviderError:
        """The error of an HTTP answer that is not a success."""
        ...

    def download_header(self, key: str) -> tuple[str, str] | None:
        """The header a video download from the account's own origin carries (None: none;
        the key never goes to any other origin)."""
        ...

    def refusal(
        self, model: str, images: Sequence[object], extra: Mapping[str, Any] | None
    ) -> tuple[str, str] | None:
        """Why a row cannot go to this dialect at all, as (field, reason); None if it can."""
        ...


def filtered_reason(reason: str | None) -> bool:
    """Whether a failure reason speaks of a safety filter, a policy or moderation."""
    return bool(reason) and FILTER_WORDS.search(reason or "") is not None
