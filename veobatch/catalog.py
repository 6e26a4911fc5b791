"""The provider's models and how many input images each accepts.

The default table comes from the relay documentation (see docs/relay-api.md). The provider may add
models or change limits, so the table can be extended or overridden with `VEO_MODELS`, e.g.
`VEO_MODELS="veo3.1=1-2,veo4-frames=1-3"`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from veobatch.errors import ConfigError


@dataclass(frozen=True, slots=True)
class ImageRange:
    low: int
    high: int

    def __str__(self) -> str:
        return str(self.low) if self.low == self.high else f"{self.low} to {self.high}"


DEFAULT_MODELS: Mapping[str, ImageRange] = {
    "veo3-pro-frames": ImageRange(1, 1),
    "veo3-fast-frames": ImageRange(1, 2),
    "veo2-fast-frames": ImageRange(1, 2),
    "veo3.1": ImageRange(1, 2),
    "veo3.1-pro": ImageRange(1, 2),
    "veo2-fast-components": ImageRange(1, 3),
    "veo3.1-components": ImageRange(1, 3),
}

ASPECT_RATIOS = ("16:9", "9:16")


def parse_models(
    text: str, base: Mapping[str, ImageRange] = DEFAULT_MODELS
) -> dict[str, ImageRange]:
    """Parse `name=low-high` (or `name=n`) pairs separated by commas, merged over `base`."""
    table = dict(base)
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, span = item.partition("=")
        name = name.strip()
        low_text, _, high_text = span.strip().partition("-")
        try:
            low = int(low_text)
            high = int(high_text) if high_text else low
        except ValueError:
            low = high = -1
        if not sep or not name or not 0 < low <= high:
            raise ConfigError(
                f"VEO_MODELS: {item!r} is not NAME=LOW-HIGH (for example 'veo3.1=1-2')"
            )
        table[name] = ImageRange(low, high)
    return table
