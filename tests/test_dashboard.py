"""The dashboard's pages over real HTTP (uvicorn on a local port), checked as HTML: login and
sessions, read-only tokens, CSRF, what pages show and never show, videos and images served only
from where the rows say, actions. (The browser tests are in test_dashboard_browser.py.)"""

from __future__ import annotations

import base64
import io
import itertools
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from PIL import Image
from sqlalchemy.engine import Engine

from tests.helpers import TOKEN, Served, photo, run_embedded
from veobatch.dashboard.sessions import Sessions
from veobatch.intake.readers import open_job_file
from veobatch.provider.mock import MockConfig, MockProvider
from veobatch.service import BatchService
from veobatch.settings import Settings
from veobatch.store.tables import Job

READ_TOKEN = "read-only-token-0123456789"
IMAGE = "https://img.example.com/mug.jpg"


@pytest.fixture
def shop(engine: Engine, tmp_path: Path) -> Path:
    """Batch `shop`: four rows over local photos, run against the mock with real clips and
    downloaded: two succeed, one fails, one is left pending by a pause."""
    for n in range(3):
        photo(tmp_path / "shop" / "photos" / f"p{n}.jpg", seed=n)
    (tmp_path / "shop" / "jobs.csv").write_text(
        "id,prompt,model,images,aspect_ratio\n"
        "a,a slow spin of the red mug,veo3.1,photos/p0.jpg,\n"
        "b,the blue bag opens,veo3.1,photos/p1.jpg,9:16\n"
        "c,[mock:fail] a broken one,veo3.1,photos/p2.jpg,\n"
    )
    service = BatchService(engine, Settings(data_dir=str(tmp_path / "data")))
    with open_job_file(str(tmp_path / "shop" / "jobs.csv")) as job_file:
        service.load(job_file, "shop")
    with MockProvider(MockConfig(api_key="mock-key", clips=True)) as mock:
        run_embedded(engine, mock, service.status("shop").id, download_dir=tmp_path / "videos")
    return tmp_path


@pytest.fixture
def site(engine: Engine, database_url: str, shop: Path) -> Iterator[Served]:
    with Served(
        engine,
        database_url,
        max_body=1024 * 1024,
        api_read_tokens=READ_TOKEN,
        download_dir=str(shop / "videos"),
        data_dir=str(shop / "data"),
    ) as served:
        yield served


@contextmanager
def logged_in(site: Served, token: str = TOKEN) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=site.url, timeout=30) as client:
        answer = client.post("/login", data={"token": token, "next": "/"})
        assert answer.status_code == 303
        yield client


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert found is not None, "the page has no form with a CSRF token"
    return found.group(1)


def test_pages_need_a_login_and_the_cookie_is_safe(site: Served) -> None:
    anonymous = httpx.get(f"{site.url}/ui/batches/shop", timeout=10)
    assert anonymous.status_code == 303
    assert anonymous.headers["location"] == "/login?next=%2Fui%2Fbatches%2Fshop"
    wrong = httpx.post(f"{site.url}/login", data={"token": "nope"}, timeout=10)
    assert wrong.status_code == 401
    assert "that is not one of this server" in wrong.text
    answer = httpx.post(
        f"{site.url}/login", data={"token": TOKEN, "next": "//evil.example/"}, timeout=10
    )
    assert answer.headers["location"] == "/"  # no open redirect
    cookie = answer.headers["set-cookie"]
    assert "httponly" in cookie.lower()
    assert "samesite=strict" in cookie.lower()
    assert TOKEN not in cookie  # a fingerprint of the token, signed: never the token
    with logged_in(site) as client:
        assert "shop" in client.get("/").text


def test_a_session_from_changed_tokens_or_a_forged_cookie_is_refused() -> None:
    sessions = Sessions([b"a" * 20], [b"r" * 20])
    cookie = sessions.login("a" * 20)
    assert cookie is not None
    viewer = sessions.viewer(cookie)
    assert viewer is not None
    assert viewer.can_act
    _kind, fingerprint, expires, nonce, signature = cookie.split(".")
    assert sessions.viewer(f"act.{fingerprint}.{int(expires) + 10}.{nonce}.{signature}") is None
    assert sessions.viewer(cookie, now=int(expires) + 1) is None  # expired
    assert Sessions([b"b" * 20], []).viewer(cookie) is None  # the tokens changed
    looker = sessions.viewer(sessions.login("r" * 20))
    assert looker is not None
    assert not looker.can_act


def test_the_pages_show_the_batch(site: Served) -> None:
    with logged_in(site) as client:
        batches = client.get("/").text
        assert 'href="/ui/batches/shop"' in batches
        page = client.get("/ui/batches/shop").text
        assert re.search(r'data-status="succeeded">succeeded <b>2</b>', page)
        assert re.search(r'data-status="failed">failed <b>1</b>', page)
        assert 'hx-get="/ui/batches/shop/charts" hx-trigger="load"' in page  # asked for next
        charts = client.get("/ui/batches/shop/charts").text
        assert "Top failure reasons" in charts
        assert "视频生成失败" in charts  # the provider's reason, as it came
        assert "Generation times" in charts
        assert charts.count('<svg class="chart"') == 2  # drawn, not escaped into text
        found = client.get("/ui/batches/shop", params={"q": "BLUE", "status": ""}).text
        assert "1 rows match" in found
        unknown = client.get("/ui/batches/shop", params={"status": "nope"})
        assert (unknown.status_code, "unknown status nope" in unknown.text) == (422, True)
        assert client.get("/ui/batches/shop", params={"kind": "nope"}).status_code == 422
        live = client.get("/ui/batches/shop/live").text
        assert live.startswith('\n<section id="live"') or '<section id="live"' in live
        row = client.get("/ui/batches/shop/rows/a").text
        assert "a slow spin of the red mug" in row
        assert row.count("<li>") >= 2  # the submission and the poll that ended it
        portrait = client.get("/ui/batches/shop/rows/b").text
        assert "<tr><th>aspect_ratio</th><td>9:16</td></tr>" in portrait
        gallery = client.get("/ui/batches/shop/gallery").text
        assert gallery.count('class="card"') == 2


def test_the_charts_have_axes_a_legend_and_a_title_per_bucket_that_match_the_rows(
    site: Served, engine: Engine
) -> None:
    """Sent and finished per 10 s in one chart: a legend, the y axis's top, clock times under
    the x axis, and over each bucket a title whose counts are the rows' own; the generation
    times with their buckets in seconds, the empty ones between, and each count on its bar."""
    now = datetime.now(UTC).replace(microsecond=0)
    taken = {"a": (now - timedelta(minutes=6), 40), "b": (now - timedelta(minutes=3), 100)}
    taken["c"] = (now - timedelta(minutes=3), 20)  # failed: finished, but no video
    with engine.begin() as conn:
        for ref, (sent, seconds) in taken.items():
            finished = sent + timedelta(seconds=seconds)
            conn.execute(
                sa.update(Job).where(Job.ref == ref).values(submitted_at=sent, finished_at=finished)
            )
    with logged_in(site) as client:
        charts = client.get("/ui/batches/shop/charts").text
    sent_chart = charts[charts.index('id="sent-chart"') : charts.index("</figure>")]
    assert "Rows sent and finished, per 10 s" in sent_chart
    assert re.search(
        r'class="key sent"></span> sent <span class="key done"></span> finished', sent_chart
    )
    first = datetime.fromtimestamp(
        int(min(s for s, _ in taken.values()).timestamp()) // 10 * 10, UTC
    )
    titles = re.findall(r"<title>([^<]*)</title>", sent_chart)
    assert len(titles) == sent_chart.count('<rect class="hit"')  # one per bucket, hovered
    assert 37 <= len(titles) <= 48  # from the first submission to now
    edges = [first + timedelta(seconds=10 * n) for n in range(len(titles) + 1)]
    expected = [
        f"{start:%H:%M:%S}–{end:%H:%M:%S} UTC: "
        f"{sum(start <= sent < end for sent, _ in taken.values())} sent, "
        f"{sum(start <= sent + timedelta(seconds=s) < end for sent, s in taken.values())} finished"
        for start, end in itertools.pairwise(edges)
    ]
    assert titles == expected
    assert "2 sent, 0 finished" in " ".join(titles)  # b and c, in the same 10 s
    beside = re.findall(r'<text class="axis" x="42"[^>]*>([^<]+)</text>', sent_chart)
    assert beside == ["2", "1", "0"]  # the y axis: its top (2 in a bucket), the middle, 0
    under = re.findall(r'<text class="axis" x="[\d.]+" y="211"[^>]*>([^<]+)</text>', sent_chart)
    assert under[0] == f"{first:%H:%M:%S}"
    assert under[-1] == f"{edges[-1]:%H:%M:%S}"
    assert 3 <= len(under) <= 7

    durations = charts[charts.index('id="generation-chart"') :]
    durations = durations[: durations.index("</figure>")]
    assert re.findall(r"<title>([^<]*)</title>", durations) == [
        "30–45 s: 1 video",  # a: 40 s
        "45–60 s: 0 videos",
        "60–75 s: 0 videos",
        "75–90 s: 0 videos",
        "90–105 s: 1 video",  # b: 100 s (c failed: no video, not counted)
    ]
    under = re.findall(r'<text class="axis" x="[\d.]+" y="211"[^>]*>([^<]+)</text>', durations)
    assert under == ["30 s", "45 s", "60 s", "75 s", "90 s", "105 s"]
    assert re.findall(r'<text class="count"[^>]*>([^<]+)</text>', durations) == ["1", "1"]


def test_no_page_shows_a_token_a_key_or_a_server_path(site: Served, shop: Path) -> None:
    with logged_in(site) as client:
        pages = [
            client.get(path).text
            for path in (
                "/",
                "/ui/batches/shop",
                "/ui/batches/shop/gallery",
                "/ui/batches/shop/rows/a",
                "/ui/batches/shop/rows/c",
                "/ui/batches/shop/live",
            )
        ]
    for page in pages:
        assert str(shop) not in page
        assert TOKEN not in page
        assert "mock-key" not in page


def test_videos_and_images_come_only_from_where_the_rows_say(
    site: Served, engine: Engine, shop: Path
) -> None:
    with logged_in(site) as client:
        video = client.get("/ui/batches/shop/rows/a/video")
        assert video.status_code == 200
        assert video.content[4:8] == b"ftyp"
        image = client.get("/ui/batches/shop/rows/a/images/0")
        assert image.headers["content-type"] == "image/jpeg"
        assert image.content == (shop / "shop" / "photos" / "p0.jpg").read_bytes()
        assert client.get("/ui/batches/shop/rows/a/images/5").status_code == 404
        with engine.begin() as conn:  # a row that points outside the download folder
            conn.execute(sa.update(Job).where(Job.ref == "b").values(video_path="/etc/passwd"))
        elsewhere = client.get("/ui/batches/shop/rows/b/video", follow_redirects=False)
        assert elsewhere.status_code == 307  # sent on to the provider's URL instead
        assert elsewhere.headers["location"].startswith("http://127.0.0.1:")


def test_a_read_only_token_looks_but_does_not_act(site: Served) -> None:
    with logged_in(site, READ_TOKEN) as client:
        page = client.get("/ui/batches/shop").text
        assert "read-only" in page
        assert page.count('name="csrf"') == 1  # no forms to act with: the logout's only
        refused = client.post("/ui/batches/shop/pause", data={"csrf": "x"})
        assert refused.status_code == 403  # as the API answers a read-only token
        assert "this token can look, not act" in refused.text
    api = {"Authorization": f"Bearer {READ_TOKEN}"}
    assert httpx.get(f"{site.url}/batches", headers=api).status_code == 200
    assert httpx.post(f"{site.url}/batches/shop/pause", headers=api).status_code == 403


def test_actions_need_the_forms_csrf_token(site: Served, engine: Engine) -> None:
    job = {"prompt": "p", "model": "veo3.1", "images": ["https://x.io/a.jpg"]}
    BatchService(engine, Settings()).add("live", [job])  # active: nothing sends it here
    with logged_in(site) as client:
        csrf = csrf_of(client.get("/ui/batches/live").text)
        stale = client.post("/ui/batches/live/pause", data={"csrf": "0" * 64})
        assert stale.status_code == 403
        assert "CSRF" in stale.text
        assert client.post("/ui/batches/live/pause", data={"csrf": csrf}).status_code == 303
        assert "paused in the dashboard" in client.get("/ui/batches/live").text


def test_a_conflict_is_a_batch_whose_state_forbids_the_action(site: Served, engine: Engine) -> None:
    """409 is the batch's state only: a malformed form is 422, a stale one 403."""
    job = {"prompt": "p", "model": "veo3.1", "images": ["https://x.io/a.jpg"]}
    service = BatchService(engine, Settings())
    service.add("gone", [job])
    service.cancel("gone")
    with logged_in(site) as client:
        csrf = csrf_of(client.get("/ui/batches/gone").text)
        refused = client.post("/ui/batches/gone/resume", data={"csrf": csrf})
        assert refused.status_code == 409
        assert "cancelled" in refused.text
        assert client.post("/ui/batches/gone/resume", data={}).status_code == 422  # no csrf
        odd = client.post("/ui/batches/shop/review", data={"csrf": csrf, "verdict": "maybe"})
        assert odd.status_code == 422
        stale = client.post("/ui/batches/gone/resume", data={"csrf": "0" * 64})
        assert stale.status_code == 403  # the form is checked before the batch


def test_review_in_the_gallery_then_rerun_the_rejected(site: Served, engine: Engine) -> None:
    with logged_in(site) as client:
        finished = client.get("/ui/batches/shop").text
        for action in ("pause", "resume", "cancel"):  # nothing to pause, resume or cancel
            assert f"/ui/batches/shop/{action}" not in finished
        assert 'id="who-sends"' not in finished
        csrf = csrf_of(client.get("/ui/batches/shop/gallery").text)
        marked = client.post(
            "/ui/batches/shop/review",
            data={"csrf": csrf, "verdict": "rejected", "ids": ["a", "b"]},
        )
        assert marked.status_code == 303
        assert (
            client.get("/ui/batches/shop/gallery", params={"review": "rejected"}).text.count(
                'class="card"'
            )
            == 2
        )
        form = {"csrf": csrf, "status": "succeeded", "review": "rejected"}
        asked = client.post("/ui/batches/shop/rerun", data=form)
        assert asked.status_code == 200
        assert "a new task pays again" in asked.text  # they were paid for: asked first
        done = client.post("/ui/batches/shop/rerun", data={**form, "confirmed": "true"})
        assert done.status_code == 303
        again = client.get("/ui/batches/shop").text  # active again: what sends the two rows
        assert "2 rows wait to be sent" in again
        assert "<code>veo-batch run --batch shop</code>" in again
        assert "/ui/batches/shop/pause" in again
    with engine.connect() as conn:
        statuses = {row.ref: row.status for row in conn.execute(sa.select(Job.ref, Job.status))}
    assert (statuses["a"], statuses["b"], statuses["c"]) == ("pending", "pending", "failed")


def test_a_job_file_uploaded_starts_a_batch(site: Served) -> None:
    with logged_in(site) as client:
        csrf = csrf_of(client.get("/").text)
        text = b"prompt,model,images\na fox,veo3.1,https://x.io/a.jpg\n"
        made = client.post(
            "/ui/new",
            data={"csrf": csrf, "name": "uploaded"},
            files={"file": ("jobs.csv", text, "text/csv")},
        )
        assert made.status_code == 303
        assert "uploaded" in client.get("/").text
        bad = client.post(
            "/ui/new",
            data={"csrf": csrf, "name": "bad"},
            files={"file": ("jobs.csv", b"prompt,model,images\na,veo9,x\n", "text/csv")},
        )
        assert "The job file was not loaded" in bad.text
        assert "unknown model" in bad.text
        assert "<tr><td>2</td><td>model</td>" in bad.text  # the row's line in the file


def test_an_image_given_as_a_data_uri_is_served_decoded(site: Served, engine: Engine) -> None:
    png = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(png, format="PNG")
    uri = "data:image/png;base64," + base64.b64encode(png.getvalue()).decode()
    BatchService(engine, Settings()).add(
        "inline", [{"id": "x", "prompt": "p", "model": "veo3.1", "images": [uri]}]
    )
    with logged_in(site) as client:
        answer = client.get("/ui/batches/inline/rows/x/images/0")
    assert answer.headers["content-type"] == "image/png"
    assert answer.content == png.getvalue()


def test_the_batches_page_shows_each_batch_at_work_with_its_pace(
    site: Served, engine: Engine
) -> None:
    """The rows that ended in the last minute are the pace; the ETA is the open rows at it."""
    service = BatchService(engine, Settings())
    rows = [{"id": f"r{n}", "prompt": "p", "model": "veo3.1", "images": [IMAGE]} for n in range(6)]
    service.add("later", rows)
    with engine.begin() as conn:  # batch `later` as it is mid-run: 4 rows ended just now
        later = service.status("later").id
        ended = sa.select(Job.id).where(Job.batch_id == later).order_by(Job.id).limit(4)
        conn.execute(
            sa.update(Job)
            .where(Job.id.in_(ended.scalar_subquery()))
            .values(status="succeeded", finished_at=sa.func.current_timestamp())
        )
    overview = {found.batch.name: found for found in service.overview()}
    assert overview["later"].per_minute == 4
    assert overview["later"].eta_seconds == pytest.approx(30.0)  # 2 open rows at 4 a minute
    with logged_in(site) as client:
        page = client.get("/").text
    row = re.search(r'<tr data-batch="later">.*?</tr>', page, re.S)
    assert row is not None
    assert "4 rows/min · ETA 0.5 min" in row.group(0)
    assert "2 pending · 4 succeeded" in row.group(0)


def test_the_batches_page_adds_up_the_batches_at_work_and_puts_paused_ones_first(
    site: Served, engine: Engine
) -> None:
    """A glance over every batch (Sidekiq's and Oban's first screens): batches at work, rows
    waiting, generating, the pace, failed rows; each paused batch's reason above the table;
    the batches at work first, the finished ones after them, newest first."""
    service = BatchService(engine, Settings())
    rows = [{"id": f"r{n}", "prompt": "p", "model": "veo3.1", "images": [IMAGE]} for n in range(5)]
    for name in ("done-a", "stuck", "done-b", "going"):
        service.add(name, rows)
    with engine.begin() as conn:
        for name, status in (("done-a", "succeeded"), ("done-b", "failed")):
            conn.execute(
                sa.update(Job)
                .where(Job.batch_id == service.status(name).id)
                .values(status=status, finished_at=sa.func.current_timestamp())
            )
        first_two = (
            sa.select(Job.id)
            .where(Job.batch_id == service.status("going").id)
            .order_by(Job.id)
            .limit(2)
        )
        conn.execute(
            sa.update(Job).where(Job.id.in_(first_two.scalar_subquery())).values(status="submitted")
        )
    service.finish_batches()
    service.pause("stuck", "the budget of USD 2.00 is spent")
    with logged_in(site) as client:
        page = client.get("/").text
    tiles = {
        label.strip(): number
        for number, label in re.findall(r"<div[^>]*><b>([^<]+)</b><span>([^<]+)</span>", page)
    }
    # `shop`, the fixture's batch, has finished: two videos and one row failed.
    assert tiles["batches at work"] == "2"
    assert tiles["rows waiting to be sent"] == "8"  # 5 (stuck) + 3 (going)
    assert tiles["generating"] == "2"
    assert tiles["failed"] == "6"  # 5 (done-b) + 1 (shop)
    callout = re.search(r'<p class="attention" data-paused="stuck">.*?</p>', page, re.S)
    assert callout is not None
    assert "the budget of USD 2.00 is spent" in callout.group(0)
    assert page.index('data-paused="stuck"') < page.index("<table>")
    order = re.findall(r'<tr data-batch="([^"]+)">', page)
    assert order == ["stuck", "going", "done-b", "done-a", "shop"]


def test_a_logout_ends_the_session_on_the_server_and_needs_its_csrf_token(site: Served) -> None:
    with logged_in(site) as client:
        page = client.get("/").text
        cookie = client.cookies["veo_session"]
        forged = client.post("/logout", data={"csrf": "0" * 64})  # another site's form
        assert forged.status_code == 403  # refused, as every stale form is
        assert client.get("/ui/batches/shop").status_code == 200  # still logged in
        assert client.post("/logout", data={"csrf": csrf_of(page)}).status_code == 303
    with httpx.Client(base_url=site.url, timeout=30) as replay:  # the old cookie, copied
        replay.cookies.set("veo_session", cookie)
        assert replay.get("/ui/batches/shop").status_code == 303  # to the login form
        resumed = replay.post("/ui/batches/shop/resume", data={"csrf": csrf_of(page)})
        assert resumed.status_code in (303, 401, 403)
        assert "/login" in resumed.headers.get("location", "/login")


def test_every_answer_carries_the_security_headers(site: Served) -> None:
    with logged_in(site) as client:
        for path in ("/", "/ui/batches/shop", "/ui/static/pages.js", "/batches", "/nope"):
            answer = client.get(path)
            policy = answer.headers["content-security-policy"]
            assert "frame-ancestors 'none'" in policy, path
            assert "script-src 'self';" in policy, path  # no inline script
            assert answer.headers["x-frame-options"] == "DENY"
            assert answer.headers["x-content-type-options"] == "nosniff"
            assert answer.headers["referrer-policy"] == "same-origin"
        page = client.get("/ui/batches/shop").text
    assert "onsubmit=" not in page  # the confirmation is the shipped script's
    assert not re.search(r"<script>(?!</script>)", page)  # no inline script in a page


def test_a_row_whose_id_holds_a_slash_has_its_page(site: Served, engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(sa.update(Job).where(Job.ref == "a").values(ref="sku/42"))
    with logged_in(site) as client:
        page = client.get("/ui/batches/shop/rows/sku%2F42")
        assert page.status_code == 200, page.text
        assert "sku/42" in page.text
        assert client.get("/ui/batches/shop/rows/sku/42/images/0").status_code == 200


def test_a_file_that_is_not_a_video_is_never_served_as_one(site: Served, engine: Engine) -> None:
    """A download kept before the checks (an HTML page saved as ID.mp4) is not served."""
    with engine.connect() as conn:
        path = conn.execute(sa.select(Job.video_path).where(Job.ref == "a")).scalar_one()
    assert path is not None
    Path(path).write_bytes(b"<!doctype html><script>alert(1)</script>")
    with logged_in(site) as client:
        answer = client.get("/ui/batches/shop/rows/a/video")
    assert answer.status_code == 404
    assert b"<script>" not in answer.content
    assert answer.headers["x-content-type-options"] == "nosniff"


def test_a_relays_control_and_bidi_characters_are_shown_escaped_in_pages(
    site: Served, engine: Engine
) -> None:
    reason = "\x1b[2J\x1b]0;pwned\x07 failed: spring\u202egnp.exe"
    with engine.begin() as conn:
        conn.execute(sa.update(Job).where(Job.ref == "a").values(error=reason))
    with logged_in(site) as client:
        for path in ("/ui/batches/shop/rows/a", "/ui/batches/shop/charts"):
            page = client.get(path).text
            assert "\x1b" not in page, path
            assert "\u202e" not in page, path
        assert "\\x1b[2J" in client.get("/ui/batches/shop/rows/a").text


def test_serve_plays_the_videos_run_saved_without_being_told_where(
    engine: Engine, database_url: str, shop: Path
) -> None:
    """`run --download videos` then `serve` with no VEO_DOWNLOAD_DIR: the row knows where its
    video was saved, and the page plays it from there; a file that is gone is said so, and a
    row that points at a file of another shape is never served."""
    with (
        Served(engine, database_url, data_dir=str(shop / "data")) as site,
        logged_in(site) as client,
    ):
        video = client.get("/ui/batches/shop/rows/a/video", follow_redirects=False)
        assert video.status_code == 200
        assert video.content[4:8] == b"ftyp"
        assert '<td id="on-disk">yes</td>' in client.get("/ui/batches/shop/rows/a").text
        (shop / "videos" / "shop" / "a.mp4").unlink()
        gone = client.get("/ui/batches/shop/rows/a").text
        assert "not where it was saved" in gone
        assert str(shop) not in gone  # no server path on a page
        with engine.begin() as conn:  # a path not of this row's shape: the provider's link
            conn.execute(sa.update(Job).where(Job.ref == "b").values(video_path="/etc/passwd"))
        elsewhere = client.get("/ui/batches/shop/rows/b/video", follow_redirects=False)
        assert elsewhere.status_code == 307


def test_the_accounts_page_pauses_an_account_and_a_batch_shows_its_rows_per_account(
    engine: Engine, database_url: str, shop: Path
) -> None:
    with engine.begin() as conn:  # the shop's rows, sent through two accounts
        ids = list(conn.execute(sa.select(Job.id).order_by(Job.id)).scalars())
        conn.execute(sa.update(Job).where(Job.id == ids[0]).values(account="relay-a"))
        conn.execute(sa.update(Job).where(Job.id.in_(ids[1:])).values(account="relay-b"))
    with (
        Served(engine, database_url, api_base="https://relay.example") as served,
        logged_in(served) as client,
    ):
        page = client.get("/ui/accounts").text
        assert "relay.example" in page
        assert "relay-a" in page  # removed from the settings, its rows still there
        assert "no longer in VEO_ACCOUNTS" in page
        paused = client.post(
            "/ui/accounts/default/pause", data={"csrf": csrf_of(page)}, follow_redirects=True
        )
        assert "paused in the dashboard" in paused.text
        assert 'action="/ui/accounts/default/resume"' in paused.text
        batch = client.get("/ui/batches/shop").text
    table = batch.split('id="per-account"')[1].split("</table>")[0]
    assert "relay-a" in table
    assert "relay-b" in table
