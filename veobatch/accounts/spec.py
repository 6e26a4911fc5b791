"""An account as VEO_ACCOUNTS describes it (or, without that file, the `default` account of
VEO_API_BASE and VEO_API_KEY), read and checked once, at start.

The file is TOML or YAML, a table per account, its key the account's name:

    [accounts.relay-a]
    base = "https://relay-a.example.com"
    key_env = "RELAY_A_KEY"        # the key is read from this variable: no file holds it
    rate = "30/min"
    max_in_flight = 4
    prices = { "veo3.1" = 0.25 }
    daily_budget = 40
    models = ["veo3.1", "veo3.1-fast"]     # or a table: job model = this relay's name for it
    priority = 1                   # lower first
    filtered_charged = true        # whether a video a safety filter stopped is billed
    on_filtered = "enhance_prompt" # one new try of a filtered row: enhance_prompt, or a model

    [accounts.google]
    dialect = "gemini"             # Google's own API (base: generativelanguage.googleapis.com)
    key_env = "GEMINI_API_KEY"
    models = { "veo3.1" = "veo-3.1-generate-preview" }   # required: Google's model names

Every problem (a file that cannot be read or parsed, an unknown field, a bad value, an unset
key variable, two accounts with the same base and key) is a ConfigError that names the file,
the account and the field: the process refuses to start (exit 6).
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from veobatch import settings_types as read
from veobatch.catalog import DEFAULT_MODELS
from veobatch.errors import ConfigError
from veobatch.pricing import micros
from veobatch.provider.dialects import DEFAULT_DIALECT, DIALECTS, dialect_named
from veobatch.provider.gemini import MODEL_NAME
from veobatch.settings import IMAGE_MODES, Rate, Secret, Settings
from veobatch.table_file import read_table_file

DEFAULT: Final = "default"  # the account of VEO_API_BASE and VEO_API_KEY
GOOGLE_BASE: Final = "https://generativelanguage.googleapis.com"  # a gemini account's default
FALLBACK_ENHANCE: Final = "enhance_prompt"  # on_filtered: the same row, enhance_prompt on
_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


@dataclass(frozen=True)
class AccountSpec:
    """One relay account: where, with which key, at which pace and price, for which models."""

    name: str
    base: str
    key: Secret = dataclasses.field(repr=False)
    key_from: str  # where the key was read: a variable's name or a file's path (for messages)
    rate: Rate | None = None
    poll_rate: Rate | None = None
    max_in_flight: int | None = None  # this account's own cap (VEO_MAX_IN_FLIGHT holds across)
    image_mode: str = "data-uri"
    s3_url: str | None = None
    s3_endpoint: str | None = None
    s3_public_url: str | None = None
    prices: Mapping[str, int] = dataclasses.field(default_factory=dict)
    daily_budget: int | None = None  # micro-units per UTC day, this account's own
    models: Mapping[str, str] | None = None  # job model → this account's name; None: all
    priority: int = 0
    dialect: str = DEFAULT_DIALECT  # the API it speaks (provider.dialects)
    filtered_charged: bool = True  # a filtered video is billed (unless the provider says)
    on_filtered: str | None = None  # one new try of a filtered row: enhance_prompt or a model

    def serves(self, model: str) -> bool:
        return self.models is None or model in self.models

    def api_model(self, model: str) -> str:
        """The name this account's API knows `model` by."""
        return model if self.models is None else self.models.get(model, model)

    def settings_for(self, settings: Settings) -> Settings:
        """`settings` with this account's relay, key, rates, images and prices: what the
        parts built from settings (the client, the limiters, the image sender) read."""
        return dataclasses.replace(
            settings,
            api_base=self.base,
            api_key=self.key,
            rate=self.rate,
            poll_rate=self.poll_rate,
            image_mode=self.image_mode,
            s3_url=self.s3_url,
            s3_endpoint=self.s3_endpoint,
            s3_public_url=self.s3_public_url,
            prices=self.prices,
        )


def accounts_of(
    settings: Settings, environ: Mapping[str, str] | None = None, *, keys: bool = True
) -> list[AccountSpec]:
    """The accounts of VEO_ACCOUNTS in priority order (then as the file lists them), or the
    one `default` account of VEO_API_BASE and VEO_API_KEY; [] when neither is set. Without
    `keys` (to show the accounts, not to send), a key that cannot be read is left empty."""
    if settings.accounts is not None:
        environ = os.environ if environ is None else environ
        return read_file(Path(settings.accounts), settings, environ, keys=keys)
    if settings.api_base is None or (settings.api_key is None and keys):
        return []
    return [
        AccountSpec(
            name=DEFAULT,
            base=settings.api_base,
            key=settings.api_key or Secret(""),
            key_from="VEO_API_KEY",
            rate=settings.rate,
            poll_rate=settings.poll_rate,
            image_mode=settings.image_mode,
            s3_url=settings.s3_url,
            s3_endpoint=settings.s3_endpoint,
            s3_public_url=settings.s3_public_url,
            prices=settings.prices,
        )
    ]


def read_file(
    path: Path, settings: Settings, environ: Mapping[str, str], *, keys: bool = True
) -> list[AccountSpec]:
    """The accounts of file `path` (see the module's docstring; `keys`: see `accounts_of`)."""
    where = f"VEO_ACCOUNTS: {path}"
    data = read_table_file(path, where)
    if isinstance(data, Mapping) and set(data) == {"accounts"}:
        data = data["accounts"]
    if not isinstance(data, Mapping) or not data:
        raise ConfigError(
            f"{where}: give a table per account, e.g. [accounts.relay-a] with base and key_env"
        )
    found = [
        _account(
            str(name), fields, f"{where}: account {name!r}", settings, environ, path.parent, keys
        )
        for name, fields in data.items()
    ]
    seen: dict[tuple[str, Secret], str] = {}
    for account in found:
        if not account.key.reveal():
            continue
        twin = seen.setdefault((account.base, account.key), account.name)
        if twin != account.name:
            raise ConfigError(
                f"{where}: accounts {twin!r} and {account.name!r} have the same base and key: "
                "one account listed twice would be asked twice as fast as it allows"
            )
    return sorted(found, key=lambda account: account.priority)  # (stable: then file order)


def _account(
    name: str,
    fields: Any,
    where: str,
    settings: Settings,
    environ: Mapping[str, str],
    folder: Path,
    keys: bool = True,
) -> AccountSpec:
    if not _NAME.fullmatch(name):
        raise ConfigError(
            f"{where}: a name is 1 to 64 letters, digits, '.', '_' or '-', starting with a "
            "letter or digit"
        )
    if not isinstance(fields, Mapping):
        raise ConfigError(f"{where}: give a table of fields (base, key_env, rate, ...)")
    unknown = sorted(set(map(str, fields)) - set(_FIELDS))
    if unknown:
        raise ConfigError(
            f"{where}: unknown field {unknown[0]!r}; the fields are {', '.join(_FIELDS)}"
        )
    values: dict[str, Any] = {}
    for field_name, value in fields.items():
        values[str(field_name)] = _FIELDS[str(field_name)](value, f"{where}: {field_name}")
    dialect = dialect_named(values.get("dialect", DEFAULT_DIALECT))
    if dialect.name == "gemini":
        values.setdefault("base", GOOGLE_BASE)
        _check_gemini(values, where)
    if "base" not in values:
        raise ConfigError(
            f"{where}: base: missing (the relay's URL, e.g. https://relay.example.com)"
        )
    try:
        key, key_from = _key(values, where, environ, folder)
    except ConfigError:
        if keys:
            raise
        key, key_from = Secret(""), str(values.get("key_env") or values.get("key_file"))
    values.pop("key_env", None)
    values.pop("key_file", None)
    image_mode = dialect.image_mode or values.get("image_mode", settings.image_mode)
    s3 = {
        "s3_url": values.get("s3_url", settings.s3_url),
        "s3_endpoint": values.get("s3_endpoint", settings.s3_endpoint),
        "s3_public_url": values.get("s3_public_url", settings.s3_public_url),
    }
    if image_mode == "url" and not s3["s3_url"]:
        raise ConfigError(f"{where}: s3_url: image_mode url needs a bucket (s3://BUCKET/PREFIX)")
    values.setdefault("prices", settings.prices)
    fallback = values.get("on_filtered")
    if fallback is not None and fallback != FALLBACK_ENHANCE and fallback not in settings.models:
        raise ConfigError(
            f"{where}: on_filtered: {fallback!r} is neither {FALLBACK_ENHANCE} nor a model "
            f"({', '.join(settings.models)})"
        )
    return AccountSpec(
        name=name, key=key, key_from=key_from, **{**values, "image_mode": image_mode, **s3}
    )


def _check_gemini(values: Mapping[str, Any], where: str) -> None:
    """What an account of Google's API needs beyond a relay's: its model names given (a
    relay's names mean nothing to Google), each one Google's form; images inline."""
    models = values.get("models")
    if models is None:
        raise ConfigError(
            f"{where}: models: a gemini account maps the job file's models to Google's, e.g. "
            '{ "veo3.1" = "veo-3.1-generate-preview", "veo3-fast-frames" = '
            '"veo-3.0-fast-generate-001" }'
        )
    for job, api in models.items():
        if not MODEL_NAME.fullmatch(api) or api in DEFAULT_MODELS:
            raise ConfigError(
                f"{where}: models: {job}: {api!r} is not a Google model name (e.g. "
                'veo-3.1-generate-preview): map it, as { "veo3.1" = "veo-3.1-generate-preview" }'
            )
    if values.get("image_mode", "data-uri") != "data-uri":
        raise ConfigError(
            f"{where}: image_mode: Google's API takes images inline only: leave image_mode out"
        )


def _key(
    values: Mapping[str, Any], where: str, environ: Mapping[str, str], folder: Path
) -> tuple[Secret, str]:
    """The account's key, from the variable `key_env` names or the file `key_file` names."""
    if ("key_env" in values) == ("key_file" in values):
        raise ConfigError(
            f"{where}: key_env: give the name of the variable that holds the key (or key_file, "
            "a file that holds it), one of the two: the key itself is never written here"
        )
    if "key_env" in values:
        variable = values["key_env"]
        key = environ.get(variable, "").strip()
        if not key:
            raise ConfigError(f"{where}: key_env: the variable {variable} is not set")
        return Secret(key), variable
    path = Path(values["key_file"]).expanduser()
    path = path if path.is_absolute() else folder / path
    try:
        key = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        said = getattr(exc, "strerror", None) or "not UTF-8 text"
        raise ConfigError(f"{where}: key_file: {path} cannot be read ({said})") from None
    if not key:
        raise ConfigError(f"{where}: key_file: {path} is empty")
    return Secret(key), str(path)


# ------------------------------------------------------------------------ one reader a field


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: {value!r} is not text")
    return value.strip()


def _variable(value: Any, where: str) -> str:
    name = _text(value, where)
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ConfigError(f"{where}: {name!r} is not the name of an environment variable")
    return name


def _whole(least: int) -> Callable[[Any, str], int]:
    def whole(value: Any, where: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ConfigError(f"{where}: {value!r} is not a whole number of at least {least}")
        return value

    return whole


def _rate(value: Any, where: str) -> Rate:
    return Rate.parse(_text(value, where), where)


def _money(value: Any, where: str) -> int:
    return micros(value, where)


def _prices(value: Any, where: str) -> dict[str, int]:
    if not isinstance(value, Mapping) or not value:
        raise ConfigError(f'{where}: give a table of MODEL = PRICE, e.g. {{ "veo3.1" = 0.25 }}')
    return {str(model): micros(price, f"{where}: {model}") for model, price in value.items()}


def _models(value: Any, where: str) -> dict[str, str]:
    """A list of the job file's model names, or a table of them to this account's names."""
    if isinstance(value, list) and value and all(isinstance(m, str) and m for m in value):
        return {model: model for model in value}
    if (
        isinstance(value, Mapping)
        and value
        and all(isinstance(v, str) and v for v in value.values())
    ):
        return {str(model): api for model, api in value.items()}
    raise ConfigError(
        f'{where}: give a list of model names (e.g. ["veo3.1"]) or a table of the job '
        'file\'s names to this account\'s (e.g. { "veo3.1" = "veo-3.1" })'
    )


def _flag(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: {value!r} is not true or false")
    return value


def _reader(reader: read.Read) -> Callable[[Any, str], Any]:
    """A VEO_* reader (text in) for a field that may come as text or as a number."""

    def field(value: Any, where: str) -> Any:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ConfigError(f"{where}: {value!r} is not a value")
        return reader(str(value), where)

    return field


_FIELDS: Final[dict[str, Callable[[Any, str], Any]]] = {
    "base": _reader(read.http_url),
    "key_env": _variable,
    "key_file": _text,
    "rate": _rate,
    "poll_rate": _rate,
    "max_in_flight": _whole(1),
    "image_mode": _reader(read.choice(*IMAGE_MODES)),
    "s3_url": _reader(read.s3_url),
    "s3_endpoint": _reader(read.http_url),
    "s3_public_url": _reader(read.http_url),
    "prices": _prices,
    "daily_budget": _money,
    "models": _models,
    "priority": _whole(0),
    "dialect": _reader(read.choice(*DIALECTS)),
    "filtered_charged": _flag,
    "on_filtered": _text,
}
