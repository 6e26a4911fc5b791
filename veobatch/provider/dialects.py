"""The dialects an account may speak (`dialect = "..."` in VEO_ACCOUNTS), by name."""

from __future__ import annotations

from typing import Final

from veobatch.provider.dialect import Dialect
from veobatch.provider.gemini import GEMINI
from veobatch.provider.relay import RELAY

DIALECTS: Final[dict[str, Dialect]] = {RELAY.name: RELAY, GEMINI.name: GEMINI}
DEFAULT_DIALECT: Final = RELAY.name


def dialect_named(name: str) -> Dialect:
    """The dialect called `name` (one of DIALECTS: the accounts file was checked)."""
    return DIALECTS[name]
