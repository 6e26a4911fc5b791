"""indexes for pages of a big batch: rows in the order they were added, with or without a
status, and the few rows that hold a price while they are sent

A batch's rows by id (`ix_jobs_batch_id`) and by status then id (`ix_jobs_batch_status`, which
had no id: each page of 100,000 rows was sorted whole), so a page of rows, and the claim of the
next pending ones, read only the index entries they return or skip. `ix_jobs_held` has only the
rows holding a price (those being sent), so what a batch has in flight is summed from them.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

HOLDING = sa.text("held_micros > 0")


def upgrade() -> None:
    op.drop_index("ix_jobs_batch_status", "jobs")
    op.create_index("ix_jobs_batch_status", "jobs", ["batch_id", "status", "id"])
    op.create_index("ix_jobs_batch_id", "jobs", ["batch_id", "id"])
    op.create_index(
        "ix_jobs_held", "jobs", ["batch_id"], sqlite_where=HOLDING, postgresql_where=HOLDING
    )


def downgrade() -> None:
    op.drop_index("ix_jobs_held", "jobs")
    op.drop_index("ix_jobs_batch_id", "jobs")
    op.drop_index("ix_jobs_batch_status", "jobs")
    op.create_index("ix_jobs_batch_status", "jobs", ["batch_id", "status"])
