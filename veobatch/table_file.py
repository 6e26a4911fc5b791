"""A settings file of tables, TOML (by its `.toml` suffix) or YAML: read whole, its errors
ConfigErrors that begin with `where` (the variable and the path), for VEO_PRICES and
VEO_ACCOUNTS alike."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from veobatch.errors import ConfigError


def read_table_file(path: Path, where: str) -> Any:
    """What file `path` holds, parsed; ConfigError (`where: ...`) if it cannot be read or is
    not valid TOML or YAML. Its shape is the caller's to check."""
    try:
        raw = path.expanduser().read_bytes()
    except OSError as exc:
        raise ConfigError(f"{where}: cannot be read ({exc.strerror})") from None
    toml = path.suffix.lower() == ".toml"
    import yaml  # noqa: PLC0415 - (a command that reads no such file starts without it)

    try:
        return tomllib.loads(raw.decode("utf-8")) if toml else yaml.safe_load(raw)
    except (tomllib.TOMLDecodeError, yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{where}: not valid {'TOML' if toml else 'YAML'}: {exc}") from None
