"""The HTTP API (`veo-batch serve`): queue, follow and steer batches from any language.

FastAPI on uvicorn; the OpenAPI schema is served at `/openapi.json` (and read at `/docs`).
Every route but the schema needs `Authorization: Bearer <token>`, one of `VEO_API_TOKENS`
(our own tokens, compared in constant time; never the provider's key). Bodies over the size
limit are refused with 413 before they are read; invalid jobs are 422 naming each job's index
and field; nothing answers with a stack trace.
"""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations at runtime,
# and those that name local values (the bearer scheme) cannot be resolved from strings.

import hmac
import logging
from collections.abc import Iterator
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Final

from fastapi import Depends, FastAPI, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.engine import Engine
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from veobatch.errors import BatchStateError, JobFileError, NotFoundError, VeoBatchError
from veobatch.intake.loader import load_rows
from veobatch.intake.readers import job_file_from_bytes
from veobatch.python_api import Client, InvalidJobs, check_batch_name
from veobatch.settings import Settings
from veobatch.states import ErrorKind, JobStatus
from veobatch.store.export import export_rows, write_rows
from veobatch.store.queries import (
    batch_id,
    select_jobs,
)

MAX_BODY_BYTES: Final = 20 * 1024 * 1024
# Our errors as HTTP answers, the most specific first (InvalidJobs and RowsRefused carry their
# problems and have handlers of their own).
STATUS_OF: Final[dict[type[Exception], int]] = {
    NotFoundError: 404,
    BatchStateError: 409,
    JobFileError: 422,
    VeoBatchError: 422,
}
log = logging.getLogger("veobatch.http")


# ---------------------------------------------------------------------------------- shapes


class FileFormat(StrEnum):
    CSV = "csv"
    YAML = "yaml"
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
        None, min_length=1, max_length=100,
        description="Keys the jobs without an id: the same request sent again adds nothing.",
    )  # fmt: skip
    webhook_url: str | None = Field(
        None, max_length=2000, pattern=r"^https?://\S+$",
        description="Told (a JSON POST signed with HMAC-SHA256) when the batch finishes or "
        "pauses; retried with backoff until it answers 2xx.",
    )  # fmt: skip


class Intake(BaseModel):
    batch: str
    created: bool
    added: int
    already_there: int
    refs: list[str]


class Batch(BaseModel):
    name: str
    state: str
    pause_reason: str | None
    created_at: datetime
    total: int
    counts: dict[str, int]


class Job(BaseModel):
    id: str
    status: str
    task_id: str | None
    error: str | None
    error_kind: str | None
    http_status: int | None
    attempts: int
    remote_status: str | None
    progress: str | None
    video_url: str | None
    video_path: str | None
    video_bytes: int | None
    video_sha256: str | None
    download_error: str | None
    prompt: str
    model: str
    images: list[str]
    submitted_at: datetime | None
    finished_at: datetime | None


class Event(BaseModel):
    at: datetime | None
    action: str
    http_status: int | None
    task_id: str | None
    remote_status: str | None
    error: str | None
    error_kind: str | None


class JobStory(Job):
    history: list[Event]


class JobsPage(BaseModel):
    jobs: list[Job]
    total: int
    limit: int
    offset: int


class Rerun(BaseModel):
    statuses: list[JobStatus] = Field(default=[JobStatus.FAILED], description="Rows in these.")
    kinds: list[ErrorKind] = Field(default=[], description="Only rows with these error kinds.")


class Rerunning(BaseModel):
    sent_again: int
    polled_again: int


class Changed(BaseModel):
    batch: str
    state: str
    rows: int | None = None


class ProblemOut(BaseModel):
    index: int | None
    field: str | None
    message: str


class Problems(BaseModel):
    detail: str
    problems: list[ProblemOut] = []


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": Problems, "description": "The body cannot be read (not UTF-8 JSON)"},
    401: {"model": Problems, "description": "No or wrong bearer token"},
    404: {"model": Problems, "description": "No such batch or job"},
    409: {"model": Problems, "description": "The batch's state forbids it"},
    413: {"model": Problems, "description": "Body too large"},
    422: {"model": Problems, "description": "Invalid request or jobs"},
}


# ---------------------------------------------------------------------------------- the app


def create_app(settings: Settings, engine: Engine, *, max_body: int = MAX_BODY_BYTES) -> FastAPI:
    """The ASGI app over `engine`; `settings.api_tokens` are the callers' tokens (none: open,
    which `veo-batch serve` only allows with --no-auth)."""
    app = FastAPI(
        title="veo-batch",
        version="1",
        description="Queue Veo image-to-video jobs, follow them to their videos.",
        responses=ERRORS,
    )
    veo = Client.over(engine, settings)  # reads and changes: the Python API's own
    bearer = HTTPBearer(auto_error=False)
    tokens = [t.reveal().encode() for t in settings.api_tokens]

    def caller(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> None:
        if not tokens:
            return
        given = (credentials.credentials if credentials else "").encode()
        # Every token compared, whatever matches: the time says nothing about which one.
        if not sum(hmac.compare_digest(given, token) for token in tokens):
            raise HTTPException(401, "a valid bearer token is required",
                                headers={"WWW-Authenticate": "Bearer"})  # fmt: skip

    guarded = [Depends(caller)]

    app.add_middleware(BodyLimit, max_body=max_body)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        answer = _problem(exc.status_code, str(exc.detail))
        answer.headers.update(exc.headers or {})
        if exc.status_code == 405:  # Starlette lists the methods of one route, not the path's
            answer.headers["Allow"] = ", ".join(_methods(app, request.url.path))
        return answer

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for error in exc.errors():
            where = [str(part) for part in error.get("loc", ()) if part != "body"]
            index = None
            if where[:1] == ["jobs"] and where[1:2] and where[1].isdigit():
                index, where = int(where[1]), where[2:]  # job 3's field, as files say it
            field = ".".join(where) or None
            problems.append({"index": index, "field": field, "message": error.get("msg", "")})
        return _problem(422, "the request does not match the schema", problems)

    @app.exception_handler(InvalidJobs)
    async def invalid_jobs(_request: Request, exc: InvalidJobs) -> JSONResponse:
        return _problem(422, "invalid jobs; nothing was stored", exc.problems)

    @app.exception_handler(RowsRefused)
    async def rows_refused(_request: Request, exc: RowsRefused) -> JSONResponse:
        return _problem(422, exc.detail, exc.problems)

    async def refused(_request: Request, exc: Exception) -> JSONResponse:
        status = next(code for kind, code in STATUS_OF.items() if isinstance(exc, kind))
        return _problem(status, str(exc))

    for error in STATUS_OF:
        app.add_exception_handler(error, refused)

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path)
        return _problem(500, "internal error; the server log says more")

    # ------------------------------------------------------------------ intake

    @app.post(
        "/batches", dependencies=guarded, response_model=Intake, status_code=201,
        responses={200: {"model": Intake, "description": "Every job was already there"}},
    )  # fmt: skip
    def create(body: BatchIn, response: Response) -> Intake:
        """Add jobs to a batch (made if new). 201 if anything was added, 200 if every job was
        already there (a re-send)."""
        jobs = [job.model_dump(exclude_none=True) for job in body.jobs]
        intake = veo.add(
            body.name, jobs, idempotency_key=body.idempotency_key, webhook_url=body.webhook_url
        )
        if not intake.added:
            response.status_code = 200
        return Intake(**vars(intake))

    @app.post("/batches/{name}/file", dependencies=guarded, response_model=Intake,
              status_code=201)  # fmt: skip
    def upload(
        name: str,
        file: Annotated[UploadFile, File(description="A CSV, YAML or JSON Lines job file.")],
        format: Annotated[
            FileFormat | None, Form(description="Default: the file name's extension.")
        ] = None,
    ) -> Intake:  # fmt: skip
        """Add the jobs of a job file to batch NAME, checked as `veo-batch load` checks it:
        any invalid row and nothing is stored (422 lists the problems by line)."""
        data = file.file.read()
        chosen = format.value if format is not None else None
        job_file = job_file_from_bytes(file.filename or "upload", data, chosen)
        result = load_rows(
            engine, job_file.rows(), batch=check_batch_name(name), source=job_file.name,
            models=settings.models, reader_process=False,
        )  # fmt: skip
        if result.rejected:
            problems = [
                {"index": p.line, "field": p.field, "message": p.message}
                for p in result.report.problems
            ]  # fmt: skip
            raise RowsRefused(f"{job_file.name}: invalid rows; nothing was stored", problems)
        return Intake(
            batch=name, created=result.created, added=result.stored,
            already_there=result.already_present, refs=[],
        )  # fmt: skip

    # ------------------------------------------------------------------ reading

    @app.get("/batches", dependencies=guarded, response_model=list[Batch])
    def batches() -> list[Batch]:
        return [_batch(s) for s in veo.batches()]

    @app.get("/batches/{name}", dependencies=guarded, response_model=Batch)
    def batch(name: str) -> Batch:
        """A batch's state and its rows counted per status."""
        return _batch(veo.status(name))

    @app.get("/batches/{name}/jobs", dependencies=guarded, response_model=JobsPage)
    def jobs(
        name: str,
        status: Annotated[list[JobStatus] | None, Query(description="Repeat for several.")] = None,
        kind: Annotated[list[ErrorKind] | None, Query(description="Error kinds.")] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
    ) -> JobsPage:
        chosen = {"statuses": status or (), "kinds": kind or ()}
        rows = [Job(**view) for view in veo.jobs(name, limit=limit, offset=offset, **chosen)]
        return JobsPage(jobs=rows, total=veo.count(name, **chosen), limit=limit, offset=offset)

    @app.get("/batches/{name}/jobs/{ref}", dependencies=guarded, response_model=JobStory)
    def job(name: str, ref: str) -> JobStory:
        """One row and its story: each submission, poll that changed something, download."""
        return JobStory(**veo.job(name, ref))

    @app.get(
        "/batches/{name}/export", dependencies=guarded, response_class=StreamingResponse,
        responses={200: {"content": {"text/csv": {}, "application/x-ndjson": {}}}},
    )  # fmt: skip
    def export(
        name: str, format: Annotated[str, Query(pattern="^(csv|jsonl)$")] = "csv"
    ) -> StreamingResponse:
        """Every row with its input fields and its outcome, as `veo-batch export` writes."""
        with engine.connect() as conn:
            bid = batch_id(conn, name)

        def body() -> Iterator[str]:
            with engine.connect() as conn:
                columns, rows = export_rows(conn, select_jobs(bid))
                yield from write_rows(format, columns, rows)

        media = "text/csv" if format == "csv" else "application/x-ndjson"
        disposition = f'attachment; filename="{name}.{format}"'
        return StreamingResponse(body(), media_type=media,
                                 headers={"Content-Disposition": disposition})  # fmt: skip

    # ------------------------------------------------------------------ changes

    @app.post("/batches/{name}/rerun", dependencies=guarded, response_model=Rerunning)
    def rerun(name: str, body: Rerun) -> Rerunning:
        """Failed rows (by default) back to work; timed-out rows are polled again."""
        sent, polled = veo.rerun(name, body.statuses, body.kinds)
        return Rerunning(sent_again=sent, polled_again=polled)

    @app.post("/batches/{name}/pause", dependencies=guarded, response_model=Changed)
    def pause(name: str) -> Changed:
        veo.pause(name, "paused over HTTP")
        return Changed(batch=name, state=veo.status(name).state)

    @app.post("/batches/{name}/resume", dependencies=guarded, response_model=Changed)
    def resume(name: str) -> Changed:
        veo.resume(name)
        return Changed(batch=name, state=veo.status(name).state)

    @app.post("/batches/{name}/cancel", dependencies=guarded, response_model=Changed)
    def cancel(name: str) -> Changed:
        """Rows not yet sent become cancelled (`rows` says how many); tasks made finish."""
        rows = veo.cancel(name)
        return Changed(batch=name, state=veo.status(name).state, rows=rows)

    return app


class BodyLimit:
    """Refuse bodies over `max_body` bytes with 413: at once when Content-Length says so, else
    as soon as the streamed body passes the limit (it is held, at most `max_body`, and then
    handed on)."""

    def __init__(self, app: ASGIApp, max_body: int) -> None:
        self.app, self.max_body = app, max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None:
            if not length.isdigit() or int(length) > self.max_body:
                await self._refuse(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        held: list[Message] = []
        size = 0
        while True:
            message = await receive()
            held.append(message)
            size += len(message.get("body", b""))
            if size > self.max_body:
                await self._refuse(scope, receive, send)
                return
            if message["type"] != "http.request" or not message.get("more_body"):
                break

        async def replay() -> Message:
            return held.pop(0) if held else await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        answer = _problem(413, f"the body is over {self.max_body:,} bytes")
        await answer(scope, receive, send)


class RowsRefused(VeoBatchError):
    """An uploaded job file has invalid rows: answered 422 with each row's problems."""

    def __init__(self, detail: str, problems: list[dict[str, Any]]) -> None:
        super().__init__(detail)
        self.detail, self.problems = detail, problems


def _methods(app: FastAPI, path: str) -> list[str]:
    """Every method some route serves at `path`."""
    methods: set[str] = set()
    for route in app.routes:
        if isinstance(route, APIRoute) and route.path_regex.match(path):
            methods |= route.methods or set()
    return sorted(methods)


def _problem(
    status: int, detail: str, problems: list[dict[str, Any]] | None = None
) -> JSONResponse:
    return JSONResponse({"detail": detail, "problems": problems or []}, status_code=status)


def _batch(summary: Any) -> Batch:
    return Batch(
        name=summary.name, state=summary.state, pause_reason=summary.pause_reason,
        created_at=summary.created_at, total=summary.total, counts=summary.counts,
    )  # fmt: skip
