"""The mock's videos worth looking at: real MP4 clips made from each job's first image."""

from __future__ import annotations

import io
from pathlib import Path

import av
import httpx
import pytest
from PIL import Image, ImageStat
from sqlalchemy.engine import Engine

from tests.conftest import Cli
from tests.helpers import photo, run_embedded
from veobatch.images.sending import ImageSender
from veobatch.intake.readers import open_job_file
from veobatch.provider.clips import FPS, PORTRAIT, SECONDS, SIZE, ClipMaker, make_clip
from veobatch.provider.mock import MockConfig, MockProvider
from veobatch.service import BatchService
from veobatch.settings import Settings

EXAMPLE = Path(__file__).parent.parent / "jobs.example.yaml"


def frames_of(data: bytes) -> list[Image.Image]:
    with av.open(io.BytesIO(data), mode="r") as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        return [frame.to_image() for frame in container.decode(stream)]  # type: ignore[no-untyped-call]


def mean_colour(picture: Image.Image) -> tuple[float, ...]:
    return tuple(ImageStat.Stat(picture.convert("RGB")).mean)


def test_a_clip_is_a_playable_h264_mp4_of_the_picture() -> None:
    picture = Image.new("RGB", (1280, 720), (200, 40, 30))
    data = make_clip(picture)
    assert data[4:8] == b"ftyp"
    assert data.find(b"moov") < data.find(b"mdat")  # the index first: plays while it loads
    frames = frames_of(data)
    assert len(frames) == round(SECONDS * FPS)
    assert frames[0].size == SIZE
    red, green, blue = mean_colour(frames[0])
    assert (red > 170, green < 80, blue < 70) == (True, True, True)


def test_each_image_is_encoded_once() -> None:
    maker = ClipMaker()
    one = io.BytesIO()
    Image.new("RGB", (640, 360), (10, 200, 10)).save(one, format="PNG")
    first = maker.clip_for(one.getvalue())
    assert maker.clip_for(one.getvalue()) is first
    assert maker.clip_for(None) is maker.clip_for(None)  # the drawn picture, once too


@pytest.mark.parametrize("mode", ["data-uri", "url"])
def test_the_mock_serves_a_clip_of_the_rows_first_image(
    engine: Engine, tmp_path: Path, mode: str, request: pytest.FixtureRequest
) -> None:
    blue = photo(tmp_path / "shop" / "blue.jpg")
    Image.new("RGB", (1280, 720), (20, 40, 210)).save(blue)  # a picture of one colour
    (tmp_path / "shop" / "jobs.csv").write_text("prompt,model,images\nsky,veo3.1,blue.jpg\n")
    settings = Settings(data_dir=str(tmp_path / "data"))
    service = BatchService(engine, settings)
    with open_job_file(str(tmp_path / "shop" / "jobs.csv")) as job_file:
        service.load(job_file, "b")
    sender = ImageSender("data-uri")
    if mode == "url":
        endpoint: str = request.getfixturevalue("s3_endpoint")
        bucket: str = request.getfixturevalue("bucket_url")
        sender = ImageSender.of(
            Settings.from_values({"image_mode": "url", "s3_url": bucket, "s3_endpoint": endpoint})
        )
    with MockProvider(MockConfig(api_key="mock-key", clips=True)) as mock:
        run_embedded(engine, mock, service.status("b").id, images=sender)
        [row] = service.jobs("b")
        video = httpx.get(row["video_url"], timeout=30)
    assert video.status_code == 200
    red, _green, blue_level = mean_colour(frames_of(video.content)[0])
    assert (blue_level > 150, red < 80) == (True, True)


def test_run_mock_downloads_real_videos(
    sqlite_run: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = sqlite_run("run", str(EXAMPLE), "--mock", "--download", "videos")
    assert result.exit_code == 0, result.output
    videos = sorted((tmp_path / "videos" / "jobs.example").glob("*.mp4"))
    assert len(videos) == 6
    for video in videos:
        assert len(frames_of(video.read_bytes())) == round(SECONDS * FPS)


def test_a_portrait_row_gets_a_portrait_clip(engine: Engine, tmp_path: Path) -> None:
    """A 9:16 row's video is upright (360 by 640), a default row's wide (640 by 360): a
    gallery of portrait previews shows what the provider would send."""
    (tmp_path / "shop").mkdir()
    (tmp_path / "shop" / "jobs.csv").write_text(
        "id,prompt,model,images,aspect_ratio\n"
        "wide,a beach,veo3.1,https://x.io/a.jpg,\n"
        "tall,a tower,veo3.1,https://x.io/a.jpg,9:16\n"
    )
    service = BatchService(engine, Settings(data_dir=str(tmp_path / "data")))
    with open_job_file(str(tmp_path / "shop" / "jobs.csv")) as job_file:
        service.load(job_file, "b")
    with MockProvider(MockConfig(api_key="mock-key", clips=True)) as mock:
        run_embedded(engine, mock, service.status("b").id)
        sizes = {
            row["id"]: frames_of(httpx.get(row["video_url"], timeout=30).content)[0].size
            for row in service.jobs("b")
        }
    assert sizes == {"wide": SIZE, "tall": PORTRAIT}
