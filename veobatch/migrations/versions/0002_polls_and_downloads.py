"""polls and downloads: when a task is next asked about, until when, and the video on disk

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _index_set(column: str) -> None:
    """An index of only the rows that have `column` set: loading a million rows (none set)
    stays as fast as before."""
    where = sa.text(f"{column} IS NOT NULL")
    op.create_index(
        f"ix_jobs_{column}", "jobs", [column], sqlite_where=where, postgresql_where=where
    )


def upgrade() -> None:
    with op.batch_alter_table("jobs") as jobs:
        jobs.add_column(sa.Column("polls", sa.Integer(), server_default="0", nullable=False))
        jobs.add_column(sa.Column("next_poll_at", sa.DateTime(timezone=True), nullable=True))
        jobs.add_column(sa.Column("poll_until", sa.DateTime(timezone=True), nullable=True))
        jobs.add_column(sa.Column("video_path", sa.Text(), nullable=True))
        jobs.add_column(sa.Column("video_bytes", sa.BigInteger(), nullable=True))
        jobs.add_column(sa.Column("video_sha256", sa.String(length=64), nullable=True))
        jobs.add_column(sa.Column("downloads", sa.Integer(), server_default="0", nullable=False))
        jobs.add_column(sa.Column("download_error", sa.Text(), nullable=True))
        jobs.add_column(sa.Column("next_download_at", sa.DateTime(timezone=True), nullable=True))
    _index_set("next_poll_at")
    _index_set("next_download_at")
    # Tasks made before polling existed are followed from now on (their deadline counts from
    # their submission).
    op.execute("UPDATE jobs SET next_poll_at = CURRENT_TIMESTAMP WHERE status = 'submitted'")


def downgrade() -> None:
    op.drop_index("ix_jobs_next_download_at", "jobs")
    op.drop_index("ix_jobs_next_poll_at", "jobs")
    with op.batch_alter_table("jobs") as jobs:
        for column in (
            "next_download_at",
            "download_error",
            "downloads",
            "video_sha256",
            "video_bytes",
            "video_path",
            "poll_until",
            "next_poll_at",
            "polls",
        ):
            jobs.drop_column(column)
