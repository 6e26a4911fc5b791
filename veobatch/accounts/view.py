"""An account as every face shows it (`veo-batch accounts`, the HTTP API, the dashboard): what
its file says, what the database knows of it now, in one plain dict. Pure: no I/O."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from veobatch import pricing
from veobatch.accounts.spec import AccountSpec
from veobatch.store.queries import utc

STATES = ("active", "cooling", "paused", "removed")


def account_view(
    spec: AccountSpec | None,
    row: Any,
    *,
    now: datetime,
    in_flight: int,
    rows: int,
    sent_last_minute: int,
) -> dict[str, Any]:
    """Account `spec` (None: no longer in the file) as its database `row` knows it: its state
    (active, cooling, paused, or removed from the file) and why, its pace,
    what is out through it, what it spent today against its budget, its last error."""
    name = spec.name if spec is not None else row.name
    cool_until = utc(row.cool_until)
    today = now.date()
    spent = int(row.spent_micros) if row.spend_day == today else 0
    if spec is None:
        state, reason = "removed", "no longer in VEO_ACCOUNTS: its tasks wait until it is back"
    elif row.state == "paused":
        state, reason = "paused", row.reason
    elif cool_until is not None and cool_until > now:
        state = "cooling"
        reason = f"after {row.strikes} failures in a row, until {cool_until:%H:%M:%S} UTC"
    else:
        state, reason = "active", None
    return {
        "name": name,
        "host": urlsplit(spec.base).netloc if spec is not None else None,
        "dialect": spec.dialect if spec is not None else None,
        "state": state,
        "reason": reason,
        "priority": spec.priority if spec is not None else None,
        "rate": str(spec.rate) if spec is not None and spec.rate is not None else None,
        "poll_rate": str(spec.poll_rate) if spec is not None and spec.poll_rate else None,
        "in_flight": in_flight,
        "max_in_flight": spec.max_in_flight if spec is not None else None,
        "spent_today": pricing.decimal_text(spent),
        "daily_budget": (
            pricing.decimal_text(spec.daily_budget)
            if spec is not None and spec.daily_budget is not None
            else None
        ),
        "sent_last_minute": sent_last_minute,
        "rows": rows,
        "models": sorted(spec.models) if spec is not None and spec.models is not None else None,
        "last_error": row.last_error,
        "last_error_at": utc(row.last_error_at),
    }
