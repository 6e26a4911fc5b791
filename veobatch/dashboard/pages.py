# No `from __future__ import annotations`: FastAPI reads the routes' annotations at runtime.
"""The dashboard's routes: pages (GET) and actions (POST, each with its CSRF token).

    /                                  batches: state, a bar of rows by status, pace, spend
    /ui/batches/NAME                   a batch: counts, filters, paged rows, failures, charts
    /ui/batches/NAME/gallery           its finished videos in a grid (each larger, beside its
                                       images, on a click), to review and rerun
    /ui/batches/NAME/rows/REF          a row: fields, images, video, its whole history
    /login, /logout                    the session cookie (see `sessions`)

Pages read through the service only, a page of rows at a time. A video is served from the
download folder (never another path) or sent on to the provider's URL; an image is one the
row names. No page shows a token, a provider key or a server path.
"""

import hmac
import math
import shlex
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Final
from urllib.parse import urlencode

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from markupsafe import Markup

from veobatch.dashboard import charts
from veobatch.dashboard.glance import glance
from veobatch.dashboard.sessions import COOKIE, LIFETIME, Sessions, Viewer
from veobatch.errors import (
    InvalidJobs,
    NotFoundError,
    UnconfirmedRerun,
    VeoBatchError,
)
from veobatch.images.formats import FORMATS, sniff
from veobatch.intake.batch_name import check_batch_name
from veobatch.lifecycle.video_files import video_container
from veobatch.pricing import money
from veobatch.service import BatchService
from veobatch.states import STATUS_ORDER, ErrorKind, JobStatus, Review
from veobatch.visible import visible

ROWS_PER_PAGE: Final = 50
VIDEOS_PER_PAGE: Final = 24
HERE: Final = Path(__file__).parent
DASHBOARD_STATIC: Final = HERE / "static"
templates = Jinja2Templates(directory=HERE / "templates")
# Every value a page shows: control, escape and bidi characters (a relay's failure reason, a
# name) shown as their escapes, before the HTML escaping. Markup (a macro's own HTML, such
# as a chart's SVG) is left as it is: made a plain text again, it was escaped into the page.
templates.env.finalize = lambda value: (
    visible(value) if isinstance(value, str) and not isinstance(value, Markup) else value
)
templates.env.globals.update(
    statuses=STATUS_ORDER,
    kinds=[k.value for k in ErrorKind],
    clock=lambda: datetime.now(UTC),
)


def _replace_page(query: Any, page: int) -> str:
    """The page's query string with another page number (the filters kept)."""
    kept = [(key, value) for key, value in query.multi_items() if key != "page" and value]
    return urlencode([*kept, ("page", page)])


templates.env.filters["replace_page"] = _replace_page
templates.env.filters["shell_quote"] = shlex.quote
templates.env.filters["duration"] = charts.duration
router = APIRouter(include_in_schema=False)


class LoginNeeded(Exception):
    """The page needs a session: the answer is the login form (not an error of ours: outside
    VeoBatchError's tree on purpose)."""


class NotAllowed(VeoBatchError):
    """An action this session may not take: a read-only token, or a stale form (its CSRF token
    does not match): 403, as the API answers a read-only token."""


def error_page(request: Request, status: int, message: str) -> HTMLResponse:
    """What went wrong, as a page (the API answers the same errors as JSON)."""
    return templates.TemplateResponse(
        request, "error.html", {"status": status, "message": message}, status_code=status
    )


def _service(request: Request) -> BatchService:
    held: BatchService = request.app.state.service
    return held


def _viewer(request: Request) -> Viewer:
    sessions: Sessions = request.app.state.sessions
    found = sessions.viewer(request.cookies.get(COOKIE))
    if found is None:
        raise LoginNeeded
    return found


def _acting(request: Request, csrf: str) -> Viewer:
    """The viewer of an action: logged in with a token that may act, with the form's CSRF
    token."""
    viewer = _viewer(request)
    if not viewer.can_act:
        raise NotAllowed("this token can look, not act (VEO_API_READ_TOKENS)")
    if not hmac.compare_digest(csrf, viewer.csrf):
        raise NotAllowed("the form is out of date (its CSRF token does not match): reload it")
    return viewer


def _page(request: Request, template: str, **context: Any) -> HTMLResponse:
    service = _service(request)
    context.setdefault("viewer", _viewer(request))
    context.update(
        request=request,
        currency=service.settings.currency,
        money=lambda amount: money(amount, service.settings.currency),
    )
    return templates.TemplateResponse(request, template, context)


def _known(given: list[str] | None, allowed: Any, what: str) -> list[str]:
    """The filter's values (a form sends "" for "any"), each one of `allowed`."""
    chosen = [value for value in given or () if value]
    unknown = [value for value in chosen if value not in allowed]
    if unknown:
        raise VeoBatchError(f"unknown {what} {', '.join(unknown)[:80]}")  # 422, a value refused
    return chosen


def _back(path: str, **query: Any) -> RedirectResponse:
    given = {k: v for k, v in query.items() if v not in (None, "", [])}
    return RedirectResponse(path + ("?" + urlencode(given, doseq=True) if given else ""), 303)


# ---------------------------------------------------------------------------------- login


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "/") -> HTMLResponse:
    return templates.TemplateResponse(
        request, "login.html", {"next": _local(next), "problem": None}
    )


@router.post("/login", response_class=HTMLResponse)
def login(
    request: Request,
    token: Annotated[str, Form(max_length=500)],
    next: Annotated[str, Form()] = "/",
) -> Response:
    sessions: Sessions = request.app.state.sessions
    cookie = sessions.login(token)
    if cookie is None:
        return templates.TemplateResponse(
            request,
            "login.html",
            {"next": _local(next), "problem": "that is not one of this server's tokens"},
            status_code=401,
        )
    answer = RedirectResponse(_local(next), 303)
    answer.set_cookie(
        COOKIE,
        cookie,
        max_age=LIFETIME,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return answer


@router.post("/logout")
def logout(request: Request, csrf: Annotated[str, Form()] = "") -> Response:
    """End the session (a CSRF token is required: another site cannot log a viewer out)."""
    sessions: Sessions = request.app.state.sessions
    viewer = sessions.viewer(request.cookies.get(COOKIE))
    if viewer is not None and not hmac.compare_digest(csrf, viewer.csrf):
        raise NotAllowed("the form is out of date (its CSRF token does not match): reload it")
    sessions.end(request.cookies.get(COOKIE))
    answer = RedirectResponse("/login", 303)
    answer.delete_cookie(COOKIE)
    return answer


def _local(path: str) -> str:
    """Where to go after the login: a path of this server only (no open redirect)."""
    return path if path.startswith("/") and not path.startswith(("//", "/\\")) else "/"


# ---------------------------------------------------------------------------------- pages


@router.get("/", response_class=HTMLResponse)
def batches(request: Request) -> HTMLResponse:
    return _page(request, "batches.html", glance=glance(_service(request).overview()))


@router.get("/ui/live", response_class=HTMLResponse)
def batches_live(request: Request) -> HTMLResponse:
    return _page(request, "batches_live.html", glance=glance(_service(request).overview()))


@router.get("/ui/batches/{name}", response_class=HTMLResponse)
def batch(
    request: Request,
    name: str,
    status: Annotated[list[str] | None, Query(max_length=8)] = None,
    kind: Annotated[list[str] | None, Query(max_length=12)] = None,
    model: Annotated[str | None, Query(max_length=64)] = None,
    review: Annotated[str | None, Query(pattern="^(approved|rejected|none)?$")] = None,
    q: Annotated[str | None, Query(max_length=200)] = None,
    page: Annotated[int, Query(ge=1, le=10**7)] = 1,
) -> HTMLResponse:
    service = _service(request)
    chosen: dict[str, Any] = {
        "statuses": _known(status, STATUS_ORDER, "status"),
        "kinds": _known(kind, [k.value for k in ErrorKind], "error kind"),
        "models": [model] if model else [],
        "reviews": [review] if review else [],
        "text": q or None,
    }
    found = service.activity(name, charts=False)  # the charts come in their own request
    total = service.count(name, **chosen)
    rows = service.jobs(name, limit=ROWS_PER_PAGE, offset=(page - 1) * ROWS_PER_PAGE, **chosen)
    return _page(
        request,
        "batch.html",
        batch=found.batch,
        activity=found,
        rows=rows,
        per_account=service.batch_accounts(name),
        stranded=service.stranded(name),
        total=total,
        page=page,
        pages=max(1, math.ceil(total / ROWS_PER_PAGE)),
        chosen={
            "status": chosen["statuses"],
            "kind": chosen["kinds"],
            "model": model or "",
            "review": review or "",
            "q": q or "",
        },
    )


@router.get("/ui/accounts", response_class=HTMLResponse)
def accounts(request: Request) -> HTMLResponse:
    return _page(request, "accounts.html", accounts=_service(request).accounts())


@router.post("/ui/accounts/{name}/pause")
def pause_account(request: Request, name: str, csrf: Annotated[str, Form()]) -> Response:
    _acting(request, csrf)
    _service(request).pause_account(name, "paused in the dashboard")
    return _back("/ui/accounts")


@router.post("/ui/accounts/{name}/resume")
def resume_account(request: Request, name: str, csrf: Annotated[str, Form()]) -> Response:
    _acting(request, csrf)
    _service(request).resume_account(name)
    return _back("/ui/accounts")


@router.get("/ui/batches/{name}/live", response_class=HTMLResponse)
def batch_live(request: Request, name: str) -> HTMLResponse:
    """The counts and the pace, polled every 2 s while the page is visible."""
    service = _service(request)
    found = service.activity(name, charts=False)
    return _page(request, "batch_live.html", batch=found.batch, activity=found)


@router.get("/ui/batches/{name}/charts", response_class=HTMLResponse)
def batch_charts(request: Request, name: str) -> HTMLResponse:
    """The charts and the failure reasons, polled every 30 s (they cost more)."""
    found = _service(request).activity(name)
    return _page(
        request,
        "batch_charts.html",
        batch=found.batch,
        activity=found,
        sent_chart=charts.activity_chart(found.series),
        generation_chart=charts.generation_chart(found.generation),
    )


@router.get("/ui/batches/{name}/gallery", response_class=HTMLResponse)
def gallery(
    request: Request,
    name: str,
    review: Annotated[str | None, Query(pattern="^(approved|rejected|none)?$")] = None,
    page: Annotated[int, Query(ge=1, le=10**7)] = 1,
) -> HTMLResponse:
    service = _service(request)
    chosen: dict[str, Any] = {
        "statuses": [JobStatus.SUCCEEDED.value],
        "reviews": [review] if review else [],
    }
    total = service.count(name, **chosen)
    rows = service.jobs(name, limit=VIDEOS_PER_PAGE, offset=(page - 1) * VIDEOS_PER_PAGE, **chosen)
    return _page(
        request,
        "gallery.html",
        batch=service.status(name, errors=False),
        rows=rows,
        total=total,
        page=page,
        pages=max(1, math.ceil(total / VIDEOS_PER_PAGE)),
        review=review or "",
    )


@router.get("/ui/batches/{name}/rows/{ref:path}/video")
def video(request: Request, name: str, ref: str) -> Response:
    """The row's video: the downloaded file if it is in the download folder, else the
    provider's URL."""
    _viewer(request)
    service = _service(request)
    found = service.video_file(name, ref)
    if found is not None:
        with open(found, "rb") as file:  # only a video is served as one (an older download
            kind = video_container(file.read(16))  # was not checked as it came)
        if kind is None:
            raise NotFoundError(f"row {ref!r}'s file is not a video")
        return FileResponse(found, media_type="video/webm" if kind == "webm" else "video/mp4")
    url = service.job(name, ref).get("video_url")
    if isinstance(url, str) and url.startswith(("https://", "http://")):
        return RedirectResponse(url, 307)
    raise NotFoundError(f"row {ref!r} has no video yet")


@router.get("/ui/batches/{name}/rows/{ref:path}/images/{index}")
def image(request: Request, name: str, ref: str, index: int) -> Response:
    """Image `index` of the row, as the row names it: a link is followed, a data: URI or a
    checked file is served."""
    _viewer(request)
    service = _service(request)
    entry = service.image_entry(name, ref, index)
    if isinstance(entry, str) and entry.startswith(("https://", "http://")):
        return RedirectResponse(entry, 307)
    data = service.image_bytes(name, ref, index)
    kind = sniff(data[:16])
    if kind is None:
        raise NotFoundError(f"image {index} of row {ref!r} is not an image")
    return Response(data, media_type=FORMATS[kind][0], headers={"Cache-Control": "max-age=3600"})


# ---------------------------------------------------------------------------------- actions


# (After the video and image routes: a row id may hold "/", and the page takes the rest.)
@router.get("/ui/batches/{name}/rows/{ref:path}", response_class=HTMLResponse)
def row(request: Request, name: str, ref: str) -> HTMLResponse:
    service = _service(request)
    return _page(
        request,
        "row.html",
        batch=service.status(name, errors=False),
        row=service.job(name, ref),
        on_disk=service.video_file(name, ref) is not None,
    )


@router.post("/ui/batches/{name}/pause")
def pause(request: Request, name: str, csrf: Annotated[str, Form()]) -> Response:
    _acting(request, csrf)
    _service(request).pause(name, "paused in the dashboard")
    return _back(f"/ui/batches/{name}")


@router.post("/ui/batches/{name}/resume")
def resume(request: Request, name: str, csrf: Annotated[str, Form()]) -> Response:
    _acting(request, csrf)
    _service(request).resume(name)
    return _back(f"/ui/batches/{name}")


@router.post("/ui/batches/{name}/cancel")
def cancel(request: Request, name: str, csrf: Annotated[str, Form()]) -> Response:
    _acting(request, csrf)
    _service(request).cancel(name)
    return _back(f"/ui/batches/{name}")


@router.post("/ui/batches/{name}/review")
def review(
    request: Request,
    name: str,
    csrf: Annotated[str, Form()],
    verdict: Annotated[str, Form(pattern="^(approved|rejected|none)$")],
    ids: Annotated[list[str] | None, Form(max_length=200)] = None,
    back: Annotated[str, Form()] = "",
) -> Response:
    _acting(request, csrf)
    if ids:
        _service(request).review(name, ids, None if verdict == "none" else verdict)
    return _back(_local(back) if back else f"/ui/batches/{name}/gallery")


@router.post("/ui/batches/{name}/rerun", response_class=HTMLResponse)
def rerun(
    request: Request,
    name: str,
    csrf: Annotated[str, Form()],
    status: Annotated[list[JobStatus] | None, Form()] = None,
    kind: Annotated[list[ErrorKind] | None, Form()] = None,
    ids: Annotated[list[str] | None, Form(max_length=200)] = None,
    review: Annotated[list[Review] | None, Form()] = None,
    confirmed: Annotated[bool, Form()] = False,
) -> Response:
    """Rows back to work; when some have (or may have) a paid task, a page asks first and
    says what sending them again costs."""
    viewer = _acting(request, csrf)
    service = _service(request)
    chosen = {
        "statuses": [s.value for s in status or [JobStatus.FAILED]],
        "kinds": [k.value for k in kind or ()],
        "refs": ids or [],
        "reviews": [r.value for r in review or ()],
    }
    try:
        service.rerun(
            name,
            chosen["statuses"],
            chosen["kinds"],
            refs=chosen["refs"],
            reviews=chosen["reviews"],
            confirm_paid=confirmed,
        )
    except UnconfirmedRerun as paid:  # nothing changed: a page asks first
        return _page(
            request,
            "confirm_rerun.html",
            batch=service.status(name, errors=False),
            look=paid,
            chosen=chosen,
            viewer=viewer,
        )
    return _back(f"/ui/batches/{name}")


@router.post("/ui/new", response_class=HTMLResponse)
def new_batch(
    request: Request,
    csrf: Annotated[str, Form()],
    name: Annotated[str, Form(max_length=200)],
    file: Annotated[UploadFile, File()],
) -> Response:
    """Start a batch from an uploaded job file (or a .zip of one and its images)."""
    _acting(request, csrf)
    service = _service(request)
    check_batch_name(name)
    try:
        service.upload(file.filename or "upload", file.file.read(), name)
    except InvalidJobs as exc:
        return _page(request, "problems.html", problems=exc.problems, detail=exc.detail)
    return _back(f"/ui/batches/{name}")
