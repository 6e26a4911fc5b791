"""What settings hold, and the readers that turn a variable's text into it.

A reader is called as `read(text, env)`: `text` is the variable's value, stripped and never
blank (blank means unset, and unset means the default); `env` is the variable's name. It returns
the value, or raises ConfigError that starts with `env` and says what to write instead, so every
bad setting is reported the same way (one line, exit code 6). `veobatch.settings` gives each
setting one of these.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from veobatch.catalog import parse_models
from veobatch.errors import ConfigError
from veobatch.pricing import micros, parse_prices

Read = Callable[[str, str], Any]


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


# ---------------------------------------------------------------------------------- readers


def text(value: str, _env: str) -> str:
    return value


def secret(value: str, _env: str) -> Secret:
    return Secret(value)


def database_url(value: str, _env: str) -> str:
    return normalize_database_url(value)


def models(value: str, _env: str) -> Any:
    return parse_models(value)  # its errors name VEO_MODELS and the item


def prices(value: str, _env: str) -> Any:
    return parse_prices(value)  # its errors name VEO_PRICES and the model or file


money: Final[Read] = micros  # an amount in currency units, kept as micro-units


def number(what: str, most: float = math.inf) -> Read:
    """A number above 0 and at most `most`; `what` says in words what it must be."""

    def read(value: str, env: str) -> float:
        try:
            number = float(value)
        except ValueError:
            number = -1.0
        if not 0 < number <= most:
            raise ConfigError(f"{env}: {value!r} is not {what}")
        return number

    return read


seconds: Final = number("a number of seconds above 0")


def count(value: str, env: str) -> int:
    if not value.isdecimal() or int(value) < 1:
        raise ConfigError(f"{env}: {value!r} is not a whole number above 0")
    return int(value)


_FLAGS: Final = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def flag(value: str, env: str) -> bool:
    found = _FLAGS.get(value.lower())
    if found is None:
        raise ConfigError(f"{env}: {value!r} is not true or false")
    return found


def choice(*choices: str) -> Read:
    """One of `choices`, in any case."""

    def read(value: str, env: str) -> str:
        if value.lower() not in choices:
            raise ConfigError(f"{env}: {value!r} is not one of {', '.join(choices)}")
        return value.lower()

    return read


def http_url(value: str, env: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ConfigError(f"{env}: {value!r} must start with http:// or https://")
    return value.rstrip("/")


_BUCKET: Final = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")  # S3's rule for bucket names


def s3_url(value: str, env: str) -> str:
    bucket = value.removeprefix("s3://").partition("/")[0]
    if not value.startswith("s3://") or not _BUCKET.fullmatch(bucket):
        raise ConfigError(f"{env}: {value!r} is not s3://BUCKET/PREFIX (e.g. s3://photos/veo)")
    return value


def currency(value: str, env: str) -> str:
    if not re.fullmatch(r"[^\W\d_]{1,8}|[$€£¥₹₩]", value):
        raise ConfigError(f"{env}: {value!r} is not a currency such as USD, EUR or CNY")
    return value


def tokens(value: str, env: str) -> tuple[Secret, ...]:
    found = tuple(Secret(token.strip()) for token in value.split(",") if token.strip())
    if any(len(token.reveal()) < 16 for token in found):
        raise ConfigError(f"{env}: each token must be at least 16 characters")
    return found


def span(value: str, env: str) -> tuple[float, float]:
    """`MIN-MAX` seconds, or one number for a fixed interval."""
    low, _, high = value.partition("-")
    try:
        found = (float(low), float(high or low))
    except ValueError:
        found = (0.0, 0.0)
    if not 0 < found[0] <= found[1]:
        raise ConfigError(f"{env}: {value!r} is not MIN-MAX seconds (e.g. 5-30) or one number")
    return found
