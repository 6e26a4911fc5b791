"""A CSV export is made by Python's cells on SQLite and by PostgreSQL's COPY on PostgreSQL
(veobatch/store/export_copy.py): the same rows must give the same bytes from either."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tests.conftest import _empty
from tests.helpers import URL, load, row
from veobatch.store import database
from veobatch.store.export import ExportText
from veobatch.store.queries import RowFilter, batch_id
from veobatch.store.tables import Job

LOCAL = {"path": "/srv/photos/a, b.jpg", "name": "a, b.jpg", "sha256": "ab" * 32, "bytes": 10}
ROWS = [
    row(2, "plain"),
    row(3, "=1+1", prompt='-quote " and, comma\nnew line 中文', aspect_ratio="9:16"),
    row(4, "flags", enhance_prompt=True, seed=7, note="=cmd", empty="", style={"b": 1, "a": [1]}),
    row(5, "off", enhance_prompt=False, model="veo3-fast-frames", images=[URL, URL + "?a=1"]),
    row(6, "@mail", prompt="+plus", flag=True, ratio=1.5),
    row(7, "formula-links"),
    row(8, "formula-path"),
    row(9, "cr", prompt="a lone\rcarriage return"),  # quoted by both (csv's writer would not)
    # Links with letters of more than one byte and with brackets, split as text.
    row(10, "unicode-links", images=["https://例え.jp/图片[1].png", URL + "?q=é]"]),
]
# What happened to each row, set as a run would have (the times fixed, to compare them).
OUTCOMES: dict[str, dict[str, Any]] = {
    "plain": {
        "status": "succeeded",
        "task_id": "veo3.1:task-1",
        "account": "default",
        "remote_status": "SUCCESS",
        "progress": "100%",
        "video_url": "https://cdn.example/v.mp4?sig=a,b",
        "video_path": "videos/b/plain.mp4",
        "video_bytes": 123_456,
        "video_sha256": "cd" * 32,
        "polls": 4,
        "attempts": 1,
        "cost_micros": 250_000,
        "review": "approved",
        "submitted_at": datetime(2026, 12, 4, 1, 2, 3, 456_789, tzinfo=UTC),
        "finished_at": datetime(2026, 12, 4, 1, 3, 0, tzinfo=UTC),
    },
    "=1+1": {
        "status": "failed",
        "task_id": "=sum(A1)",
        "error": '配额不足, "quota"\nsecond line',
        "error_kind": "quota",
        "http_status": 429,
        "attempts": 3,
        "cost_micros": 1_000_000,
        "download_error": "@no, disk",
    },
    "off": {"status": "failed", "error": "\tinvalid", "error_kind": "invalid", "cost_micros": 0},
    "@mail": {"images": [LOCAL, URL], "cost_micros": 0},
    "formula-links": {"images": ["@x", URL]},  # split as text
    "formula-path": {"images": [{**LOCAL, "path": "-x.jpg"}]},  # through the JSON functions
}
TIMES = {"created_at": datetime(2026, 12, 1, 0, 0, 0, tzinfo=UTC), "updated_at": None}


def stored(engine: Engine) -> Engine:
    load(engine, ROWS, batch="odd")
    with engine.begin() as conn:
        for ref, values in OUTCOMES.items():
            conn.execute(sa.update(Job).where(Job.ref == ref).values(**values))
        updated = datetime(2026, 12, 2, 3, 4, 5, 600_000, tzinfo=UTC)
        conn.execute(sa.update(Job).values(created_at=TIMES["created_at"], updated_at=updated))
    return engine


def exported(engine: Engine) -> tuple[bytes, ExportText]:
    with engine.connect() as conn:
        query = RowFilter().query(batch_id(conn, "odd"))
    text = ExportText(engine, query, "csv", priced={"veo3.1"})
    return "".join(text).encode("utf-8"), text


def test_a_csv_export_is_the_same_bytes_from_sqlite_and_postgresql(
    postgres_url: str, tmp_path: Path
) -> None:
    lite = database.open_database(f"sqlite:///{tmp_path / 'lite.db'}", migrate=True)
    postgres = database.create_engine(postgres_url)
    _empty(postgres)
    try:
        from_sqlite, _ = exported(stored(lite))
        from_postgres, text = exported(stored(postgres))
    finally:
        lite.dispose()
        postgres.dispose()
    assert from_postgres == from_sqlite
    assert text.rows == len(ROWS)
    assert b"\r\n" not in from_sqlite  # lines end with \n on both
    cells = {r["id"]: r for r in csv.DictReader(io.StringIO(from_postgres.decode("utf-8")))}
    assert list(cells) == ["plain", "'=1+1", "flags", "off", "'@mail", *list(cells)[5:]]
    assert cells["plain"]["cost"] == "0.25"
    assert cells["plain"]["submitted_at"] == "2026-12-04T01:02:03.456789+00:00"
    assert cells["plain"]["finished_at"] == "2026-12-04T01:03:00+00:00"
    assert cells["plain"]["updated_at"] == "2026-12-02T03:04:05.600000+00:00"
    assert cells["plain"]["video_url"] == "https://cdn.example/v.mp4?sig=a,b"
    assert cells["'=1+1"]["prompt"] == "'-quote \" and, comma\nnew line 中文"
    assert cells["'=1+1"]["task_id"] == "'=sum(A1)"
    assert cells["'=1+1"]["cost"] == "1"
    assert cells["'=1+1"]["http_status"] == "429"
    assert cells["flags"]["enhance_prompt"] == "true"
    assert cells["flags"]["note"] == "'=cmd"
    assert cells["flags"]["style"] == '{"b": 1, "a": [1]}'
    assert cells["flags"]["seed"] == "7"
    assert cells["off"]["enhance_prompt"] == "false"
    assert cells["off"]["images"] == f"{URL}|{URL}?a=1"
    assert cells["off"]["cost"] == ""  # an unpriced model that counted nothing: no cost
    assert cells["off"]["error"] == "'\tinvalid"
    assert cells["'@mail"]["images"] == f"{LOCAL['path']}|{URL}"
    assert cells["'@mail"]["prompt"] == "'+plus"
    assert cells["'@mail"]["flag"] == "true"
    assert cells["'@mail"]["ratio"] == "1.5"
    assert cells["'@mail"]["enhance_prompt"] == ""
    assert cells["formula-links"]["images"] == f"'@x|{URL}"
    assert cells["unicode-links"]["images"] == f"https://例え.jp/图片[1].png|{URL}?q=é]"
    assert cells["formula-path"]["images"] == "'-x.jpg"
    assert b'"a lone\rcarriage return"' in from_sqlite
    assert cells["cr"]["prompt"] == "a lone\rcarriage return"
