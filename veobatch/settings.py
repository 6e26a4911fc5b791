"""Settings: every `VEO_*` environment variable, each declared once, as a field of `Settings`.

A declaration reads

    read_timeout: float = setting(60.0, read.seconds, "Seconds to wait for each read ...")

and that one line gives everything about the setting:

- its name, `read_timeout`: the attribute (`settings.read_timeout`), the key of
  `Settings.from_values`, the CLI option `--read-timeout`, and the environment variable
  `VEO_READ_TIMEOUT` (always `VEO_` and the name in capitals);
- its type, the annotation, and its default, used when the variable is unset or blank;
- its reader (from veobatch.settings_types, imported as `read`), which turns the variable's
  text into the value or raises ConfigError naming the variable and saying what to write;
- its help text, shown by `veo-batch --help`.

`SETTINGS` lists the declarations in order, for the CLI's options, `_export_settings` and the
tests (README's table, docker-compose's variables); `SETTING_ENV_NAMES` is their variables.
A default that depends on other settings is a property (`lease_seconds`, `stop_grace`).
To add a setting: one field here, one row in README's Settings table.

Why dataclass fields and not pydantic-settings (tried with 2.16): what veo-batch needs of
settings is what pydantic-settings does differently. `Settings()` is the defaults and reads
nothing (modules take constants from it at import, tests build it), while a BaseSettings reads
os.environ each time it is made, so a bad VEO_ value would break an import with a traceback;
`from_env` reads the mapping it is given (a child process's environment, a test's), BaseSettings
only os.environ; every value has its own reader and message (rates, MIN-MAX spans, sizes in MB,
tokens), so each field would need a validator raising ConfigError anyway, and the tuple and
mapping fields would need NoDecode to stop their text being read as JSON. Left with none of its
own behaviour, it would only add a dependency; dataclass field metadata carries the rest.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar, cast

from veobatch import settings_types as read
from veobatch.catalog import DEFAULT_MODELS, ImageRange
from veobatch.settings_types import Rate, Read, Secret, normalize_database_url

__all__ = [
    "DEFAULT_DATABASE_URL",
    "IMAGE_MODES",
    "LOG_FORMATS",
    "OVERSIZE_CHOICES",
    "SETTINGS",
    "SETTING_ENV_NAMES",
    "STOP_SLACK",
    "Rate",
    "Secret",
    "SettingSpec",
    "Settings",
    "normalize_database_url",
    "setting",
]

DEFAULT_DATABASE_URL: Final = "sqlite:///./veo-batch.db"
# A stop (SIGTERM, Ctrl-C) waits for submissions in flight at most their whole deadline and
# this, to record them; polls and downloads in flight are given up at once.
STOP_SLACK: Final = 10.0
IMAGE_MODES: Final = ("data-uri", "base64", "url")
OVERSIZE_CHOICES: Final = ("shrink", "refuse")
LOG_FORMATS: Final = ("text", "json")

T = TypeVar("T")
_DECLARED: Final = "veo-batch setting"  # the key of a declaration in a field's metadata


@dataclass(frozen=True, slots=True)
class SettingSpec:
    name: str  # attribute of Settings and the CLI option `--name-with-dashes`
    env: str  # VEO_ and the name in capitals
    help: str
    read: Read  # (text, env) -> value, or ConfigError naming env


def setting(default: T, reader: Read, help: str, *, secret: bool = False) -> T:
    """Declare a field of Settings as a setting (see the module's docstring). A dict default is
    copied for each Settings; a `secret` is left out of repr()."""
    if not help.strip():
        raise ValueError("a setting needs a help text: it is the CLI option's help")
    metadata = {_DECLARED: (reader, help.strip())}
    if isinstance(default, dict):
        copy = default.copy
        return cast(T, field(default_factory=copy, repr=not secret, metadata=metadata))
    return field(default=default, repr=not secret, metadata=metadata)


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str = setting(
        DEFAULT_DATABASE_URL,
        read.database_url,
        "Database URL: sqlite:///PATH (default ./veo-batch.db) or postgresql://USER@HOST/DB.",
    )
    redis_url: str | None = setting(
        None, read.text, "Redis URL for distributed workers and the shared limit."
    )
    api_base: str | None = setting(
        None, read.http_url, "Provider base URL, e.g. https://relay.example.com."
    )
    api_key: Secret | None = setting(
        None, read.secret, "Provider API key (never stored or logged).", secret=True
    )
    accounts: str | None = setting(
        None,
        read.text,
        "A TOML or YAML file of relay accounts, each with its own base, key variable, rate, "
        "cap, prices and budget (default: the one account of VEO_API_BASE and VEO_API_KEY, "
        "named default); see the README's Several accounts.",
    )
    rate: Rate | None = setting(
        None, Rate.parse, "Global request rate, e.g. 10/min or 2/s,burst=4."
    )
    connect_timeout: float = setting(10.0, read.seconds, "Seconds to connect to the provider.")
    read_timeout: float = setting(
        60.0,
        read.seconds,
        "Seconds to wait for each read of the provider's answer; a request ends within both "
        "timeouts together in all, however slowly the answer comes (default 60).",
    )
    lease: float | None = setting(
        None,
        read.seconds,
        "Seconds a worker may hold a row mid-request before it is "
        "declared in doubt (default: both timeouts plus 60).",
    )
    models: Mapping[str, ImageRange] = setting(
        DEFAULT_MODELS,
        read.models,
        "Extra or changed models: NAME=LOW-HIGH images, comma separated.",
    )
    max_in_flight: int | None = setting(
        None,
        read.count,
        "Most rows submitted and not yet finished at once, across all workers (default: no cap).",
    )
    poll_delay: float = setting(
        10.0, read.seconds, "Seconds from a submission to its first poll (default 10)."
    )
    poll_interval: tuple[float, float] = setting(
        (5.0, 30.0),
        read.span,
        "Seconds between polls of a task, growing from the first to the second: MIN-MAX "
        "(default 5-30).",
    )
    poll_deadline: float = setting(
        1800.0,
        read.seconds,
        "Seconds a task may generate before its row fails with kind timeout (default 1800).",
    )
    poll_rate: Rate | None = setting(
        None,
        Rate.parse,
        "A separate request rate for polls, like VEO_RATE (default: polls share VEO_RATE).",
    )
    api_tokens: tuple[Secret, ...] = setting(
        (),
        read.tokens,
        "Bearer tokens that callers of `veo-batch serve` must present, comma separated "
        "(tokens of our own, never the provider key).",
        secret=True,
    )
    api_read_tokens: tuple[Secret, ...] = setting(
        (),
        read.tokens,
        "Tokens that can look (the API's GETs, the dashboard's pages) but not act, comma "
        "separated.",
        secret=True,
    )
    webhook_secret: Secret | None = setting(
        None,
        read.secret,
        "Secret that signs webhook calls (HMAC-SHA256 of the timestamp and body).",
        secret=True,
    )
    download_allow_private: bool = setting(
        False,
        read.flag,
        "Let video downloads reach private, loopback and link-local addresses other than the "
        "relay's own (VEO_API_BASE's host and port, always allowed): true or false (default "
        "false, so a link from a relay cannot reach the services of this network).",
    )
    webhook_allow_private: bool = setting(
        False,
        read.flag,
        "Let webhooks call private, loopback and link-local addresses: true or false (default "
        "false, so a batch's webhook cannot reach the services of this network).",
    )
    download_dir: str | None = setting(
        None,
        read.text,
        "Download each finished video into this directory (default: no downloads).",
    )
    download_timeout: float = setting(
        600.0,
        read.seconds,
        "Seconds a video's download may take in all: connecting, the headers and every byte "
        "(default 600); past it, it is tried again later from where it stopped.",
    )
    video_max_mb: float = setting(
        500.0,
        read.number("a size in MB above 0"),
        "The largest video kept, in MB (default 500): a larger one is refused as soon as its "
        "size is announced, or stopped when its bytes pass it, and nothing of it is kept.",
    )
    prices: Mapping[str, int] = setting(  # model → micro-units per request
        {},
        read.prices,
        "Price of one request per model, in VEO_CURRENCY: veo3.1=0.25,veo3-fast-frames=0.15, or "
        "the path of a .toml or .yaml file with a `prices` table (default: none, every model "
        "unpriced).",
    )
    currency: str = setting(
        "USD", read.currency, "The currency of VEO_PRICES and budgets (default USD)."
    )
    daily_budget: int | None = setting(  # micro-units per UTC day
        None,
        read.money,
        "Most the account may spend per UTC day, across every batch and worker (default: no cap).",
    )
    image_mode: str = setting(
        "data-uri",
        read.choice(*IMAGE_MODES),
        "How local images reach the provider: data-uri (default: inline as data:image/...;"
        "base64, needs nothing else), base64 (inline, without the data: prefix) or url "
        "(uploaded once to VEO_S3_URL and sent as a link).",
    )
    image_max_mb: float = setting(
        4.0,
        read.number("a size in MB above 0 and at most 20 (the provider's own limit)", most=20),
        "Largest local image sent as it is, in MB (default 4: relays cap request bodies and "
        "base64 adds a third).",
    )
    image_oversize: str = setting(
        "shrink",
        read.choice(*OVERSIZE_CHOICES),
        "A local image over VEO_IMAGE_MAX_MB at load: shrink (default: re-encoded and scaled "
        "down into VEO_DATA_DIR, same shape) or refuse.",
    )
    data_dir: str = setting(
        "./veo-batch-data",
        read.text,
        "Folder for the images veo-batch keeps: scaled-down copies, and the images of a .zip "
        "uploaded over HTTP (default ./veo-batch-data).",
    )
    s3_url: str | None = setting(
        None,
        read.s3_url,
        "Bucket for VEO_IMAGE_MODE=url, as s3://BUCKET/PREFIX; credentials the usual AWS way "
        "(AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, ~/.aws, a role).",
    )
    s3_endpoint: str | None = setting(
        None,
        read.http_url,
        "Endpoint of an S3-compatible service (MinIO, R2...), e.g. http://127.0.0.1:9000 "
        "(default: AWS).",
    )
    s3_public_url: str | None = setting(
        None,
        read.http_url,
        "Base URL of a public bucket: images are sent as this URL plus their key instead of a "
        "presigned link (which lasts 7 days).",
    )
    log_format: str = setting(
        "text",
        read.choice(*LOG_FORMATS),
        "How the worker, the scheduler and `serve` log: text (default, readable) or json (one "
        "object per line, for a log store).",
    )

    @classmethod
    def from_values(cls, values: Mapping[str, str | None]) -> Settings:
        """Settings from raw strings keyed by setting name; blank or missing means the default,
        a bad value raises ConfigError naming its variable."""
        raw = {k: v.strip() for k, v in values.items() if v is not None and v.strip()}
        return cls(**{s.name: s.read(raw[s.name], s.env) for s in SETTINGS if s.name in raw})

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Settings from the `VEO_*` variables of `environ` (os.environ, or a child's)."""
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


def _declared(fields: tuple[dataclasses.Field[Any], ...]) -> tuple[SettingSpec, ...]:
    specs = []
    for each in fields:
        if _DECLARED not in each.metadata:
            raise TypeError(f"Settings.{each.name} is not declared with setting(...)")
        reader, help_text = each.metadata[_DECLARED]
        specs.append(SettingSpec(each.name, f"VEO_{each.name.upper()}", help_text, reader))
    return tuple(specs)


SETTINGS: Final = _declared(dataclasses.fields(Settings))
SETTING_ENV_NAMES: Final = frozenset(spec.env for spec in SETTINGS)
