"""`veo-batch doctor`: is this machine set up to send to the relay? Each check says what it
found and, when something is off, what to do; nothing is spent.

The relay is asked for a task id that cannot exist (GET, never a POST): an answer at all
means it is reachable; 401 (or a 403 that is not about the balance) means it refuses the key;
a 404 or 400 means the key was accepted. The same answer's Date header tells how far this
machine's clock is from the relay's. The image mode is checked as a worker would (in url mode
the bucket is asked for), then the database and Redis, as `veo-batch health` asks them.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Final
from urllib.parse import urlsplit

import httpx

from veobatch.accounts.spec import AccountSpec, accounts_of
from veobatch.errors import ConfigError
from veobatch.health import Check, database_check, redis_check, redis_client
from veobatch.images.sending import ImageSender
from veobatch.provider.dialect import Dialect
from veobatch.provider.dialects import dialect_named
from veobatch.provider.redact import Redactor
from veobatch.provider.relay import RELAY
from veobatch.settings import Settings
from veobatch.states import ErrorKind

CLOCK_SKEW: Final = 60.0  # seconds off the relay's clock worth a warning
LOOPBACK: Final = frozenset({"127.0.0.1", "localhost", "::1"})


def settings_checks(settings: Settings) -> list[Check]:
    found = []
    if settings.api_base is None or settings.api_key is None:
        missing = " and ".join(
            name
            for name, value in (
                ("VEO_API_BASE", settings.api_base),
                ("VEO_API_KEY", settings.api_key),
            )
            if value is None
        )
        found.append(
            Check("settings", False, f"{missing} not set", "set the relay's address and your key")
        )
        return found
    parts = urlsplit(settings.api_base)
    if parts.scheme != "https" and parts.hostname not in LOOPBACK:
        found.append(
            Check(
                "settings",
                False,
                f"VEO_API_BASE is {parts.scheme}://: the key would cross the network in clear",
                "use the relay's https:// address",
                warning=True,
            )
        )
    if settings.rate is None:
        found.append(
            Check(
                "settings",
                False,
                "no VEO_RATE: requests go as fast as the workers can send them",
                "set the relay's limit, e.g. VEO_RATE=10/min (a 429 then never comes)",
                warning=True,
            )
        )
    if not settings.prices:
        found.append(
            Check(
                "settings",
                False,
                "no VEO_PRICES: estimates and budgets cannot say what a batch costs",
                "set the relay's price per request, e.g. VEO_PRICES=veo3.1=0.25",
                warning=True,
            )
        )
    if len(found) == 0:
        found.append(Check("settings", True, f"relay {settings.api_base}, rate {settings.rate}"))
    return found


def relay_checks(
    settings: Settings,
    transport: httpx.BaseTransport | None = None,
    now: datetime | None = None,
    dialect: Dialect = RELAY,
) -> list[Check]:
    """The relay reached, the key accepted, the clock: from one GET that creates nothing (a
    relay's task that does not exist; Google's list of models)."""
    base, key = settings.api_base, settings.api_key
    if base is None or key is None:
        return []  # `settings_checks` says what is missing
    redact = Redactor(key.reveal())
    timeout = httpx.Timeout(settings.read_timeout, connect=settings.connect_timeout)
    try:
        with httpx.Client(base_url=base.rstrip("/"), timeout=timeout, transport=transport) as http:
            answer = http.get(
                dialect.probe_path,
                headers=dialect.headers(key.reveal()),
            )
    except httpx.TransportError as exc:
        return [
            Check(
                "relay",
                False,
                redact(f"cannot reach {base}: {type(exc).__name__}: {exc}")[:300],
                "check VEO_API_BASE, this machine's network and any proxy (HTTPS_PROXY)",
            )
        ]
    # Any answer to the probe says the relay is there.
    found = [Check("relay", True, f"{base} answers (HTTP {answer.status_code} to a probe)")]
    found.append(_key_check(answer, redact, dialect))
    found.append(_clock_check(answer.headers.get("date"), now or datetime.now(UTC)))
    return found


def _key_check(answer: httpx.Response, redact: Redactor, dialect: Dialect) -> Check:
    if answer.status_code == 200:
        return Check("key", True, "accepted")
    body = redact(answer.content.decode("utf-8", errors="replace")).encode()
    error = dialect.classify(answer.status_code, body, answer.headers)
    if answer.status_code in (400, 404) and error.kind is ErrorKind.INVALID:
        return Check("key", True, "accepted (a task that does not exist was asked for)")
    said = f"HTTP {answer.status_code}: {error.message[:200]}"
    if error.kind is ErrorKind.AUTH:
        return Check("key", False, f"refused ({said})", "check VEO_API_KEY with the relay")
    if error.kind is ErrorKind.QUOTA:
        return Check(
            "key",
            False,
            f"accepted, but the balance is empty ({said})",
            "top up the account: every submission would be refused",
            warning=True,
        )
    return Check(
        "key",
        False,
        f"not known: the relay answered {said}",
        "try again in a minute; a 429 or 5xx says nothing about the key",
        warning=True,
    )


def _clock_check(date: str | None, now: datetime) -> Check:
    try:
        theirs = parsedate_to_datetime(date) if date else None
    except (TypeError, ValueError):
        theirs = None
    if theirs is None:
        return Check("clock", True, "the relay sent no Date to compare with", warning=False)
    skew = (now - theirs.astimezone(UTC)).total_seconds()
    if abs(skew) > CLOCK_SKEW:
        ahead = "ahead of" if skew > 0 else "behind"
        return Check(
            "clock",
            False,
            f"this machine is {abs(skew):.0f} s {ahead} the relay",
            "turn on time sync (NTP): presigned image links and TLS need a right clock",
            warning=True,
        )
    return Check("clock", True, f"within {abs(skew):.0f} s of the relay's")


def image_check(settings: Settings) -> Check:
    if settings.image_mode == "url" and not settings.s3_url:
        return Check(
            "images",
            False,
            "VEO_IMAGE_MODE=url without VEO_S3_URL: a batch with local images would pause",
            "set VEO_S3_URL=s3://BUCKET/PREFIX, or use VEO_IMAGE_MODE=data-uri",
        )
    try:
        ImageSender.of(settings)  # in url mode, asks the bucket, as a worker does at start
    except ConfigError as exc:
        return Check(
            "images", False, str(exc), "fix the bucket settings, or use VEO_IMAGE_MODE=data-uri"
        )
    if settings.image_mode == "url":
        return Check("images", True, f"url mode: the bucket {settings.s3_url} can be reached")
    return Check("images", True, f"{settings.image_mode} mode: local images go inline")


def account_checks(settings: Settings, transport: httpx.BaseTransport | None = None) -> list[Check]:
    """Without VEO_ACCOUNTS, the checks of the one relay; with it, the file read as a worker
    reads it, then each account's settings, relay, key, clock and images, named after it."""
    if settings.accounts is None:
        return [
            *settings_checks(settings),
            *relay_checks(settings, transport),
            image_check(settings),
        ]
    try:
        specs = accounts_of(settings)
    except ConfigError as exc:
        return [Check("accounts", False, str(exc), "fix the file VEO_ACCOUNTS names")]
    found = [Check("accounts", True, f"{len(specs)} in {settings.accounts}")]
    for spec in specs:
        own = spec.settings_for(settings)
        dialect = dialect_named(spec.dialect)
        relay = relay_checks(own, transport, dialect=dialect)
        checks = [*settings_checks(own), *relay, image_check(own)]
        found += [_of_account(check, spec) for check in checks]
    return found


# How the checks of one relay name its settings, and how an account of the file names them.
_IN_THE_FILE: Final = (
    ("VEO_API_KEY", "key_env"),
    ("VEO_API_BASE", "base"),
    ("VEO_RATE", "rate"),
    ("VEO_PRICES", "prices"),
    ("VEO_IMAGE_MODE", "image_mode"),
    ("VEO_S3_URL", "s3_url"),
)


def _of_account(check: Check, spec: AccountSpec) -> Check:
    detail, fix = check.detail, check.fix
    for variable, field in _IN_THE_FILE:
        detail = detail.replace(variable, field)
        fix = fix.replace(variable, f"{spec.name}'s {field}")
    return dataclasses.replace(check, name=f"{spec.name}: {check.name}", detail=detail, fix=fix)


def doctor_checks(settings: Settings, transport: httpx.BaseTransport | None = None) -> list[Check]:
    """Every check of `veo-batch doctor`, in the order it prints them. The database and
    Redis are asked too; whether a scheduler and workers run is `health`'s question (a new
    setup has none yet)."""
    found = account_checks(settings, transport)
    broker = redis_client(settings)
    try:
        return [*found, database_check(settings), redis_check(broker, needed=False)]
    finally:
        if broker is not None:
            broker.close()
