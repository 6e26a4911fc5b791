"""Prices and money: what one request to each model costs, and amounts kept exactly.

Amounts are integer micro-units (millionths of the currency unit): sums in SQL are exact, and
three rows at 0.15 cost 0.45, not 0.44999. Prices are the user's, per request (relays bill a
request, not a second of video), in the currency VEO_CURRENCY names; they change by relay and
by month, so none is built in. A model without a price is *unpriced*, never free.

VEO_PRICES is either inline, `veo3.1=0.25,veo3-fast-frames=0.15`, or the path of a TOML or
YAML file holding a `prices` table (or only the table):

    [prices]            # prices.toml
    "veo3.1" = 0.25
    veo3-fast-frames = 0.15
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Final

from veobatch.errors import ConfigError
from veobatch.table_file import read_table_file

MICROS: Final = 1_000_000  # micro-units in one unit of the currency
MAX_AMOUNT: Final = Decimal(10) ** 9  # a price or budget above a billion is a typo
_FILES: Final = (".toml", ".yaml", ".yml")


def micros(value: object, what: str) -> int:
    """`value` (text or a number, in currency units) as micro-units; ConfigError naming
    `what` unless it is an amount from 0 with at most six decimals."""
    try:
        return amount(value)
    except ValueError as exc:
        raise ConfigError(f"{what}: {value!r} {exc}") from None


def amount(value: object) -> int:
    """`value` (text or a number, in currency units) as micro-units; ValueError says why not."""
    try:
        units = Decimal(str(value).strip())
    except InvalidOperation:
        units = Decimal(-1)
    if isinstance(value, bool) or not units.is_finite() or not 0 <= units <= MAX_AMOUNT:
        raise ValueError("is not an amount such as 0.25 or 120")
    scaled = units * MICROS
    if scaled != scaled.to_integral_value():
        raise ValueError("has more than six decimals")
    return int(scaled)


def money(amount: int | None, currency: str) -> str:
    """Micro-units as people read money: `USD 12.50`, `USD 0.015`, `unpriced` for None."""
    if amount is None:
        return "unpriced"
    units = Decimal(amount) / MICROS
    text = (
        f"{units:,.2f}" if units == units.quantize(Decimal("0.01")) else f"{units.normalize():,f}"
    )
    return f"{currency} {text}"


def decimal_text(amount: int) -> str:
    """Micro-units as a plain decimal (`0.25`, `0`), as an export or a JSON answer writes it."""
    units = (Decimal(amount) / MICROS).normalize()
    return f"{units:f}"


def parse_prices(text: str) -> dict[str, int]:
    """VEO_PRICES: model → price of one request, in micro-units."""
    if text.lower().endswith(_FILES):
        return _from_file(Path(text).expanduser())
    prices: dict[str, int] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        model, sep, price = part.partition("=")
        if not sep or not model.strip():
            raise ConfigError(
                f"VEO_PRICES: {part!r} is not MODEL=PRICE (e.g. veo3.1=0.25,veo3-fast-frames=0.15)"
            )
        prices[model.strip()] = micros(price, f"VEO_PRICES: {model.strip()}")
    return prices


def _from_file(path: Path) -> dict[str, int]:
    data = read_table_file(path, f"VEO_PRICES: {path}")
    if isinstance(data, Mapping) and isinstance(data.get("prices"), Mapping):
        data = data["prices"]
    if not isinstance(data, Mapping) or not data:
        raise ConfigError(f"VEO_PRICES: {path}: give a `prices` table of MODEL = PRICE")
    return {
        str(model): micros(price, f"VEO_PRICES: {path}: {model}") for model, price in data.items()
    }
