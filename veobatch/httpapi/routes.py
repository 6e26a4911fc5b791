"""The HTTP API's routes: each parses its request, calls one method of the service, and
shapes the answer. Every route declares the error statuses it can answer, and no other."""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations at runtime.

import re
from dataclasses import asdict
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, File, Form, Query, Request, Response, UploadFile
from fastapi.responses import StreamingResponse

from veobatch.errors import BatchStateError, UnconfirmedRerun
from veobatch.httpapi import schemas
from veobatch.httpapi.schemas import errors
from veobatch.pricing import decimal_text
from veobatch.service import BatchService
from veobatch.states import BatchState, ErrorKind, JobStatus
from veobatch.store.queries import BatchSummary
from veobatch.views import estimate_view

EXPORT_MEDIA = {"csv": "text/csv", "jsonl": "application/x-ndjson"}


def service(request: Request) -> BatchService:
    """The service the app was made over."""
    held: BatchService = request.app.state.service
    return held


Service = Annotated[BatchService, Depends(service)]
router = APIRouter(responses=errors(401, 403, 429))


# ---------------------------------------------------------------------------------- intake


@router.post(
    "/batches",
    operation_id="add_jobs",
    tags=["intake"],
    response_model=schemas.Intake,
    status_code=201,
    responses={
        200: {"model": schemas.Intake, "description": "Every job was already there"},
        **errors(400, 409, 413, 422),
    },
)
def add_jobs(body: schemas.BatchIn, response: Response, veo: Service) -> schemas.Intake:
    """Add jobs to a batch (made if new). 201 if anything was added, 200 if every job was
    already there (a re-send)."""
    jobs = [job.model_dump(exclude_none=True) for job in body.jobs]
    intake = veo.add(
        body.name,
        jobs,
        idempotency_key=body.idempotency_key,
        webhook_url=body.webhook_url,
        budget=body.budget,
    )
    if not intake.added:
        response.status_code = 200
    return schemas.Intake(**asdict(intake))


@router.post(
    "/batches/{name}/file",
    operation_id="upload_job_file",
    tags=["intake"],
    response_model=schemas.Intake,
    status_code=201,
    responses=errors(400, 409, 413, 422),
)
def upload_job_file(
    name: str,
    file: Annotated[
        UploadFile,
        File(
            description="A CSV, YAML or JSON Lines job file, or a .zip of one job file and "
            "the images it names (by their paths inside the zip)."
        ),
    ],
    veo: Service,
    format: Annotated[
        schemas.FileFormat | None, Form(description="Default: the file name's extension.")
    ] = None,
    budget: Annotated[
        str | None,
        Form(pattern=schemas.AMOUNT, description='The most the batch may spend, as text: "120"'),
    ] = None,
) -> schemas.Intake:
    """Add the jobs of a job file to batch NAME, checked as `veo-batch load` checks it:
    any invalid row and nothing is stored (422 lists the problems by line). Local image paths
    are only read from inside an uploaded .zip; a plain job file may only give links."""
    data, kind = file.file.read(), format.value if format else None
    result = veo.upload(file.filename or "upload", data, name, format=kind, budget=budget)
    return schemas.Intake(
        batch=name,
        created=result.created,
        added=result.stored,
        already_there=result.already_present,
        refs=None,  # (a file's rows can be a million: listed by GET /batches/{name}/jobs)
    )


# ---------------------------------------------------------------------------------- reading


@router.get(
    "/batches",
    operation_id="list_batches",
    tags=["batches"],
    response_model=list[schemas.Batch],
)
def list_batches(veo: Service) -> list[schemas.Batch]:
    """Every batch, oldest first, with its rows counted per status."""
    return [_batch(summary, veo.settings.currency) for summary in veo.batches()]


@router.get(
    "/batches/{name}",
    operation_id="get_batch",
    tags=["batches"],
    response_model=schemas.Batch,
    responses=errors(404),
)
def get_batch(name: str, veo: Service) -> schemas.Batch:
    """A batch's state and its rows counted per status."""
    return _batch(veo.status(name), veo.settings.currency)


@router.get(
    "/batches/{name}/estimate",
    operation_id="estimate_batch",
    tags=["batches"],
    response_model=schemas.Estimate,
    responses=errors(404),
)
def estimate_batch(name: str, veo: Service) -> schemas.Estimate:
    """What the rows not sent yet will cost, per model, and the requests they need."""
    return schemas.Estimate(**estimate_view(veo.estimate(name)))


@router.get(
    "/batches/{name}/jobs",
    operation_id="list_jobs",
    tags=["jobs"],
    response_model=schemas.JobsPage,
    responses=errors(404, 422),
)
def list_jobs(
    name: str,
    veo: Service,
    status: Annotated[list[JobStatus] | None, Query(description="Repeat for several.")] = None,
    kind: Annotated[list[ErrorKind] | None, Query(description="Error kinds.")] = None,
    review: Annotated[
        list[schemas.ReviewFilter] | None, Query(description="approved, rejected or none.")
    ] = None,
    model: Annotated[list[str] | None, Query(max_length=64)] = None,
    q: Annotated[str | None, Query(max_length=200, description="Text in prompt or id.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
) -> schemas.JobsPage:
    """A page of the batch's rows, in the order they were added, and how many match."""
    statuses, kinds = [str(s) for s in status or ()], [str(k) for k in kind or ()]
    reviews, models = [str(r) for r in review or ()], model or []
    rows = [
        schemas.Job(**view)
        for view in veo.jobs(
            name,
            statuses=statuses,
            kinds=kinds,
            reviews=reviews,
            models=models,
            text=q,
            limit=limit,
            offset=offset,
        )
    ]
    total = veo.count(name, statuses=statuses, kinds=kinds, reviews=reviews, models=models, text=q)
    return schemas.JobsPage(jobs=rows, total=total, limit=limit, offset=offset)


@router.post(
    "/batches/{name}/review",
    operation_id="review_jobs",
    tags=["jobs"],
    response_model=schemas.Changed,
    responses=errors(400, 404, 413, 422),
)
def review_jobs(name: str, body: schemas.ReviewIn, veo: Service) -> schemas.Changed:
    """Mark the videos of rows `ids` approved or rejected (null: not reviewed); `rows` says
    how many were marked. Rejected ones can be sent again with rerun's `reviews`."""
    rows = veo.review(name, body.ids, None if body.review is None else body.review.value)
    return schemas.Changed(
        batch=name, state=BatchState(veo.status(name, errors=False).state), rows=rows
    )


@router.get(
    "/batches/{name}/jobs/{ref}",
    operation_id="get_job",
    tags=["jobs"],
    response_model=schemas.JobStory,
    responses=errors(404),
)
def get_job(name: str, ref: str, veo: Service) -> schemas.JobStory:
    """One row and its story: each submission, poll that changed something, download."""
    return schemas.JobStory(**veo.job(name, ref))


@router.get(
    "/batches/{name}/export",
    operation_id="export_batch",
    tags=["batches"],
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "The rows as CSV or JSON Lines",
            "content": {media: {"schema": {"type": "string"}} for media in EXPORT_MEDIA.values()},
        },
        **errors(404, 422),
    },
)
def export_batch(
    name: str, veo: Service, format: schemas.ExportFormat = schemas.ExportFormat.CSV
) -> StreamingResponse:
    """Every row with its input fields and its outcome, as `veo-batch export` writes."""
    text = veo.export(name, format.value)
    return StreamingResponse(
        text.chunks(),
        media_type=EXPORT_MEDIA[format.value],
        headers={"Content-Disposition": attachment(f"{name}.{format.value}")},
    )


def attachment(filename: str) -> str:
    """A Content-Disposition for `filename` in any script (RFC 6266): an ASCII fallback, and
    the name itself UTF-8 and percent-encoded."""
    fallback = re.sub(r"[^A-Za-z0-9._-]", "_", filename)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


# ---------------------------------------------------------------------------------- changes


@router.post(
    "/batches/{name}/rerun",
    operation_id="rerun_batch",
    tags=["batches"],
    response_model=schemas.Rerun,
    responses=errors(400, 404, 409, 413, 422),
)
def rerun_batch(name: str, body: schemas.RerunIn, veo: Service) -> schemas.Rerun:
    """Failed rows (by default) back to work; timed-out rows are polled again. `dry_run`
    only counts them (and says which chosen statuses would pay again)."""
    try:
        done = veo.rerun(
            name,
            body.statuses,
            body.kinds,
            refs=body.ids,
            reviews=[str(r) for r in body.reviews],
            dry_run=body.dry_run,
            confirm_paid=body.confirm_paid,
        )
    except UnconfirmedRerun as paid:  # nothing changed
        raise BatchStateError(f'{paid}; send "confirm_paid": true to go on') from None
    return schemas.Rerun(
        matched=done.matched,
        paid_for=[JobStatus(s) for s in done.paid_for],
        sent_again=done.sent_again,
        polled_again=done.polled_again,
        adds=None if done.adds is None else decimal_text(done.adds),
        unpriced=done.unpriced,
    )


@router.put(
    "/batches/{name}/budget",
    operation_id="set_budget",
    tags=["batches"],
    response_model=schemas.Batch,
    responses=errors(400, 404, 413, 422),
)
def set_budget(name: str, body: schemas.BudgetIn, veo: Service) -> schemas.Batch:
    """Change the most the batch may spend (null: no cap). A batch paused by its budget
    goes on once resumed."""
    return _batch(veo.set_budget(name, body.budget), veo.settings.currency)


@router.post(
    "/batches/{name}/pause",
    operation_id="pause_batch",
    tags=["batches"],
    response_model=schemas.Changed,
    responses=errors(404, 409),
)
def pause_batch(name: str, veo: Service) -> schemas.Changed:
    """Stop sending the batch's rows (requests in flight finish)."""
    return schemas.Changed(batch=name, state=BatchState(veo.pause(name, "paused over HTTP")))


@router.post(
    "/batches/{name}/resume",
    operation_id="resume_batch",
    tags=["batches"],
    response_model=schemas.Changed,
    responses=errors(404, 409),
)
def resume_batch(name: str, veo: Service) -> schemas.Changed:
    """Let a paused batch send again."""
    return schemas.Changed(batch=name, state=BatchState(veo.resume(name)))


@router.get(
    "/accounts",
    operation_id="list_accounts",
    tags=["accounts"],
    response_model=list[schemas.Account],
)
def list_accounts(veo: Service) -> list[dict[str, Any]]:
    """Every relay account: its state and why, its rate, rows in flight against its cap,
    spending today against its budget, requests in the last minute, its last error."""
    return veo.accounts()


@router.post(
    "/accounts/{name}/pause",
    operation_id="pause_account",
    tags=["accounts"],
    response_model=schemas.Account,
    responses=errors(400, 404, 413, 422),
)
def pause_account(name: str, veo: Service, body: schemas.AccountPause | None = None) -> Any:
    """Send nothing more through the account (requests in flight finish; its tasks are still
    followed): rows go through the others."""
    return veo.pause_account(name, body.reason if body is not None else "paused over HTTP")


@router.post(
    "/accounts/{name}/resume",
    operation_id="resume_account",
    tags=["accounts"],
    response_model=schemas.Account,
    responses=errors(404),
)
def resume_account(name: str, veo: Service) -> Any:
    """Send through the account again (a balance topped up, a key fixed)."""
    return veo.resume_account(name)


@router.post(
    "/batches/{name}/cancel",
    operation_id="cancel_batch",
    tags=["batches"],
    response_model=schemas.Changed,
    responses=errors(404),
)
def cancel_batch(name: str, veo: Service) -> schemas.Changed:
    """Rows not yet sent become cancelled (`rows` says how many); tasks made finish."""
    rows = veo.cancel(name)
    return schemas.Changed(
        batch=name, state=BatchState(veo.status(name, errors=False).state), rows=rows
    )


def _batch(summary: BatchSummary, currency: str) -> schemas.Batch:
    return schemas.Batch(
        name=summary.name,
        state=BatchState(summary.state),
        pause_reason=summary.pause_reason,
        created_at=summary.created_at,
        total=summary.total,
        counts={JobStatus(status): n for status, n in summary.counts.items()},
        currency=currency,
        spent=decimal_text(summary.spent),
        held=decimal_text(summary.held),
        budget=None if summary.budget is None else decimal_text(summary.budget),
        left=None if summary.left is None else decimal_text(summary.left),
    )
