"""The tables. Created and changed only through the Alembic migrations in `migrations/`.

A test compares these models with the migrated schema on SQLite and PostgreSQL, so the two
cannot drift apart.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from veobatch.states import BatchState, JobStatus

# SQLite only aliases the rowid for a column declared exactly INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")

NAMING = {
    "ix": "ix_%(column_0_N_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


# A row out at its account: being sent, or generating there.
OUT = sa.text("status IN ('submitting', 'submitted')")


def _one_of(column: str, values: type[JobStatus] | type[BatchState]) -> str:
    return f"{column} IN ({', '.join(repr(v.value) for v in values)})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: DateTime(timezone=True),
        dict[str, Any]: JSON,
    }


class Batch(Base):
    __tablename__ = "batches"
    __table_args__ = (CheckConstraint(_one_of("state", BatchState), name="state"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    source: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), default=BatchState.ACTIVE.value)
    pause_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), onupdate=func.now())
    webhook_url: Mapped[str | None] = mapped_column(Text)  # told when it finishes or pauses
    # Money in micro-units (see veobatch.pricing). `committed` is what its rows spent (a task,
    # or maybe one) plus what claims hold now; a claim only goes through if it still fits.
    budget_micros: Mapped[int | None] = mapped_column(BigInteger)
    committed_micros: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("batch_id", "ref"),
        # Pages of a batch's rows in the order they were added, with or without a status.
        Index("ix_jobs_batch_status", "batch_id", "status", "id"),
        Index("ix_jobs_batch_id", "batch_id", "id"),
        # Only the rows holding a price while they are sent: what a batch has in flight.
        Index(
            "ix_jobs_held",
            "batch_id",
            sqlite_where=sa.text("held_micros > 0"),
            postgresql_where=sa.text("held_micros > 0"),
        ),
        CheckConstraint(_one_of("status", JobStatus), name="status"),
        # Only the rows with pass-through fields: an export finds their names from these.
        Index(
            "ix_jobs_extra",
            "batch_id",
            "id",
            sqlite_where=sa.text("extra IS NOT NULL"),
            postgresql_where=sa.text("extra IS NOT NULL"),
        ),
        # Only the rows out at an account (being sent, or generating): its in-flight count.
        Index("ix_jobs_account_out", "account", sqlite_where=OUT, postgresql_where=OUT),
        # Partial: a million freshly loaded rows have neither, and cost these indexes nothing.
        Index(
            "ix_jobs_next_poll_at",
            "next_poll_at",
            sqlite_where=sa.text("next_poll_at IS NOT NULL"),
            postgresql_where=sa.text("next_poll_at IS NOT NULL"),
        ),
        Index(
            "ix_jobs_next_download_at",
            "next_download_at",
            sqlite_where=sa.text("next_download_at IS NOT NULL"),
            postgresql_where=sa.text("next_download_at IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # No FOREIGN KEY to batches: PostgreSQL checks one with a trigger per inserted row, which
    # was 40% of the time to COPY a million rows. Rows are only ever created by the loader, in
    # the transaction that creates or finds their batch, and batches are never deleted.
    batch_id: Mapped[int] = mapped_column(BigId)
    ref: Mapped[str] = mapped_column(String(200))  # the file's id, else its line number
    line: Mapped[int | None] = mapped_column(Integer)  # where the row starts in its file
    # What is sent to the provider.
    prompt: Mapped[str] = mapped_column(Text)
    model: Mapped[str] = mapped_column(String(64))
    # Links and data: URIs as given; a local file as {path, bytes, sha256, width, height, type}
    # (and `uploaded` once it is in the bucket): never the image's bytes.
    images: Mapped[list[Any]] = mapped_column(JSON)
    aspect_ratio: Mapped[str | None] = mapped_column(String(8))
    enhance_prompt: Mapped[bool | None]
    extra: Mapped[dict[str, Any] | None]  # other provider fields, passed through untouched
    # What happened.
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.PENDING.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    task_id: Mapped[str | None] = mapped_column(String(200))
    error: Mapped[str | None] = mapped_column(Text)
    error_kind: Mapped[str | None] = mapped_column(String(32))
    http_status: Mapped[int | None] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime | None]  # backoff: not released before this time
    lease_until: Mapped[datetime | None]  # a worker's claim on a `submitting` row
    # Following the task (`submitted`): the provider's words, and when to ask next.
    remote_status: Mapped[str | None] = mapped_column(String(32))
    progress: Mapped[str | None] = mapped_column(String(16))  # as the provider says it: "40%"
    video_url: Mapped[str | None] = mapped_column(Text)
    polls: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_poll_at: Mapped[datetime | None]  # also a poll's claim: pushed ahead when one is sent
    poll_until: Mapped[datetime | None]  # the deadline: still running then means `timeout`
    # The video on disk (downloads are optional and never change the row's status).
    video_path: Mapped[str | None] = mapped_column(Text)
    video_bytes: Mapped[int | None] = mapped_column(BigInteger)
    video_sha256: Mapped[str | None] = mapped_column(String(64))
    downloads: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    download_error: Mapped[str | None] = mapped_column(Text)
    next_download_at: Mapped[datetime | None]  # set while a download is wanted and not done
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), onupdate=func.now())
    submitted_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    # Spending: every claim that made (or may have made) a task adds its price to `cost`; the
    # claim in flight holds its price (and the UTC day it counts against) until its outcome.
    cost_micros: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    held_micros: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    held_day: Mapped[date | None] = mapped_column(Date)
    # A person's verdict on the video: approved | rejected (None: not reviewed).
    review: Mapped[str | None] = mapped_column(String(16))
    reviewed_at: Mapped[datetime | None]
    # The relay account its last claim went through (VEO_ACCOUNTS; `default` without a file):
    # its task is that account's, polled and followed only there.
    account: Mapped[str | None] = mapped_column(String(64))


class SpendDay(Base):
    """What the account committed on one UTC day, for VEO_DAILY_BUDGET."""

    __tablename__ = "spend_days"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    committed_micros: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class Attempt(Base):
    """One submission or poll outcome of a job: its history answers 'what happened to row X?'."""

    __tablename__ = "attempts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    action: Mapped[str] = mapped_column(String(16))  # submit | poll | download
    at: Mapped[datetime] = mapped_column(server_default=func.now())
    http_status: Mapped[int | None] = mapped_column(Integer)
    task_id: Mapped[str | None] = mapped_column(String(200))
    remote_status: Mapped[str | None] = mapped_column(String(32))
    error: Mapped[str | None] = mapped_column(Text)
    error_kind: Mapped[str | None] = mapped_column(String(32))
    account: Mapped[str | None] = mapped_column(String(64))  # the relay account asked


class RelayAccount(Base):
    """What every process knows of one relay account of VEO_ACCOUNTS: whether it is paused
    (a refused key, an empty balance, a person) and why, whether it is cooling down after
    failures in a row, and what it committed today against its own daily budget. A row is
    made the first time a process starts with the account in its file."""

    __tablename__ = "accounts"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    state: Mapped[str] = mapped_column(String(16), default="active", server_default="active")
    reason: Mapped[str | None] = mapped_column(Text)  # why it is paused
    changed_at: Mapped[datetime | None]  # when it was paused or resumed
    # Failures in a row (5xx, refused connections): enough of them cool it down.
    strikes: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    cool_until: Mapped[datetime | None]  # no claim goes to it before then
    last_error: Mapped[str | None] = mapped_column(Text)
    last_error_at: Mapped[datetime | None]
    spend_day: Mapped[date | None] = mapped_column(Date)  # the UTC day `spent_micros` counts
    spent_micros: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class Delivery(Base):
    """One event to tell a batch's webhook: its JSON body, fixed when the event happened."""

    __tablename__ = "deliveries"
    __table_args__ = (
        Index(
            "ix_deliveries_next_attempt_at",
            "next_attempt_at",
            sqlite_where=sa.text("next_attempt_at IS NOT NULL"),
            postgresql_where=sa.text("next_attempt_at IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("batches.id", ondelete="CASCADE"))
    event: Mapped[str] = mapped_column(String(32))  # batch.finished | batch.paused
    url: Mapped[str] = mapped_column(Text)
    payload: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_attempt_at: Mapped[datetime | None]  # None once delivered or given up
    delivered_at: Mapped[datetime | None]


class DeliveryAttempt(Base):
    __tablename__ = "delivery_attempts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    delivery_id: Mapped[int] = mapped_column(
        ForeignKey("deliveries.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[datetime] = mapped_column(server_default=func.now())
    http_status: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
