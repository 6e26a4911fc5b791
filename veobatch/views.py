"""How the faces show a row, an estimate and an attempt: plain dicts, the same for the CLI's
JSON, the HTTP API, the dashboard and the Python API (times in UTC, amounts as decimal text)."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any, Final

import sqlalchemy as sa

from veobatch import pricing
from veobatch.lifecycle.spend_rules import Estimate
from veobatch.store.export import image_file, image_name, output_value
from veobatch.store.export_columns import OUTPUT_COLUMNS
from veobatch.store.queries import utc

# A row as every face shows it: its input, then what the export adds (status, task, video...).
JOB_VIEW_FIELDS: Final = (
    "ref",
    "prompt",
    "model",
    "images",
    "aspect_ratio",
    "enhance_prompt",
    *OUTPUT_COLUMNS,
)


def job_view(row: sa.Row[Any], priced: Collection[str] | None = None) -> dict[str, Any]:
    """A row as the faces show it: its key is `id`, times are UTC; its cost is None where its
    model has no price and nothing was counted (`priced`: the models that have one)."""
    view = {
        name: utc(value) if isinstance(value, datetime) else value
        for name in JOB_VIEW_FIELDS
        for value in (output_value(row, name, priced),)
    }
    view["id"] = view.pop("ref")
    stored: list[Any] = row.images or []
    view["images"] = [image_name(entry) for entry in stored]
    view["image_files"] = [found for entry in stored if (found := image_file(entry)) is not None]
    return view


def estimate_view(found: Estimate) -> dict[str, Any]:
    """An estimate as the faces show it in JSON: amounts as decimal text (None: unpriced)."""

    def text(amount: int | None) -> str | None:
        return None if amount is None else pricing.decimal_text(amount)

    return {
        "currency": found.currency,
        "models": [
            {"model": m.model, "rows": m.rows, "price": text(m.price), "total": text(m.total)}
            for m in found.models
        ],
        "rows": found.rows,
        "total": text(found.total),
        "unpriced": found.unpriced,
        "requests": found.requests,
        "polls_per_task": found.polls_per_task,
        "spent": text(found.spent),
        "committed": text(found.committed),
        "budget": text(found.budget),
        "left": text(found.left),
    }


def history_view(attempt: sa.Row[Any]) -> dict[str, Any]:
    """One submission, poll or download of a row."""
    return {
        "at": utc(attempt.at),
        "action": attempt.action,
        "http_status": attempt.http_status,
        "task_id": attempt.task_id,
        "remote_status": attempt.remote_status,
        "error": attempt.error,
        "error_kind": attempt.error_kind,
        "account": attempt.account,
    }
