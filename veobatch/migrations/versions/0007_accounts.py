"""accounts: the relay account each row and each attempt went through, and what every process
knows of each account (paused and why, cooling down, spent today)

Rows and attempts made before this revision were made through the only account there was,
which VEO_API_BASE and VEO_API_KEY still describe and which is now named `default`: every row
that has (or may have) a task, and every attempt, is marked as `default`'s, so a run after the
upgrade follows the tasks made before it, through the same account.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OUT = sa.text("status IN ('submitting', 'submitted')")
SENT = "task_id IS NOT NULL OR status IN ('submitting', 'in_doubt') OR attempts > 0"


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), server_default="active", nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("strikes", sa.Integer(), server_default="0", nullable=False),
        sa.Column("cool_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_error_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("spend_day", sa.Date(), nullable=True),
        sa.Column("spent_micros", sa.BigInteger(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_accounts")),
    )
    with op.batch_alter_table("jobs") as jobs:
        jobs.add_column(sa.Column("account", sa.String(length=64), nullable=True))
    with op.batch_alter_table("attempts") as attempts:
        attempts.add_column(sa.Column("account", sa.String(length=64), nullable=True))
    op.execute(f"UPDATE jobs SET account = 'default' WHERE {SENT}")
    op.execute("UPDATE attempts SET account = 'default'")
    op.create_index(
        "ix_jobs_account_out", "jobs", ["account"], sqlite_where=OUT, postgresql_where=OUT
    )


def downgrade() -> None:
    op.drop_index("ix_jobs_account_out", "jobs")
    with op.batch_alter_table("attempts") as attempts:
        attempts.drop_column("account")
    with op.batch_alter_table("jobs") as jobs:
        jobs.drop_column("account")
    op.drop_table("accounts")
