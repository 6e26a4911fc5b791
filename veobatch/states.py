"""The states a job row and a batch can be in (see the row life in the README)."""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    PENDING = "pending"  # waiting to be released to a worker
    QUEUED = "queued"  # a message naming the row is on the queue
    SUBMITTING = "submitting"  # a worker holds a lease and is sending the POST
    SUBMITTED = "submitted"  # the provider answered a task_id
    SUCCEEDED = "succeeded"  # the video is ready
    FAILED = "failed"  # finished without a video; error and error_kind say why
    IN_DOUBT = "in_doubt"  # the POST may have created a task; never resent on its own
    CANCELLED = "cancelled"


# The statuses in the order of a row's life: the columns of every count shown.
STATUS_ORDER: tuple[str, ...] = tuple(status.value for status in JobStatus)


class BatchState(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"
    CANCELLED = "cancelled"
    FINISHED = "finished"


class Review(StrEnum):
    """A person's verdict on a row's video."""

    APPROVED = "approved"
    REJECTED = "rejected"


class ErrorKind(StrEnum):
    INVALID = "invalid"  # the row (or the provider's 400) says the input is wrong
    AUTH = "auth"
    QUOTA = "quota"
    RATE_LIMITED = "rate_limited"
    SERVER = "server"
    NETWORK = "network"
    AMBIGUOUS = "ambiguous"
    BAD_ANSWER = "bad_answer"
    REMOTE = "remote"
    TIMEOUT = "timeout"
    IMAGE = "image"  # a local image changed or vanished since the load, or could not be sent
    FILTERED = "filtered"  # a safety filter stopped the video (the provider's reason kept)


# Groups of row statuses, for the queries and the progress that count them.
UNSENT = (JobStatus.PENDING, JobStatus.QUEUED, JobStatus.SUBMITTING)  # no task yet
IN_FLIGHT = (JobStatus.QUEUED, JobStatus.SUBMITTING, JobStatus.SUBMITTED)  # count to the cap
OPEN = (*UNSENT, JobStatus.SUBMITTED)  # not finished: a task to create, or one to follow
# Rows whose task exists (or may: a row submitting has its POST in flight, or its worker
# died mid-request): sending them again pays again, so a rerun asks first.
PAID_FOR = (JobStatus.SUBMITTING, JobStatus.IN_DOUBT, JobStatus.SUBMITTED, JobStatus.SUCCEEDED)
