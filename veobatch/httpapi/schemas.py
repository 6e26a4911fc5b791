"""The shapes of the HTTP API's requests and answers (its OpenAPI schema is made from them)."""

# No `from __future__ import annotations`: pydantic and FastAPI read these at runtime.

from datetime import datetime
from enum import StrEnum
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from veobatch.states import BatchState, ErrorKind, JobStatus, Review

# Money travels as decimal text ("120", "0.25"), never as a float.
AMOUNT: Final = r"^[0-9]{1,9}(\.[0-9]{1,6})?$"


class FileFormat(StrEnum):
    CSV = "csv"
    YAML = "yaml"
    JSONL = "jsonl"


class ExportFormat(StrEnum):
    CSV = "csv"
    JSONL = "jsonl"


class JobIn(BaseModel):
    """A job as in a job file. Other fields go to the provider untouched (e.g.
    enable_upsample). The checks a schema cannot say (images per model, prompt length, image
    URLs, misspelled fields) answer 422 naming the job's index and the field."""

    model_config = ConfigDict(extra="allow")
    id: str | int | None = Field(None, description="The job's key in its batch.")
    external_id: str | int | None = Field(None, description="Another name for id.")
    prompt: str
    model: str
    images: list[str] = Field(min_length=1, max_length=3)
    aspect_ratio: str | None = None
    enhance_prompt: bool | None = None


class BatchIn(BaseModel):
    name: str = Field(min_length=1, max_length=200, description="The batch (made if new).")
    jobs: list[JobIn] = Field(
        min_length=1,
        max_length=100_000,
        description="The jobs; one with an id (or external_id) the batch already has adds "
        "nothing, so a re-send is safe.",
    )
    idempotency_key: str | None = Field(
        None,
        min_length=1,
        max_length=100,
        description="Keys the jobs without an id: the same request sent again adds nothing.",
    )
    webhook_url: str | None = Field(
        None,
        max_length=2000,
        pattern=r"^https?://\S+$",
        description="Told (a JSON POST signed with HMAC-SHA256) when the batch finishes or "
        "pauses; retried with backoff until it answers 2xx.",
    )
    budget: str | None = Field(
        None,
        pattern=AMOUNT,
        description='The most the batch may spend, in VEO_CURRENCY, as text ("120"); every '
        "model it uses then needs a price in VEO_PRICES. Past it, the batch pauses with "
        "reason budget.",
    )


class Intake(BaseModel):
    batch: str
    created: bool
    added: int
    already_there: int
    refs: list[str] | None = Field(
        description=(
            "Each job's id, in the order the call gave them (adding jobs); null for an "
            "uploaded file, whose rows can be many: GET /batches/{name}/jobs lists them"
        )
    )


class Batch(BaseModel):
    name: str
    state: BatchState
    pause_reason: str | None
    created_at: datetime
    total: int
    counts: dict[JobStatus, int]
    currency: str = Field(description="Of every amount below (VEO_CURRENCY)")
    spent: str = Field(description="Rows with a task, or maybe one (in_doubt), at their price")
    held: str = Field(description="The price held by rows being submitted now")
    budget: str | None = Field(description="The most the batch may spend (null: no cap)")
    left: str | None = Field(description="The budget less what is spent and held")


class ModelCost(BaseModel):
    model: str
    rows: int
    price: str | None = Field(description="Of one request; null: the model has no price")
    total: str | None


class Estimate(BaseModel):
    currency: str
    models: list[ModelCost] = Field(description="The rows not sent yet, per model")
    rows: int
    total: str | None = Field(description="Their price; null if a model has no price")
    unpriced: list[str]
    requests: int = Field(description="Submissions plus the polls expected for their tasks")
    polls_per_task: int
    spent: str
    committed: str = Field(description="Spent plus what claims in flight hold")
    budget: str | None
    left: str | None


class ReviewFilter(StrEnum):
    APPROVED = "approved"
    REJECTED = "rejected"
    NONE = "none"


class ReviewIn(BaseModel):
    ids: list[str] = Field(min_length=1, max_length=10_000, description="Rows, by id.")
    review: Review | None = Field(description="approved or rejected; null: not reviewed")


class BudgetIn(BaseModel):
    budget: str | None = Field(
        pattern=AMOUNT,
        description='The most the batch may spend, in VEO_CURRENCY, as text: "200" (null: no cap)',
    )


class ImageFile(BaseModel):
    name: str = Field(description="As the job file named it")
    bytes: int
    sha256: str
    width: int
    height: int
    type: str = Field(description="image/png, image/jpeg or image/webp")
    uploaded: str | None = Field(None, description="s3://BUCKET/KEY once uploaded (url mode)")


class Job(BaseModel):
    id: str
    line: int | None = Field(None, description="The row's line in its job file, if any.")
    status: JobStatus
    task_id: str | None
    account: str | None = Field(
        None, description="The relay account its last submission went through (its task's)"
    )
    error: str | None
    error_kind: ErrorKind | None
    http_status: int | None
    attempts: int
    remote_status: str | None
    progress: str | None
    video_url: str | None
    video_path: str | None
    video_bytes: int | None
    video_sha256: str | None
    download_error: str | None
    review: Review | None = Field(None, description="A person's verdict on the video")
    cost: str | None = Field(
        description="The price counted for the row: each submission that made a task (null: "
        "its model has no price in VEO_PRICES, and nothing was counted)"
    )
    prompt: str
    model: str
    images: list[str] = Field(description="Links and data: URIs as given; local images by name")
    image_files: list[ImageFile] = Field(description="What is kept of each local image")
    aspect_ratio: str | None = Field(None, description="As the job gave it (none: the default)")
    enhance_prompt: bool | None = Field(None, description="As the job gave it")
    submitted_at: datetime | None
    finished_at: datetime | None


class Event(BaseModel):
    at: datetime | None
    action: str = Field(description="submit, poll or download")
    http_status: int | None
    task_id: str | None
    remote_status: str | None
    error: str | None
    error_kind: ErrorKind | None
    account: str | None = Field(None, description="The relay account asked")


class JobStory(Job):
    history: list[Event]


class JobsPage(BaseModel):
    jobs: list[Job]
    total: int
    limit: int
    offset: int


class RerunIn(BaseModel):
    statuses: list[JobStatus] = Field(default=[JobStatus.FAILED], description="Rows in these.")
    kinds: list[ErrorKind] = Field(default=[], description="Only rows with these error kinds.")
    ids: list[str] = Field(default=[], max_length=10_000, description="Only these rows.")
    reviews: list[Review] = Field(default=[], description="Only rows reviewed so (rejected).")
    dry_run: bool = Field(default=False, description="Count the rows; change nothing.")
    confirm_paid: bool = Field(
        default=False,
        description="Needed to send again rows that have (or may have) a billed task "
        "(submitting, submitted, succeeded, in_doubt): a new task pays again.",
    )


class Rerun(BaseModel):
    matched: int = Field(description="Rows in the chosen statuses and kinds.")
    paid_for: list[JobStatus] = Field(
        description="Chosen statuses whose rows have (or may have) a billed task: sending "
        "them again pays again."
    )
    sent_again: int
    polled_again: int
    adds: str | None = Field(
        None, description="dry_run: what sending the rows again costs (null: a model is unpriced)"
    )
    unpriced: list[str] = Field(default=[], description="dry_run: their models without a price")


class Changed(BaseModel):
    batch: str
    state: BatchState
    rows: int | None = None


class Account(BaseModel):
    name: str
    host: str | None = Field(description="The relay's host (null: no longer in the file)")
    dialect: Literal["relay", "gemini"] | None = Field(
        default=None, description="The API it speaks: a relay's, or Google's (gemini)"
    )
    state: Literal["active", "cooling", "paused", "removed"]
    reason: str | None = Field(description="Why it is paused, cooling or removed")
    priority: int | None
    rate: str | None
    poll_rate: str | None
    in_flight: int = Field(description="Rows being sent or generating through it")
    max_in_flight: int | None
    spent_today: str = Field(description="Committed today (UTC), in VEO_CURRENCY")
    daily_budget: str | None
    sent_last_minute: int
    rows: int = Field(description="Rows whose last submission went through it")
    models: list[str] | None = Field(description="The job models it serves (null: every one)")
    last_error: str | None
    last_error_at: datetime | None


class AccountPause(BaseModel):
    reason: str = Field("paused over HTTP", max_length=500)


class ProblemOut(BaseModel):
    index: int | None = Field(description="The job's index in the request (null for a file).")
    line: int | None = Field(None, description="The row's line in an uploaded file, else null.")
    field: str | None
    message: str


class Problems(BaseModel):
    detail: str
    problems: list[ProblemOut] = []


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The error answers a route can give, for its `responses=`."""
    return {status: ERRORS[status] for status in statuses}


ERRORS: dict[int, dict[str, Any]] = {
    400: {"model": Problems, "description": "The body cannot be read (not UTF-8 JSON)"},
    401: {"model": Problems, "description": "No or wrong bearer token"},
    403: {"model": Problems, "description": "Served without tokens: not a loopback caller"},
    404: {"model": Problems, "description": "No such batch, job or account"},
    409: {"model": Problems, "description": "The batch's state forbids it"},
    413: {"model": Problems, "description": "Body too large"},
    422: {"model": Problems, "description": "Invalid request or jobs"},
    429: {"model": Problems, "description": "Too many requests at once; Retry-After says when"},
}
