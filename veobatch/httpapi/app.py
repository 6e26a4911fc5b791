"""The HTTP API's app: bearer tokens, the body limit, our errors as statuses, the schema.

Every route but the schema needs `Authorization: Bearer <token>`, one of `VEO_API_TOKENS`
(our own tokens, compared in constant time; never the provider's key). Bodies over the size
limit are refused with 413 before they are read; invalid jobs are 422 naming each job's index
(or file line) and field; nothing answers with a stack trace.
"""

# No `from __future__ import annotations`: FastAPI reads the dependencies' annotations.

import json
import logging
from pathlib import Path
from typing import Annotated, Any, Final
from urllib.parse import urlencode

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from veobatch.dashboard import router as dashboard
from veobatch.dashboard.pages import DASHBOARD_STATIC, LoginNeeded, NotAllowed, error_page
from veobatch.dashboard.sessions import Sessions
from veobatch.errors import (
    BatchStateError,
    InvalidJobs,
    JobFileError,
    NotFoundError,
    VeoBatchError,
)
from veobatch.httpapi.guards import LOOKING, Guard, any_matches, is_page
from veobatch.httpapi.headers import SecurityHeaders
from veobatch.httpapi.probes import serve_probes
from veobatch.httpapi.routes import router
from veobatch.service import BatchService

MAX_BODY_BYTES: Final = 20 * 1024 * 1024
MAX_IN_FLIGHT: Final = 16  # requests served at once; one more is answered 429
# Our errors as HTTP answers, the most specific first: 422 for a value refused (400 is only a
# body that cannot be read at all), 409 only for a batch whose state forbids the request.
STATUS_OF: Final[dict[type[Exception], int]] = {
    NotAllowed: 403,  # the dashboard's: a read-only session, or a stale form (CSRF)
    NotFoundError: 404,
    BatchStateError: 409,
    InvalidJobs: 422,
    JobFileError: 422,
    VeoBatchError: 422,
}
TAGS: Final = [
    {"name": "intake", "description": "Add jobs to batches: JSON, or an uploaded job file."},
    {"name": "batches", "description": "Batches: their state, export, rerun, pause, cancel."},
    {"name": "jobs", "description": "A batch's rows and each row's story."},
    {"name": "accounts", "description": "The relay accounts: their state and load; pause, resume."},
]
log = logging.getLogger("veobatch.http")
_bearer = HTTPBearer(auto_error=False)


def create_app(
    service: BatchService,
    *,
    max_body: int = MAX_BODY_BYTES,
    max_in_flight: int = MAX_IN_FLIGHT,
) -> FastAPI:
    """The ASGI app over `service`; its `settings.api_tokens` are the callers' tokens (none:
    open, which `veo-batch serve` only allows with --no-auth)."""
    settings = service.settings
    app = FastAPI(
        title="veo-batch",
        version="1",
        description="Queue Veo image-to-video jobs, follow them to their videos.",
        openapi_tags=TAGS,
        docs_url=None,  # served below from the package's own copy: it works offline
        redoc_url=None,
    )
    _serve_docs(app)
    app.state.service = service
    serve_probes(app)
    app.state.tokens = [t.reveal().encode() for t in settings.api_tokens]
    app.state.read_tokens = [t.reveal().encode() for t in settings.api_read_tokens]
    app.state.sessions = Sessions(app.state.tokens, app.state.read_tokens)
    app.add_middleware(BodyLimit, max_body=max_body)
    # Added last, so it runs first: the token and the load before any body is read.
    app.add_middleware(
        Guard,
        tokens=app.state.tokens,
        read_tokens=app.state.read_tokens,
        max_in_flight=max_in_flight,
    )
    app.add_middleware(SecurityHeaders)  # outermost: on every answer, the guards' included
    _answer_errors(app)
    app.include_router(router, dependencies=[Depends(caller)])
    app.mount("/ui/static", StaticFiles(directory=DASHBOARD_STATIC), name="dashboard-static")
    app.include_router(dashboard)
    app.openapi = lambda: _tidy_schema(FastAPI.openapi(app))  # type: ignore[method-assign]
    return app


def caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Let the request through only with one of the tokens (if the app has any), or a
    read-only token for a GET."""
    tokens: list[bytes] = request.app.state.tokens
    if not tokens:
        return
    given = (credentials.credentials if credentials else "").encode()
    if any_matches(given, tokens):
        return
    if any_matches(given, request.app.state.read_tokens) and request.method in LOOKING:
        return
    raise HTTPException(
        401, "a valid bearer token is required", headers={"WWW-Authenticate": "Bearer"}
    )


def _answer_errors(app: FastAPI) -> None:
    """One error shape for every status: `{"detail": ..., "problems": [...]}`."""

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        answer = _problem(exc.status_code, str(exc.detail))
        answer.headers.update(exc.headers or {})
        if exc.status_code == 405:  # Starlette lists the methods of one route, not the path's
            answer.headers["Allow"] = ", ".join(_methods(app, request.url.path))
        return answer

    async def invalid_request(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        if is_page(request.url.path):
            return error_page(request, 422, "the page was asked for with values it does not take")
        return _problem(422, "the request does not match the schema", _problems_of(exc))

    async def refused(request: Request, exc: Exception) -> Response:
        status = next(code for kind, code in STATUS_OF.items() if isinstance(exc, kind))
        if is_page(request.url.path):
            return error_page(request, status, str(exc))
        if isinstance(exc, InvalidJobs):
            return _problem(status, exc.detail, exc.problems)
        return _problem(status, str(exc))

    async def login_needed(request: Request, _exc: Exception) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse("/login?" + urlencode({"next": target}), 303)

    async def crashed(request: Request, _exc: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path)
        return _problem(500, "internal error; the server log says more")

    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(LoginNeeded, login_needed)
    app.add_exception_handler(RequestValidationError, invalid_request)
    for error in STATUS_OF:
        app.add_exception_handler(error, refused)
    app.add_exception_handler(Exception, crashed)


def _problems_of(exc: RequestValidationError) -> list[dict[str, Any]]:
    """Each validation error as a problem; a job's field is named as files name it."""
    problems = []
    for error in exc.errors():
        where = [str(part) for part in error.get("loc", ()) if part != "body"]
        index = None
        if where[:1] == ["jobs"] and where[1:2] and where[1].isdigit():
            index, where = int(where[1]), where[2:]  # job 3's field, as files say it
        field = ".".join(where) or None
        message = error.get("msg", "")
        problems.append({"index": index, "line": None, "field": field, "message": message})
    return problems


def _tidy_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema FastAPI makes, with what generated clients need: uploaded files marked
    `format: binary` (with OpenAPI 3.1's `contentMediaType` alone some generators send text),
    no 422 of FastAPI's own shape on routes that cannot answer it (a route that can declares
    ours), and a form body named after its operation (`UploadJobFile`, not FastAPI's
    `Body_upload_job_file`, which generated clients turn into a class name)."""
    for definition in schema.get("components", {}).get("schemas", {}).values():
        for prop in definition.get("properties", {}).values():
            if prop.get("contentMediaType") == "application/octet-stream":
                prop["format"] = "binary"
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            answer = operation.get("responses", {}).get("422", {})
            ref = answer.get("content", {}).get("application/json", {}).get("schema", {})
            if ref.get("$ref", "").endswith("/HTTPValidationError"):
                del operation["responses"]["422"]
    components = schema.get("components", {}).get("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)
    renames = {
        name: "".join(word.title() for word in name.removeprefix("Body_").split("_"))
        for name in components
        if name.startswith("Body_")
    }
    if not renames:
        return schema
    text = json.dumps(schema)
    for old, new in renames.items():
        text = text.replace(f'"#/components/schemas/{old}"', f'"#/components/schemas/{new}"')
    tidied: dict[str, Any] = json.loads(text)
    bodies = tidied["components"]["schemas"]
    for old, new in renames.items():
        bodies[new] = {**bodies.pop(old), "title": new}
    return tidied


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


SWAGGER_UI: Final = Path(__file__).parent / "static" / "swagger-ui"  # swagger-ui-dist 5.35.0


def _serve_docs(app: FastAPI) -> None:
    """`/docs`, the interactive API page, with Swagger UI's files from the package (no CDN:
    it works on a machine without internet)."""
    app.mount("/docs/assets", StaticFiles(directory=SWAGGER_UI), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="veo-batch API",
            swagger_js_url="/docs/assets/swagger-ui-bundle.js",
            swagger_css_url="/docs/assets/swagger-ui.css",
            swagger_favicon_url="/docs/assets/favicon-32x32.png",
            oauth2_redirect_url="/docs/oauth2-redirect",
        )

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    def oauth2_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()
