"""The dashboard in a real browser: Chromium from the distribution (`/usr/bin/chromium`, which
`.ci/run` installs), driven by Playwright, against a real `veo-batch serve` process on a local
port and a batch run against the mock provider (with real video clips) while the page is open.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tests.conftest import service_missing
from tests.helpers import TOKEN, photo, run_embedded, veo_batch_server
from veobatch.intake.readers import open_job_file
from veobatch.provider.mock import MockConfig, MockProvider
from veobatch.service import BatchService
from veobatch.settings import Settings
from veobatch.store import database
from veobatch.store.tables import Job

CHROMIUM = os.environ.get("VEO_TEST_CHROMIUM", "/usr/bin/chromium")
# What Chromium needs here: no sandbox as root, and none of the background connections a
# closed network refuses.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright  # noqa: PLC0415
    except ImportError:
        service_missing("Playwright for Python is not installed")
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        service_missing(f"no Chromium at {CHROMIUM} (apt install chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield launched
        launched.close()


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[str, Engine, Path]]:
    """`veo-batch serve` on a SQLite file, with a batch of six photos loaded (not yet run): a
    row each, r2 with a second one (its last frame)."""
    url = f"sqlite:///{tmp_path / 'veo-batch.db'}"
    engine = database.open_database(url, migrate=True)
    for n in range(6):
        photo(tmp_path / "shop" / "photos" / f"p{n}.jpg", seed=n * 40)
    lines = [f"r{n},product {n} turns slowly,veo3.1,photos/p{n}.jpg" for n in range(6)]
    lines[2] += "|photos/p5.jpg"
    (tmp_path / "shop" / "jobs.csv").write_text(
        "id,prompt,model,images\n" + "\n".join(lines) + "\n"
    )
    service = BatchService(engine, Settings(data_dir=str(tmp_path / "data")))
    with open_job_file(str(tmp_path / "shop" / "jobs.csv")) as job_file:
        service.load(job_file, "shop")
    env = {
        **os.environ,
        "VEO_DATABASE_URL": url,
        "VEO_API_TOKENS": TOKEN,
        "VEO_DOWNLOAD_DIR": str(tmp_path / "videos"),
        "VEO_DATA_DIR": str(tmp_path / "data"),
    }
    try:
        with veo_batch_server(["serve"], "/openapi.json", env) as base:
            yield base, engine, tmp_path
    finally:
        engine.dispose()


def watched_page(browser: Any) -> tuple[Any, list[str]]:
    """A new page, and the problems it meets as they come: script errors in the console or
    uncaught, and requests that failed (4xx, 5xx)."""
    page = browser.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on(
        "response",
        lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None,
    )
    return page, problems


def test_watch_filter_open_play_reject_and_rerun(
    browser: Any, site: tuple[str, Engine, Path]
) -> None:
    base, engine, folder = site
    page, problems = watched_page(browser)

    page.goto(f"{base}/ui/batches/shop")
    assert "/login" in page.url  # a login first
    page.fill("input[name=token]", TOKEN)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/ui/batches/shop")
    assert page.text_content("#counts").count("pending") == 1

    # The batch runs while the page is open: its counts change without a reload.
    with MockProvider(MockConfig(api_key="mock-key", clips=True, task_seconds=1.0)) as mock:
        batch = BatchService(engine, Settings()).status("shop").id
        runner = threading.Thread(
            target=run_embedded,
            args=(engine, mock, batch),
            kwargs={"download_dir": folder / "videos"},
        )
        runner.start()
        page.wait_for_selector('#counts [data-status="succeeded"]', timeout=60_000)
        # (Polled by Playwright's own matcher: the page's policy forbids eval of a string.)
        from playwright.sync_api import expect  # noqa: PLC0415 - as the fixture imports it

        succeeded = page.locator('#counts [data-status="succeeded"] b')
        expect(succeeded).to_have_text("6", timeout=60_000)
        runner.join()
    assert page.url == f"{base}/ui/batches/shop"  # never reloaded
    assert page.is_visible("#state")

    page.fill("input[name=q]", "product 3")
    page.click("#filters button")
    page.wait_for_selector("text=1 rows match")
    page.click("#rows a:text('r3')")
    page.wait_for_selector("#history li")
    assert "submit" in page.text_content("#history")

    page.goto(f"{base}/ui/batches/shop/gallery")
    video = page.locator(".card video").first
    playable = video.evaluate(
        """v => new Promise((done, fail) => {
            v.addEventListener('canplay', () => done(v.readyState), {once: true});
            v.addEventListener('error', () => fail(new Error('video error')), {once: true});
            v.preload = 'auto'; v.load();
        })"""
    )
    assert playable >= 3  # HAVE_FUTURE_DATA: it plays
    page.check('.card[data-id="r1"] input[name=ids]')
    page.check('.card[data-id="r4"] input[name=ids]')
    page.click("button[value=rejected]")
    page.wait_for_selector('.card[data-id="r1"] .tag.rejected')
    assert page.locator(".tag.rejected").count() == 2
    page.click("text=Rerun the rejected videos")
    page.wait_for_selector("text=a new task pays again")  # they were paid for: asked first
    page.click("text=Yes, send them again")
    page.wait_for_url(f"{base}/ui/batches/shop")
    with engine.connect() as conn:
        pending = set(conn.execute(sa.select(Job.ref).where(Job.status == "pending")).scalars())
    assert pending == {"r1", "r4"}
    assert problems == [], problems
    page.close()


def test_another_local_page_cannot_frame_the_dashboard(
    browser: Any, site: tuple[str, Engine, Path]
) -> None:
    """A page of another local port frames the dashboard (clickjacking): the browser refuses
    to show it (`frame-ancestors 'none'`), and the pages run with no CSP complaint."""
    base, _engine, _folder = site
    page = browser.new_page()
    violations: list[str] = []
    page.on("console", lambda m: violations.append(m.text) if m.type == "error" else None)
    page.goto(f"{base}/login")
    assert violations == [], violations  # the page itself runs under its policy
    page.set_content(f'<iframe id="framed" src="{base}/login" width="600" height="400"></iframe>')
    page.wait_for_function("() => document.getElementById('framed') !== null", timeout=10_000)
    framed = page.frame_locator("#framed")
    assert framed.locator("input[name=token]").count() == 0  # nothing of ours shown
    assert any("frame-ancestors" in text for text in violations), violations
    page.close()


def test_the_pages_follow_the_systems_dark_mode(
    browser: Any, site: tuple[str, Engine, Path]
) -> None:
    """Dark when the system is (prefers-color-scheme), light otherwise: nothing to choose."""
    base, _engine, _folder = site
    seen = {}
    for scheme in ("light", "dark"):
        context = browser.new_context(color_scheme=scheme)
        page = context.new_page()
        page.goto(f"{base}/login")
        seen[scheme] = page.evaluate(
            "() => [getComputedStyle(document.body).backgroundColor,"
            " getComputedStyle(document.body).color]"
        )
        context.close()
    assert seen["light"] == ["rgb(248, 249, 251)", "rgb(29, 36, 48)"]
    assert seen["dark"] == ["rgb(18, 22, 28)", "rgb(230, 232, 236)"]


def test_the_gallery_is_judged_from_the_keyboard(
    browser: Any, site: tuple[str, Engine, Path]
) -> None:
    """j moves to a video, r rejects it alone, the page comes back with the next one in focus,
    a approves that one: two verdicts, no mouse."""
    base, engine, _folder = site
    with engine.begin() as conn:  # the six rows done, as a run would leave them
        conn.execute(sa.update(Job).values(status="succeeded", video_url="https://v.example/x"))
    page = browser.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.goto(f"{base}/login?next=/ui/batches/shop/gallery")
    page.fill("input[name=token]", TOKEN)
    page.click("button[type=submit]")
    page.wait_for_selector(".card[data-id]")
    focused = ".card[data-id]:focus"
    page.keyboard.press("j")
    assert page.get_attribute(focused, "data-id") == "r0"
    page.keyboard.press("r")
    page.wait_for_selector('.card[data-id="r0"] .tag.rejected')
    assert page.get_attribute(focused, "data-id") == "r1"  # the next one, in focus
    page.keyboard.press("a")
    page.wait_for_selector('.card[data-id="r1"] .tag.approved')
    with engine.connect() as conn:
        reviews = {row.ref: row.review for row in conn.execute(sa.select(Job.ref, Job.review))}
    assert reviews == {"r0": "rejected", "r1": "approved", **{f"r{n}": None for n in range(2, 6)}}
    assert problems == [], problems
    page.close()


def gallery_after_a_run(browser: Any, site: tuple[str, Engine, Path]) -> tuple[Any, list[str]]:
    """The batch run against the mock (real clips, downloaded), then its gallery open in a
    page logged in; the page's script errors and failed requests gathered as they come."""
    base, engine, folder = site
    with MockProvider(MockConfig(api_key="mock-key", clips=True)) as mock:
        batch = BatchService(engine, Settings()).status("shop").id
        run_embedded(engine, mock, batch, download_dir=folder / "videos")
    page, problems = watched_page(browser)
    page.goto(f"{base}/login?next=/ui/batches/shop/gallery")
    page.fill("input[name=token]", TOKEN)
    page.click("button[type=submit]")
    page.wait_for_selector(".card[data-id]")
    return page, problems


def test_a_click_on_a_video_shows_it_larger_beside_its_images(
    browser: Any, site: tuple[str, Engine, Path]
) -> None:
    """A click on a card's video shows it larger: the row's images (both of r2's) beside its
    video, which plays, with controls, its prompt, its link and its review; Escape closes it
    and stops it, and the card is in focus again."""
    from playwright.sync_api import expect  # noqa: PLC0415 - as the fixture imports it

    page, problems = gallery_after_a_run(browser, site)
    large = page.locator("#lightbox")
    expect(large).to_be_hidden()
    page.click('.card[data-id="r2"] video')
    expect(large).to_be_visible()
    expect(large).to_have_attribute("data-id", "r2")
    images = large.locator(".stage img")
    expect(images).to_have_count(2)
    row = "/ui/batches/shop/rows/r2"
    assert [images.nth(n).get_attribute("src") for n in range(2)] == [
        f"{row}/images/0",
        f"{row}/images/1",
    ]
    for n in range(2):  # both loaded, larger than the card's one
        width = images.nth(n).evaluate(
            """i => i.complete ? i.naturalWidth
                : new Promise(done => i.addEventListener('load', () => done(i.naturalWidth)))"""
        )
        assert width == 1280
        assert images.nth(n).bounding_box()["width"] > 260
    video = large.locator("video")
    expect(video).to_have_attribute("src", f"{row}/video")
    assert video.evaluate("v => v.controls")
    assert video.bounding_box()["width"] > 600
    played = video.evaluate(
        """v => new Promise((done, fail) => {
            const seen = () => { if (!v.paused && v.currentTime > 0) { done(v.currentTime); } };
            v.addEventListener('timeupdate', seen);
            v.addEventListener('error', () => fail(new Error('video error')), {once: true});
            setTimeout(() => fail(new Error('not playing after 20 s')), 20000);
            seen();
        })"""
    )
    assert played > 0  # it plays, no click needed
    expect(large.locator(".said")).to_have_text("product 2 turns slowly")
    expect(large.locator(".about a")).to_have_attribute("href", row)
    expect(large.locator(".about .tag")).to_have_text("not reviewed")
    page.keyboard.press("Escape")
    expect(large).to_be_hidden()
    expect(page.locator('.card[data-id="r2"]')).to_be_focused()  # where the grid was left
    # Its video gone with it, not playing on: when the dialog's close event comes, a task
    # after it is hidden (the browser may give the card its focus back before that).
    expect(large.locator("video")).to_have_count(0)
    assert problems == [], problems
    page.close()


def test_the_larger_view_is_steered_and_judged_from_the_keyboard(
    browser: Any, site: tuple[str, Engine, Path]
) -> None:
    """Enter shows the card in focus larger, j moves to the next row inside the view, a
    approves the row shown (the review form's verdict, as on a card), and the page comes
    back with the row after it shown larger; Escape leaves it in focus, o shows it again."""
    from playwright.sync_api import expect  # noqa: PLC0415 - as the fixture imports it

    _base, engine, _folder = site
    page, problems = gallery_after_a_run(browser, site)
    large = page.locator("#lightbox")
    page.keyboard.press("j")
    page.keyboard.press("j")
    page.keyboard.press("j")
    expect(page.locator('.card[data-id="r2"]')).to_be_focused()
    page.keyboard.press("Enter")
    expect(large).to_be_visible()
    expect(large).to_have_attribute("data-id", "r2")
    expect(large.locator(".stage img")).to_have_count(2)
    page.keyboard.press("j")
    expect(large).to_have_attribute("data-id", "r3")
    expect(large).to_be_visible()
    expect(large.locator(".said")).to_have_text("product 3 turns slowly")
    expect(large.locator(".stage img")).to_have_count(1)
    expect(large.locator("video")).to_have_attribute("src", "/ui/batches/shop/rows/r3/video")
    page.keyboard.press("a")
    expect(page.locator('.card[data-id="r3"] .tag.approved')).to_be_visible()
    expect(large).to_have_attribute("data-id", "r4")  # back, with the next one larger
    expect(large).to_be_visible()
    expect(large.locator(".about .tag")).to_have_text("not reviewed")
    with engine.connect() as conn:
        reviews = {row.ref: row.review for row in conn.execute(sa.select(Job.ref, Job.review))}
    assert reviews == {**{f"r{n}": None for n in range(6)}, "r3": "approved"}
    page.keyboard.press("Escape")
    expect(large).to_be_hidden()
    expect(page.locator('.card[data-id="r4"]')).to_be_focused()
    page.keyboard.press("o")
    expect(large).to_be_visible()
    expect(large).to_have_attribute("data-id", "r4")
    assert problems == [], problems
    page.close()


def test_the_batches_page_shows_a_pause_up_front_as_it_happens(
    browser: Any, site: tuple[str, Engine, Path]
) -> None:
    """The batches page, open: a batch paused elsewhere (a budget spent, a person) shows its
    reason above the table within the page's 2 s refresh, and the tiles that add up every
    batch stand in one row, each number above its label."""
    from playwright.sync_api import expect  # noqa: PLC0415 - as the fixture imports it

    base, engine, _folder = site
    page, problems = watched_page(browser)
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(f"{base}/login?next=/")
    page.fill("input[name=token]", TOKEN)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/")
    first = page.locator(".glance > div").first
    assert first.inner_text().split("\n") == ["1", "batch at work"]  # a number over its label
    assert page.locator(".attention").count() == 0

    BatchService(engine, Settings()).pause("shop", "the budget of USD 1.00 is spent")
    callout = page.locator('.attention[data-paused="shop"]')
    expect(callout).to_contain_text("shop: the budget of USD 1.00 is spent", timeout=15_000)
    above = callout.bounding_box()
    table = page.locator("#batches table").bounding_box()
    assert above is not None
    assert table is not None
    assert above["y"] + above["height"] <= table["y"]  # up front, not in a cell

    tiles = page.locator(".glance > div")
    boxes = [tiles.nth(n).bounding_box() for n in range(tiles.count())]
    assert len(boxes) >= 5
    assert len({round(box["y"]) for box in boxes if box}) == 1  # one row at this width
    number = page.locator(".glance > div b").first.bounding_box()
    label = page.locator(".glance > div span").first.bounding_box()
    assert number is not None
    assert label is not None
    assert number["y"] < label["y"]
    assert problems == []
