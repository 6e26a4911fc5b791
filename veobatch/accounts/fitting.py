"""Whether a row fits the accounts that serve its model: a dialect may refuse what another
takes (Google's API takes image bytes, not links, and fewer extra fields than a relay).
Pure: no I/O.

A row that no account serving its model can take is a problem of the job file, found when
it is loaded (naming the field, and each account that refuses it), not a 400 per row later;
a row that some accounts refuse is routed only to the others (`refused_by`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from veobatch.accounts.spec import AccountSpec
from veobatch.provider.dialect import Dialect
from veobatch.provider.dialects import dialect_named


@dataclass(frozen=True)
class Fitting:
    """The accounts as a load checks rows against them: (name, models served, dialect)."""

    accounts: tuple[tuple[str, Mapping[str, str] | None, Dialect], ...]

    @classmethod
    def of(cls, specs: Sequence[AccountSpec]) -> Fitting | None:
        """The fitting of these accounts; None when every one is a relay (they take all)."""
        if all(spec.dialect == "relay" for spec in specs):
            return None
        return cls(tuple((s.name, s.models, dialect_named(s.dialect)) for s in specs))

    def problem(
        self, model: str, images: Sequence[object], extra: Mapping[str, Any] | None
    ) -> tuple[str, str] | None:
        """(field, message) when no account that serves `model` takes the row; None when one
        does (or none serves it: the model's own check says so)."""
        refusals: list[tuple[str, str, tuple[str, str]]] = []
        for name, models, dialect in self.accounts:
            if models is not None and model not in models:
                continue
            refused = dialect.refusal(model, images, extra)
            if refused is None:
                return None
            refusals.append((name, dialect.name, refused))
        if not refusals:
            return None
        (name, dialect_name, (field, why)), more = refusals[0], len(refusals) - 1
        others = f" (nor {more} other account(s) that serve {model})" if more else ""
        return field, f"account {name!r} ({dialect_name}) cannot take it: {why}{others}"


def refused_by(
    accounts: Sequence[tuple[str, Dialect]],
    model: str,
    images: Sequence[object],
    extra: Mapping[str, Any] | None,
) -> frozenset[str]:
    """The accounts of `accounts` whose dialect refuses this row (for routing)."""
    return frozenset(
        name for name, dialect in accounts if dialect.refusal(model, images, extra) is not None
    )
