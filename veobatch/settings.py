"""Settings: one table of `VEO_*` environment variables, each also a CLI option.

`SETTINGS` is the single list of what can be configured; the CLI builds its options from it and
the compose-file test checks `VEO_*` names against it. `Settings.from_values()` turns raw strings
into checked values and says which variable is wrong when one is.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from veobatch.catalog import DEFAULT_MODELS, ImageRange, parse_models
from veobatch.errors import ConfigError
from veobatch.pricing import micros, parse_prices

DEFAULT_DATABASE_URL: Final = "sqlite:///./veo-batch.db"
# A stop (SIGTERM, Ctrl-C) waits for submissions in flight at most their whole deadline and
# this, to record them; polls and downloads in flight are given up at once.
STOP_SLACK: Final = 10.0


@dataclass(frozen=True, slots=True)
class SettingSpec:
    name: str  # attribute of Settings and the CLI option `--name-with-dashes`
    env: str
    help: str


SETTINGS: Final[tuple[SettingSpec, ...]] = (
    SettingSpec(
        "database_url",
        "VEO_DATABASE_URL",
        "Database URL: sqlite:///PATH (default ./veo-batch.db) or postgresql://USER@HOST/DB.",
    ),
    SettingSpec(
        "redis_url", "VEO_REDIS_URL", "Redis URL for distributed workers and the shared limit."
    ),
    SettingSpec("api_base", "VEO_API_BASE", "Provider base URL, e.g. https://relay.example.com."),
    SettingSpec("api_key", "VEO_API_KEY", "Provider API key (never stored or logged)."),
    SettingSpec("rate", "VEO_RATE", "Global request rate, e.g. 10/min or 2/s,burst=4."),
    SettingSpec("connect_timeout", "VEO_CONNECT_TIMEOUT", "Seconds to connect to the provider."),
    SettingSpec(
        "read_timeout",
        "VEO_READ_TIMEOUT",
        "Seconds to wait for each read of the provider's answer; a request ends within both "
        "timeouts together in all, however slowly the answer comes (default 60).",
    ),
    SettingSpec(
        "lease",
        "VEO_LEASE",
        "Seconds a worker may hold a row mid-request before it is "
        "declared in doubt (default: both timeouts plus 60).",
    ),
    SettingSpec(
        "models", "VEO_MODELS", "Extra or changed models: NAME=LOW-HIGH images, comma separated."
    ),
    SettingSpec(
        "max_in_flight",
        "VEO_MAX_IN_FLIGHT",
        "Most rows submitted and not yet finished at once, across all workers (default: no cap).",
    ),
    SettingSpec(
        "poll_delay", "VEO_POLL_DELAY", "Seconds from a submission to its first poll (default 10)."
    ),
    SettingSpec(
        "poll_interval",
        "VEO_POLL_INTERVAL",
        "Seconds between polls of a task, growing from the first to the second: MIN-MAX "
        "(default 5-30).",
    ),
    SettingSpec(
        "poll_deadline",
        "VEO_POLL_DEADLINE",
        "Seconds a task may generate before its row fails with kind timeout (default 1800).",
    ),
    SettingSpec(
        "poll_rate",
        "VEO_POLL_RATE",
        "A separate request rate for polls, like VEO_RATE (default: polls share VEO_RATE).",
    ),
    SettingSpec(
        "api_tokens",
        "VEO_API_TOKENS",
        "Bearer tokens that callers of `veo-batch serve` must present, comma separated "
        "(tokens of our own, never the provider key).",
    ),
    SettingSpec(
        "api_read_tokens",
        "VEO_API_READ_TOKENS",
        "Tokens that can look (the API's GETs, the dashboard's pages) but not act, comma "
        "separated.",
    ),
    SettingSpec(
        "webhook_secret",
        "VEO_WEBHOOK_SECRET",
        "Secret that signs webhook calls (HMAC-SHA256 of the timestamp and body).",
    ),
    SettingSpec(
        "download_allow_private",
        "VEO_DOWNLOAD_ALLOW_PRIVATE",
        "Let video downloads reach private, loopback and link-local addresses other than the "
        "relay's own (VEO_API_BASE's host and port, always allowed): true or false (default "
        "false, so a link from a relay cannot reach the services of this network).",
    ),
    SettingSpec(
        "webhook_allow_private",
        "VEO_WEBHOOK_ALLOW_PRIVATE",
        "Let webhooks call private, loopback and link-local addresses: true or false (default "
        "false, so a batch's webhook cannot reach the services of this network).",
    ),
    SettingSpec(
        "download_dir",
        "VEO_DOWNLOAD_DIR",
        "Download each finished video into this directory (default: no downloads).",
    ),
    SettingSpec(
        "download_timeout",
        "VEO_DOWNLOAD_TIMEOUT",
        "Seconds a video's download may take in all: connecting, the headers and every byte "
        "(default 600); past it, it is tried again later from where it stopped.",
    ),
    SettingSpec(
        "video_max_mb",
        "VEO_VIDEO_MAX_MB",
        "The largest video kept, in MB (default 500): a larger one is refused as soon as its "
        "size is announced, or stopped when its bytes pass it, and nothing of it is kept.",
    ),
    SettingSpec(
        "prices",
        "VEO_PRICES",
        "Price of one request per model, in VEO_CURRENCY: veo3.1=0.25,veo3-fast-frames=0.15, or "
        "the path of a .toml or .yaml file with a `prices` table (default: none, every model "
        "unpriced).",
    ),
    SettingSpec(
        "currency", "VEO_CURRENCY", "The currency of VEO_PRICES and budgets (default USD)."
    ),
    SettingSpec(
        "daily_budget",
        "VEO_DAILY_BUDGET",
        "Most the account may spend per UTC day, across every batch and worker (default: no cap).",
    ),
    SettingSpec(
        "image_mode",
        "VEO_IMAGE_MODE",
        "How local images reach the provider: data-uri (default: inline as data:image/...;"
        "base64, needs nothing else), base64 (inline, without the data: prefix) or url "
        "(uploaded once to VEO_S3_URL and sent as a link).",
    ),
    SettingSpec(
        "image_max_mb",
        "VEO_IMAGE_MAX_MB",
        "Largest local image sent as it is, in MB (default 4: relays cap request bodies and "
        "base64 adds a third).",
    ),
    SettingSpec(
        "image_oversize",
        "VEO_IMAGE_OVERSIZE",
        "A local image over VEO_IMAGE_MAX_MB at load: shrink (default: re-encoded and scaled "
        "down into VEO_DATA_DIR, same shape) or refuse.",
    ),
    SettingSpec(
        "data_dir",
        "VEO_DATA_DIR",
        "Folder for the images veo-batch keeps: scaled-down copies, and the images of a .zip "
        "uploaded over HTTP (default ./veo-batch-data).",
    ),
    SettingSpec(
        "s3_url",
        "VEO_S3_URL",
        "Bucket for VEO_IMAGE_MODE=url, as s3://BUCKET/PREFIX; credentials the usual AWS way "
        "(AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, ~/.aws, a role).",
    ),
    SettingSpec(
        "s3_endpoint",
        "VEO_S3_ENDPOINT",
        "Endpoint of an S3-compatible service (MinIO, R2...), e.g. http://127.0.0.1:9000 "
        "(default: AWS).",
    ),
    SettingSpec(
        "s3_public_url",
        "VEO_S3_PUBLIC_URL",
        "Base URL of a public bucket: images are sent as this URL plus their key instead of a "
        "presigned link (which lasts 7 days).",
    ),
    SettingSpec(
        "log_format",
        "VEO_LOG_FORMAT",
        "How the worker, the scheduler and `serve` log: text (default, readable) or json (one "
        "object per line, for a log store).",
    ),
)

IMAGE_MODES: Final = ("data-uri", "base64", "url")
_BUCKET: Final = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")  # S3's rule for bucket names
OVERSIZE_CHOICES: Final = ("shrink", "refuse")
LOG_FORMATS: Final = ("text", "json")

SETTING_ENV_NAMES: Final = frozenset(spec.env for spec in SETTINGS)


class Secret:
    """A string that does not show itself in repr(), str() or tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


_UNITS: Final = {
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "m": 60.0,
    "min": 60.0,
    "minute": 60.0,
    "h": 3600.0,
    "hour": 3600.0,
}
_RATE_RE: Final = re.compile(
    r"^\s*(?P<count>\d+(?:\.\d+)?)\s*/\s*(?:(?P<span>\d+(?:\.\d+)?)\s*)?(?P<unit>[a-z]+)\s*"
    r"(?:,\s*burst\s*=\s*(?P<burst>\d+)\s*)?$"
)


@dataclass(frozen=True, slots=True)
class Rate:
    """`count` requests per `period` seconds, with up to `burst` requests at once."""

    count: float
    period: float
    burst: int = 1

    @property
    def per_second(self) -> float:
        return self.count / self.period

    def __str__(self) -> str:
        units = {1.0: "s", 60.0: "min", 3600.0: "h", 86400.0: "day"}
        unit = units.get(self.period)
        text = f"{self.count:g}/{unit}" if unit else f"{self.count:g} per {self.period:g} s"
        return text + (f", burst={self.burst}" if self.burst > 1 else "")

    @classmethod
    def parse(cls, text: str, env: str = "VEO_RATE") -> Rate:
        match = _RATE_RE.match(text.lower())
        name = match["unit"] if match else ""
        unit = _UNITS.get(name) or _UNITS.get(name.removesuffix("s"))
        if not match or unit is None or float(match["count"]) <= 0:
            raise ConfigError(
                f"{env}: {text!r} is not a rate; write COUNT/UNIT such as '10/min', '2/s' "
                "or '100/h', optionally followed by ',burst=N'"
            )
        span = float(match["span"]) if match["span"] else 1.0
        burst = int(match["burst"]) if match["burst"] else 1
        return cls(count=float(match["count"]), period=span * unit, burst=max(burst, 1))


def normalize_database_url(url: str) -> str:
    """Accept the usual spellings and pick the driver we ship (psycopg 3) for PostgreSQL."""
    url = url.strip()
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    if url.startswith(("sqlite://", "postgresql+psycopg://")):
        return url
    raise ConfigError(
        f"VEO_DATABASE_URL: unsupported URL {url.split('://')[0]!r}://...; use "
        "sqlite:///path/to/file.db or postgresql://user:password@host:5432/dbname"
    )


def _number(
    raw: Mapping[str, str], name: str, default: Any, what: str, most: float = math.inf
) -> Any:
    """Setting `name` (VEO_NAME) as a number above 0 and at most `most`, or `default` when it
    is not given; `what` says in words what it must be."""
    if name not in raw:
        return default
    try:
        value = float(raw[name])
    except ValueError:
        value = -1.0
    if not 0 < value <= most:
        raise ConfigError(f"VEO_{name.upper()}: {raw[name]!r} is not {what}")
    return value


def _seconds(raw: Mapping[str, str], name: str, default: Any) -> Any:
    """Setting `name` (VEO_NAME) as seconds above 0, or `default` when it is not given."""
    return _number(raw, name, default, "a number of seconds above 0")


def _flag(raw: Mapping[str, str], name: str, default: bool) -> bool:
    """Setting `name` (VEO_NAME) as true or false, or `default` when it is not given."""
    if name not in raw:
        return default
    value = _FLAGS.get(raw[name].lower())
    if value is None:
        raise ConfigError(f"VEO_{name.upper()}: {raw[name]!r} is not true or false")
    return value


_FLAGS: Final = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def _choice(raw: Mapping[str, str], name: str, choices: tuple[str, ...], default: str) -> str:
    """Setting `name` (VEO_NAME) as one of `choices`, or `default` when it is not given."""
    value = raw.get(name, default).lower()
    if value not in choices:
        raise ConfigError(f"VEO_{name.upper()}: {raw[name]!r} is not one of {', '.join(choices)}")
    return value


def _currency(text: str) -> str:
    if not re.fullmatch(r"[^\W\d_]{1,8}|[$€£¥₹₩]", text):
        raise ConfigError(f"VEO_CURRENCY: {text!r} is not a currency such as USD, EUR or CNY")
    return text


def _s3_url(text: str | None) -> str | None:
    if text is None:
        return None
    bucket = text.removeprefix("s3://").partition("/")[0]
    if not text.startswith("s3://") or not re.fullmatch(
        r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", bucket
    ):
        raise ConfigError(f"VEO_S3_URL: {text!r} is not s3://BUCKET/PREFIX (e.g. s3://photos/veo)")
    return text


def _http_url(raw: Mapping[str, str], name: str) -> str | None:
    value = raw.get(name)
    if value is not None and not value.startswith(("http://", "https://")):
        raise ConfigError(f"VEO_{name.upper()}: {value!r} must start with http:// or https://")
    return value.rstrip("/") if value else None


def _count(raw: Mapping[str, str], name: str, env: str) -> int | None:
    if name not in raw:
        return None
    if not raw[name].isdigit() or int(raw[name]) < 1:
        raise ConfigError(f"{env}: {raw[name]!r} is not a whole number above 0")
    return int(raw[name])


def _tokens(text: str, env: str = "VEO_API_TOKENS") -> tuple[Secret, ...]:
    tokens = tuple(Secret(token.strip()) for token in text.split(",") if token.strip())
    if any(len(token.reveal()) < 16 for token in tokens):
        raise ConfigError(f"{env}: each token must be at least 16 characters")
    return tokens


def _span(text: str) -> tuple[float, float]:
    """VEO_POLL_INTERVAL: `MIN-MAX` seconds, or one number for a fixed interval."""
    low, _, high = text.partition("-")
    try:
        span = (float(low), float(high or low))
    except ValueError:
        span = (0.0, 0.0)
    if not 0 < span[0] <= span[1]:
        raise ConfigError(
            f"VEO_POLL_INTERVAL: {text!r} is not MIN-MAX seconds (e.g. 5-30) or one number"
        )
    return span


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    redis_url: str | None = None
    api_base: str | None = None
    api_key: Secret | None = field(default=None, repr=False)
    rate: Rate | None = None
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    lease: float | None = None
    models: Mapping[str, ImageRange] = field(default_factory=lambda: dict(DEFAULT_MODELS))
    max_in_flight: int | None = None
    poll_delay: float = 10.0
    poll_interval: tuple[float, float] = (5.0, 30.0)
    poll_deadline: float = 1800.0
    poll_rate: Rate | None = None
    download_dir: str | None = None
    download_timeout: float = 600.0
    video_max_mb: float = 500.0
    api_tokens: tuple[Secret, ...] = field(default=(), repr=False)
    api_read_tokens: tuple[Secret, ...] = field(default=(), repr=False)
    webhook_secret: Secret | None = field(default=None, repr=False)
    webhook_allow_private: bool = False
    download_allow_private: bool = False
    prices: Mapping[str, int] = field(default_factory=dict)  # model → micro-units per request
    currency: str = "USD"
    daily_budget: int | None = None  # micro-units per UTC day
    image_mode: str = "data-uri"
    image_max_mb: float = 4.0
    image_oversize: str = "shrink"
    data_dir: str = "./veo-batch-data"
    s3_url: str | None = None
    s3_endpoint: str | None = None
    s3_public_url: str | None = None
    log_format: str = "text"

    @classmethod
    def from_values(cls, values: Mapping[str, str | None]) -> Settings:
        """Build settings from raw strings keyed by setting name; blank means unset."""
        raw = {k: v.strip() for k, v in values.items() if v is not None and v.strip()}
        base = cls()  # the defaults: they live in the fields above, and only there
        return cls(
            database_url=normalize_database_url(raw.get("database_url", DEFAULT_DATABASE_URL)),
            redis_url=raw.get("redis_url"),
            api_base=_http_url(raw, "api_base"),
            api_key=Secret(raw["api_key"]) if "api_key" in raw else None,
            rate=Rate.parse(raw["rate"]) if "rate" in raw else None,
            connect_timeout=_seconds(raw, "connect_timeout", base.connect_timeout),
            read_timeout=_seconds(raw, "read_timeout", base.read_timeout),
            lease=_seconds(raw, "lease", base.lease),
            models=parse_models(raw["models"]) if "models" in raw else base.models,
            max_in_flight=_count(raw, "max_in_flight", "VEO_MAX_IN_FLIGHT"),
            poll_delay=_seconds(raw, "poll_delay", base.poll_delay),
            poll_interval=(
                _span(raw["poll_interval"]) if "poll_interval" in raw else base.poll_interval
            ),
            poll_deadline=_seconds(raw, "poll_deadline", base.poll_deadline),
            poll_rate=Rate.parse(raw["poll_rate"], "VEO_POLL_RATE") if "poll_rate" in raw else None,
            download_dir=raw.get("download_dir"),
            download_timeout=_seconds(raw, "download_timeout", base.download_timeout),
            video_max_mb=_number(raw, "video_max_mb", base.video_max_mb, "a size in MB above 0"),
            api_tokens=_tokens(raw.get("api_tokens", "")),
            api_read_tokens=_tokens(raw.get("api_read_tokens", ""), "VEO_API_READ_TOKENS"),
            webhook_secret=Secret(raw["webhook_secret"]) if "webhook_secret" in raw else None,
            webhook_allow_private=_flag(raw, "webhook_allow_private", base.webhook_allow_private),
            download_allow_private=_flag(
                raw, "download_allow_private", base.download_allow_private
            ),
            prices=parse_prices(raw["prices"]) if "prices" in raw else base.prices,
            currency=_currency(raw.get("currency", base.currency)),
            daily_budget=micros(raw["daily_budget"], "VEO_DAILY_BUDGET")
            if "daily_budget" in raw
            else None,
            image_mode=_choice(raw, "image_mode", IMAGE_MODES, base.image_mode),
            image_max_mb=_number(
                raw,
                "image_max_mb",
                base.image_max_mb,
                "a size in MB above 0 and at most 20 (the provider's own limit)",
                most=20,
            ),
            image_oversize=_choice(raw, "image_oversize", OVERSIZE_CHOICES, base.image_oversize),
            data_dir=raw.get("data_dir", base.data_dir),
            s3_url=_s3_url(raw.get("s3_url")),
            s3_endpoint=_http_url(raw, "s3_endpoint"),
            s3_public_url=_http_url(raw, "s3_public_url"),
            log_format=_choice(raw, "log_format", LOG_FORMATS, base.log_format),
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        return cls.from_values({spec.name: environ.get(spec.env) for spec in SETTINGS})

    @property
    def lease_seconds(self) -> float:
        """How long a claimed row may stay `submitting` (VEO_LEASE, else the longest a request
        can take plus a minute of waiting for a rate slot)."""
        if self.lease is not None:
            return self.lease
        return self.connect_timeout + self.read_timeout + 60

    @property
    def stop_grace(self) -> float:
        """How long a stopping `run` or worker may take: the whole deadline of a submission
        already sent, then STOP_SLACK to record it."""
        return self.connect_timeout + self.read_timeout + STOP_SLACK

    def on_database(self, url: str) -> Settings:
        """These settings with another database (checked as VEO_DATABASE_URL is)."""
        return dataclasses.replace(self, database_url=normalize_database_url(url))
