"""One statement for a group's rows (PostgreSQL) or the driver's executemany (SQLite): the
same rows written either way, whatever the values."""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tests.helpers import load_prompts
from veobatch.store import per_row
from veobatch.store.tables import Job

FIELDS: per_row.Fields = {
    "row_id": Job.id.type,
    "new_error": Job.error.type,
    "new_http_status": Job.http_status.type,
    "retry_at": Job.next_attempt_at.type,
    "new_images": Job.images.type,
}


@functools.cache
def _update(together: bool) -> sa.Update:
    row = per_row.columns(FIELDS, together)
    found = per_row.matching(Job.id.expression, row["row_id"], "row_id", together)
    return (
        sa.update(Job)
        .where(found, Job.status == "pending")
        .values(
            error=row["new_error"],
            http_status=row["new_http_status"],
            next_attempt_at=row["retry_at"],
            images=row["new_images"],
        )
    )


def test_each_row_gets_its_own_values_of_every_type(engine: Engine) -> None:
    load_prompts(engine, ["a", "b", "c", "d"], "b")
    with engine.connect() as conn:
        ids = list(conn.execute(sa.select(Job.id).order_by(Job.id)).scalars())
    at = datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=UTC)  # the engine's times are UTC
    rows: list[dict[str, Any]] = [
        {
            "row_id": ids[0],
            "new_error": '余额不足 "quoted" \\ back',
            "new_http_status": 403,
            "retry_at": at,
            "new_images": [{"path": "a.png", "sha256": "00"}, "https://x/y.jpg"],
        },
        {
            "row_id": ids[1],
            "new_error": None,
            "new_http_status": None,
            "retry_at": None,
            "new_images": [],
        },
        {  # a row the statement does not expect (not pending): left alone
            "row_id": ids[2],
            "new_error": "never",
            "new_http_status": 500,
            "retry_at": at,
            "new_images": ["never"],
        },
    ]
    with engine.begin() as conn:
        conn.execute(sa.update(Job).where(Job.id == ids[2]).values(status="queued"))
        per_row.execute(conn, _update, rows, key="row_id")
    with engine.connect() as conn:
        got = {
            r.id: r
            for r in conn.execute(
                sa.select(Job.id, Job.error, Job.http_status, Job.next_attempt_at, Job.images)
            )
        }
    assert got[ids[0]].error == '余额不足 "quoted" \\ back'
    assert got[ids[0]].http_status == 403
    assert got[ids[0]].next_attempt_at.replace(tzinfo=UTC) == at  # (SQLite keeps them naive)
    assert got[ids[0]].images == [{"path": "a.png", "sha256": "00"}, "https://x/y.jpg"]
    assert (got[ids[1]].error, got[ids[1]].http_status, got[ids[1]].next_attempt_at) == (
        None,
        None,
        None,
    )
    assert got[ids[1]].images == []
    untouched = got[ids[2]]
    assert (untouched.error, untouched.http_status, untouched.next_attempt_at) == (None, None, None)
    assert untouched.images != ["never"]
    assert got[ids[3]].error is None  # not in the group


def test_no_rows_run_no_statement(engine: Engine) -> None:
    ran: list[str] = []
    sa.event.listen(engine, "before_cursor_execute", lambda *args: ran.append(args[2]))
    with engine.begin() as conn:
        per_row.execute(conn, _update, [], key="row_id")
    assert ran == []
