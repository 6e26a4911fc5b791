"""Make the README's pictures of the dashboard again, from a mock run of jobs.example.yaml.

    .venv/bin/python docs/screenshots.py        # needs Chromium (apt install chromium)

It runs `veo-batch run jobs.example.yaml --mock --download` on a scratch SQLite file, rejects
one video, runs the same file twice more as a batch its budget pauses and one sent without
waiting for its videos (for the batches page), serves the dashboard with `veo-batch serve`,
logs in with Chromium (driven by Playwright) and saves the batches page, the batch page and
the gallery, light and dark (the pages follow the system's setting), as
docs/images/{batches,batch,gallery}{,-dark}.png, and a video of the gallery opened larger,
light, as docs/images/gallery-lightbox.png. (docs/images/before/ keeps the three pages, light,
as they were before the dashboard was reworked: the same runs, served by commit 1356ae6.)
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "images"
TOKEN = "screenshot-token-0123456789"
CHROMIUM = os.environ.get("VEO_TEST_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="veo-screenshots-") as scratch:
        folder = Path(scratch)
        env = {
            **os.environ,
            "VEO_DATABASE_URL": f"sqlite:///{folder / 'veo-batch.db'}",
            "VEO_DOWNLOAD_DIR": str(folder / "videos"),
            "VEO_PRICES": "veo3.1=0.25,veo3-pro-frames=0.40,veo3.1-components=0.30,"
            "veo3-fast-frames=0.15,veo2-fast-frames=0.15",
            "VEO_API_TOKENS": TOKEN,
        }
        veo = [sys.executable, "-m", "veobatch"]
        example = str(ROOT / "jobs.example.yaml")
        subprocess.run([*veo, "run", example, "--mock"], env=env, cwd=folder, check=True)
        subprocess.run(
            [*veo, "review", "jobs.example", "--id", "fox-in-snow", "--reject"],
            env=env,
            cwd=folder,
            check=True,
        )
        # Two more batches for the batches page: one paused by its budget (its reason up
        # front), one whose tasks are still generating (sent without waiting).
        for more in (
            ["--batch", "spring-catalogue", "--budget", "0.6"],
            ["--batch", "summer-promo", "--no-wait"],
        ):
            subprocess.run(
                [*veo, "run", example, "--mock", *more], env=env, cwd=folder, check=False
            )
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        server = subprocess.Popen([*veo, "serve", "--port", str(port)], env=env, cwd=folder)
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(100):
                try:
                    httpx.get(f"{base}/openapi.json", timeout=1)
                    break
                except httpx.HTTPError:
                    time.sleep(0.2)
            OUT.mkdir(parents=True, exist_ok=True)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
                for scheme, suffix in (("light", ""), ("dark", "-dark")):
                    shoot(browser, base, scheme, suffix)
                browser.close()
        finally:
            server.terminate()
            server.wait(15)
    print(f"wrote {', '.join(sorted(path.name for path in OUT.glob('*.png')))} in {OUT}")


def shoot(browser: Any, base: str, scheme: str, suffix: str) -> None:
    """The batches page, the batch page and the gallery, as a system set to `scheme` shows
    them (the pages follow its dark mode)."""
    context = browser.new_context(color_scheme=scheme, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(f"{base}/login")
    page.fill("input[name=token]", TOKEN)
    page.click("button[type=submit]")
    page.mouse.move(0, 0)  # the pointer where the login button was would hover a chart's bar
    page.goto(f"{base}/")
    page.wait_for_selector("#batches table")
    page.screenshot(path=str(OUT / f"batches{suffix}.png"), full_page=True)
    page.goto(f"{base}/ui/batches/jobs.example")
    page.wait_for_selector("#charts h3")  # the charts come in a request of their own
    page.screenshot(path=str(OUT / f"batch{suffix}.png"), full_page=True)
    page.goto(f"{base}/ui/batches/jobs.example/gallery")
    page.wait_for_load_state("networkidle")
    for video in page.locator("video").all():  # a frame a little into each clip
        video.evaluate(
            """v => new Promise(done => { v.preload = 'auto';
                v.addEventListener('seeked', done, {once: true});
                v.addEventListener('loadeddata', () => { v.currentTime = 1.5; }, {once: true});
                v.load(); })"""
        )
    page.screenshot(path=str(OUT / f"gallery{suffix}.png"), full_page=True)
    if scheme == "light":
        lightbox(page)
    context.close()


def lightbox(page: Any) -> None:
    """The gallery's larger view of a row with two images (its first and last frames), as a
    click on its video opens it, a frame a little into the clip."""
    page.click('.card[data-id="city-timelapse"] video')
    page.wait_for_selector("#lightbox[open] video")
    page.mouse.move(5, 5)  # off the video: its controls fade as they would
    page.locator("#lightbox video").evaluate(
        """v => new Promise(done => {
            const at = () => { v.pause(); v.addEventListener('seeked', done, {once: true});
                               v.currentTime = 1.5; };
            if (v.readyState >= 1) { at(); }
            else { v.addEventListener('loadedmetadata', at, {once: true}); }
        })"""
    )
    for image in page.locator("#lightbox img").all():
        image.evaluate("i => i.complete || new Promise(done => i.addEventListener('load', done))")
    page.screenshot(path=str(OUT / "gallery-lightbox.png"))


if __name__ == "__main__":
    main()
