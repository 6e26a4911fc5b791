"""spending: a batch's budget and what it has committed, each row's cost and the price held
by its claim, and what the account committed per UTC day

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("batches") as batches:
        batches.add_column(sa.Column("budget_micros", sa.BigInteger(), nullable=True))
        batches.add_column(
            sa.Column("committed_micros", sa.BigInteger(), server_default="0", nullable=False)
        )
    with op.batch_alter_table("jobs") as jobs:
        jobs.add_column(
            sa.Column("cost_micros", sa.BigInteger(), server_default="0", nullable=False)
        )
        jobs.add_column(
            sa.Column("held_micros", sa.BigInteger(), server_default="0", nullable=False)
        )
        jobs.add_column(sa.Column("held_day", sa.Date(), nullable=True))
    op.create_table(
        "spend_days",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("committed_micros", sa.BigInteger(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("day", name=op.f("pk_spend_days")),
    )


def downgrade() -> None:
    op.drop_table("spend_days")
    with op.batch_alter_table("jobs") as jobs:
        jobs.drop_column("held_day")
        jobs.drop_column("held_micros")
        jobs.drop_column("cost_micros")
    with op.batch_alter_table("batches") as batches:
        batches.drop_column("committed_micros")
        batches.drop_column("budget_micros")
