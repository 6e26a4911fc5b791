"""Local images: checked at load, kept as path and hash, sent by VEO_IMAGE_MODE, checked again
at submit; over real SQLite/PostgreSQL, the real mock provider and a real S3-protocol server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest
import sqlalchemy as sa
from PIL import Image
from sqlalchemy.engine import Engine

from tests.conftest import Cli
from tests.helpers import load_prompts, noise, photo, run_embedded, sha256_of
from veobatch.errors import ConfigError, ProviderError
from veobatch.images.bucket import Bucket
from veobatch.images.files import ImageFolder, ImageInspector, ImageRules
from veobatch.images.formats import shape_warning, sniff
from veobatch.images.references import is_local, local_path
from veobatch.images.sending import ImageSender
from veobatch.intake.loader import LoadResult
from veobatch.intake.readers import open_job_file
from veobatch.provider.client import ProviderClient
from veobatch.provider.dialect import Request
from veobatch.provider.mock import MockConfig, MockProvider
from veobatch.provider.relay import SUBMIT_PATH
from veobatch.service import BatchService
from veobatch.settings import Secret, Settings
from veobatch.store.tables import Batch, Job

MB = 1024 * 1024


def settings(tmp_path: Path, **values: str) -> Settings:
    return Settings.from_values({"data_dir": str(tmp_path / "data"), **values})


def write_csv(path: Path, rows: list[tuple[str, str]], aspect: str = "") -> Path:
    """A job file: one row per (id, images) pair, prompt `a spin of ID`."""
    lines = ["id,prompt,model,images,aspect_ratio"]
    lines += [f"{ref},a spin of {ref},veo3.1,{images},{aspect}" for ref, images in rows]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def load_file(engine: Engine | None, path: Path, config: Settings, batch: str = "b") -> LoadResult:
    with open_job_file(str(path)) as job_file:
        return BatchService(engine, config).load(
            job_file, batch, dry_run=engine is None, reader_process=False
        )


def problems(result: LoadResult) -> list[str]:
    return result.report.lines()


def stored_images(engine: Engine) -> dict[str, list[Any]]:
    with engine.connect() as conn:
        return {row.ref: row.images for row in conn.execute(sa.select(Job.ref, Job.images))}


def batch_id(engine: Engine, name: str = "b") -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(Batch.id).where(Batch.name == name)).scalar_one())


def rows_of(engine: Engine) -> dict[str, sa.Row[Any]]:
    with engine.connect() as conn:
        return {row.ref: row for row in conn.execute(sa.select(Job))}


# ------------------------------------------------------------------------------- pure parts


def test_formats_are_told_by_their_bytes_not_their_names(tmp_path: Path) -> None:
    for fmt, name in (("PNG", "png"), ("JPEG", "jpeg"), ("WEBP", "webp")):
        path = photo(tmp_path / f"a.{name}", format=fmt)
        assert sniff(path.read_bytes()[:16]) == name
    assert sniff(b"%PDF-1.7 ...") is None
    assert shape_warning(1280, 720, "16:9") is None
    assert shape_warning(1024, 768, "16:9") is None  # 4:3 in 16:9: cropped a little, fine
    assert "portrait" in (shape_warning(600, 900, "16:9") or "")
    assert shape_warning(600, 900, None) is None


def test_which_entries_are_local_files() -> None:
    assert is_local("photos/a.jpg")
    assert is_local("/abs/a.jpg")
    assert is_local("~/a.jpg")
    assert is_local("file:///tmp/a%20b.jpg")
    assert local_path("file:///tmp/a%20b.jpg") == "/tmp/a b.jpg"
    assert not is_local("https://x.io/a.jpg")
    assert not is_local("data:image/png;base64,AAAA")
    assert not is_local("ftp://x.io/a.jpg")
    with pytest.raises(ValueError, match="another host"):
        local_path("file://server/share/a.jpg")


# ------------------------------------------------------------------------------- at load


def test_relative_paths_are_read_from_the_job_files_folder_whatever_the_working_directory(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shop = tmp_path / "shop"
    a = photo(shop / "photos" / "a.jpg", seed=1)
    b = photo(shop / "photos" / "b.png", format="PNG", seed=2)
    home = tmp_path / "home"
    c = photo(home / "c.webp", format="WEBP", seed=3)
    monkeypatch.setenv("HOME", str(home))
    jobs = write_csv(
        shop / "jobs.csv",
        [("a", "photos/a.jpg"), ("b", f"file://{b}"), ("c", "~/c.webp"), ("d", str(a))],
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    result = load_file(engine, jobs, settings(tmp_path))
    assert problems(result) == []
    stored = stored_images(engine)
    assert stored["a"][0]["path"] == str(a)
    assert stored["a"][0]["name"] == "photos/a.jpg"
    assert stored["b"][0]["path"] == str(b)
    assert stored["c"][0]["path"] == str(c)
    assert stored["d"][0]["sha256"] == sha256_of(a)
    assert {(i["type"], i["width"], i["height"]) for [i] in stored.values()} == {
        ("image/jpeg", 1280, 720),
        ("image/png", 1280, 720),
        ("image/webp", 1280, 720),
    }
    assert stored["b"][0]["bytes"] == b.stat().st_size
    assert result.local_images[0] == 3  # a and d are the same file


def test_what_is_not_a_usable_image_is_refused_with_file_line_and_field(
    engine: Engine, tmp_path: Path
) -> None:
    folder = tmp_path / "shop"
    (folder / "photos").mkdir(parents=True)
    (folder / "photos" / "report.jpg").write_bytes(b"%PDF-1.4\n1 0 obj\n")
    (folder / "photos" / "notes.png").write_text("just text\n")
    whole = photo(folder / "photos" / "whole.jpg").read_bytes()
    (folder / "photos" / "cut.jpg").write_bytes(whole[: len(whole) // 2])
    (folder / "photos" / "album").mkdir()
    jobs = write_csv(
        folder / "jobs.csv",
        [
            ("pdf", "photos/report.jpg"),
            ("text", "photos/notes.png"),
            ("cut", "photos/cut.jpg"),
            ("gone", "photos/missing.jpg"),
            ("dir", "photos/album"),
            ("dev", "/dev/zero"),
            ("ok", "photos/whole.jpg"),
        ],
    )
    result = load_file(engine, jobs, settings(tmp_path))
    assert result.rejected
    found = problems(result)
    source = str(jobs)
    assert found[0] == (
        f"{source}:2: images: photos/report.jpg is a PDF document, not an image (PNG, JPEG or WebP)"
    )
    assert found[1] == f"{source}:3: images: photos/notes.png is a text file, not an image " + (
        "(PNG, JPEG or WebP)"
    )
    assert found[2].startswith(f"{source}:4: images: photos/cut.jpg is damaged")
    assert found[3] == (
        f"{source}:5: images: photos/missing.jpg: no such file (looked for "
        f"{folder / 'photos' / 'missing.jpg'})"
    )
    assert found[4] == f"{source}:6: images: photos/album is a folder, not an image file"
    assert found[5] == f"{source}:7: images: /dev/zero is not a regular file, not an image file"
    assert len(found) == 6
    assert stored_images(engine) == {}  # nothing stored


def test_an_image_far_from_the_videos_shape_is_a_warning_not_an_error(
    engine: Engine, tmp_path: Path
) -> None:
    photo(tmp_path / "tall.jpg", size=(600, 1000))
    jobs = write_csv(tmp_path / "jobs.csv", [("t", "tall.jpg")], aspect="16:9")
    result = load_file(engine, jobs, settings(tmp_path))
    assert not result.rejected
    assert result.stored == 1
    assert result.report.warning_lines() == [
        f"warning: {jobs}:2: images: tall.jpg is 600×1000 (portrait) but the row asks for a "
        "16:9 video: the provider will crop it"
    ]


def test_a_too_big_image_is_scaled_down_into_the_data_folder_keeping_its_shape(
    engine: Engine, tmp_path: Path
) -> None:
    big = noise(tmp_path / "big.png", (2400, 1350))
    assert big.stat().st_size > 4 * MB
    jobs = write_csv(tmp_path / "jobs.csv", [("big", "big.png")])
    config = settings(tmp_path, image_max_mb="1")
    result = load_file(engine, jobs, config)
    assert problems(result) == []
    [image] = stored_images(engine)["big"]
    copy = Path(image["path"])
    assert copy.parent.parent == tmp_path / "data" / "images"
    assert copy.name == f"{image['sha256']}.jpg"
    assert sha256_of(copy) == image["sha256"]
    assert image["bytes"] == copy.stat().st_size <= 1 * MB
    assert image["original"] == str(big)
    assert abs(image["width"] / image["height"] - 2400 / 1350) < 0.01
    assert result.local_images == (1, image["bytes"], 1)

    refused = load_file(None, jobs, settings(tmp_path, image_max_mb="1", image_oversize="refuse"))
    assert [line.split(": ", 2)[2] for line in problems(refused)] == [
        f"big.png is {big.stat().st_size / MB:.1f} MB; VEO_IMAGE_MAX_MB is 1.0 MB (relays cap "
        "request bodies): make it smaller, or set VEO_IMAGE_OVERSIZE=shrink"
    ]


def test_a_transparent_image_stays_transparent_when_scaled_down(tmp_path: Path) -> None:
    noisy = Image.effect_noise((1400, 1400), 90).convert("RGBA")
    noisy.putalpha(128)
    noisy.save(tmp_path / "logo.png")
    rules = ImageRules(max_bytes=MB, store=tmp_path / "store")
    image = ImageInspector(ImageFolder(tmp_path), rules).inspect("logo.png")
    assert (image.format, image.width, image.height) == ("png", image.width, image.width)
    assert image.bytes <= MB
    with Image.open(image.path) as copy:
        assert copy.mode == "RGBA"


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    turned = tmp_path / "turned.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to show"
    photo(turned, size=(800, 600), exif=exif.tobytes())
    inspector = ImageInspector(ImageFolder(tmp_path), ImageRules(store=tmp_path / "store"))
    image = inspector.inspect("turned.jpg")
    assert (image.width, image.height) == (600, 800)
    assert image.original == str(turned)
    with Image.open(image.path) as upright:
        assert upright.size == (600, 800)
        assert upright.getexif().get(0x0112) in (None, 1)


def test_the_database_holds_paths_and_hashes_never_image_bytes(
    engine: Engine, tmp_path: Path
) -> None:
    noise(tmp_path / "p.png", (700, 700))  # about 1.4 MB
    jobs = write_csv(tmp_path / "jobs.csv", [(f"r{n}", "p.png") for n in range(50)])
    load_file(engine, jobs, settings(tmp_path))
    with engine.connect() as conn:
        sizes = conn.execute(sa.select(sa.func.length(sa.cast(Job.images, sa.Text)))).scalars()
        assert max(sizes) < 400
    assert "base64" not in json.dumps(stored_images(engine))


# ------------------------------------------------------------------------------- at submit


def loaded_photos(engine: Engine, tmp_path: Path, count: int, rows: int) -> dict[str, str]:
    """`rows` rows over `count` distinct photos, loaded as batch b; each row's photo hash."""
    for n in range(count):
        photo(tmp_path / "photos" / f"p{n}.jpg", seed=n)
    pairs = [(f"r{n}", f"photos/p{n % count}.jpg") for n in range(rows)]
    result = load_file(engine, write_csv(tmp_path / "jobs.csv", pairs), settings(tmp_path))
    assert problems(result) == []
    return {ref: sha256_of(tmp_path / name) for ref, name in pairs}


def arrived(mock: MockProvider) -> dict[str, list[str]]:
    """The hashes of the images the mock received, by row id (from the prompt)."""
    seen = mock.stats()["images_by_prompt"]
    return {prompt.removeprefix("a spin of "): hashes for prompt, hashes in seen.items()}


@pytest.mark.parametrize("mode", ["data-uri", "base64"])
def test_inline_modes_send_the_picture_checked_at_load(
    engine: Engine, tmp_path: Path, mode: str
) -> None:
    expected = loaded_photos(engine, tmp_path, count=3, rows=6)
    with MockProvider(MockConfig(api_key="mock-key", accepts=[mode])) as mock:
        progress = run_embedded(engine, mock, batch_id(engine), images=ImageSender(mode))
    assert progress.counts == {"succeeded": 6}
    assert arrived(mock) == {ref: [digest] for ref, digest in expected.items()}


def test_a_file_changed_or_deleted_after_the_load_fails_its_row_and_spends_nothing(
    engine: Engine, tmp_path: Path, mock: MockProvider
) -> None:
    loaded_photos(engine, tmp_path, count=3, rows=3)
    photo(tmp_path / "photos" / "p1.jpg", seed=99)  # another picture under the same name
    (tmp_path / "photos" / "p2.jpg").unlink()
    progress = run_embedded(engine, mock, batch_id(engine), images=ImageSender("data-uri"))
    assert progress.counts == {"succeeded": 1, "failed": 2}
    rows = rows_of(engine)
    assert (rows["r1"].error_kind, rows["r2"].error_kind) == ("image", "image")
    assert "changed since the load" in rows["r1"].error
    assert "not sent" in rows["r1"].error
    assert "was deleted or moved since the load" in rows["r2"].error
    assert mock.stats()["created_by_prompt"] == {"a spin of r0": 1}  # nothing sent for r1, r2


def test_a_relay_that_refuses_the_mode_pauses_the_batch_after_one_request(
    engine: Engine, tmp_path: Path
) -> None:
    loaded_photos(engine, tmp_path, count=2, rows=20)
    with MockProvider(MockConfig(api_key="mock-key", accepts=["url"])) as mock:
        progress = run_embedded(
            engine, mock, batch_id(engine), images=ImageSender("data-uri"), concurrency=1
        )
    assert mock.stats()["requests"] == 1
    assert progress.counts == {"pending": 20}
    with engine.connect() as conn:
        batch = conn.execute(sa.select(Batch)).one()
    assert batch.state == "paused"
    assert batch.pause_reason.startswith("image: the relay refused images sent as data-uri (")
    assert "set VEO_IMAGE_MODE to base64 or url, then resume" in batch.pause_reason


def test_url_mode_uploads_each_photo_once_and_the_relay_fetches_it(
    engine: Engine, tmp_path: Path, s3_endpoint: str, bucket_url: str
) -> None:
    expected = loaded_photos(engine, tmp_path, count=4, rows=40)
    config = settings(tmp_path, image_mode="url", s3_url=bucket_url, s3_endpoint=s3_endpoint)
    sender = ImageSender.of(config)
    assert sender.bucket is not None
    with MockProvider(MockConfig(api_key="mock-key", accepts=["url"])) as mock:
        progress = run_embedded(engine, mock, batch_id(engine), images=sender, concurrency=8)
    assert progress.counts == {"succeeded": 40}
    assert arrived(mock) == {ref: [digest] for ref, digest in expected.items()}
    assert sender.bucket.uploads == 4
    name = bucket_url.removeprefix("s3://").split("/")[0]
    listed = boto3.client("s3", endpoint_url=s3_endpoint).list_objects_v2(Bucket=name)
    keys = sorted(item["Key"] for item in listed["Contents"])
    assert keys == sorted(f"photos/{digest}.jpg" for digest in set(expected.values()))
    uploaded = {i[0]["uploaded"] for i in stored_images(engine).values()}
    assert uploaded == {f"s3://{name}/{key}" for key in keys}


def test_url_mode_checks_the_bucket_at_start(tmp_path: Path, s3_endpoint: str) -> None:
    missing = settings(
        tmp_path, image_mode="url", s3_url="s3://no-such-bucket-here/x", s3_endpoint=s3_endpoint
    )
    with pytest.raises(ConfigError, match="VEO_S3_URL: bucket 'no-such-bucket-here' cannot be"):
        ImageSender.of(missing)


def test_url_mode_without_a_bucket_pauses_the_batch_instead_of_failing_its_rows(
    engine: Engine, tmp_path: Path, mock: MockProvider
) -> None:
    loaded_photos(engine, tmp_path, count=1, rows=5)
    progress = run_embedded(engine, mock, batch_id(engine), images=ImageSender("url"))
    assert progress.counts == {"pending": 5}
    assert mock.stats()["requests"] == 0
    with engine.connect() as conn:
        reason = conn.execute(sa.select(Batch.pause_reason)).scalar_one()
    assert (reason or "").startswith("image: VEO_IMAGE_MODE is url but VEO_S3_URL is not set")


def test_a_public_bucket_is_linked_by_its_public_url(tmp_path: Path) -> None:
    class NoNetwork:
        def generate_presigned_url(self, *_args: object, **_kwargs: object) -> str:
            raise AssertionError("a public bucket needs no signed link")

    bucket = Bucket("s3://pics/veo", public_url="https://cdn.example.com", client=NoNetwork())
    assert bucket.link(bucket.key_for("ab" * 32, "jpg")) == (
        f"https://cdn.example.com/veo/{'ab' * 32}.jpg"
    )


# ------------------------------------------------------------------------------- the mock


def test_the_mock_refuses_inline_images_that_are_not_images(mock: MockProvider) -> None:
    body = {"prompt": "p", "model": "veo3.1", "images": ["data:image/png;base64,aGVsbG8="]}
    with (
        ProviderClient(mock.url, Secret("mock-key")) as client,
        pytest.raises(ProviderError, match="图片无法解码") as refused,
    ):
        client.submit(Request(SUBMIT_PATH, body))
    assert refused.value.http_status == 400
    assert mock.stats()["created"] == 0


def test_the_mock_fails_a_task_whose_image_link_gives_no_image(
    engine: Engine, tmp_path: Path, mock: MockProvider
) -> None:
    load_prompts(engine, ["a"])
    with engine.begin() as conn:  # a link to this machine where nothing answers
        conn.execute(sa.update(Job).values(images=["http://127.0.0.1:9/nothing.jpg"]))
    progress = run_embedded(engine, mock, batch_id(engine), images=ImageSender("url"))
    assert progress.counts == {"failed": 1}
    [row] = rows_of(engine).values()
    assert row.error_kind == "remote"
    assert "图片下载失败" in row.error


def test_images_never_expose_more_than_their_names_in_views(engine: Engine, tmp_path: Path) -> None:
    loaded_photos(engine, tmp_path, count=1, rows=1)
    [view] = BatchService(engine, settings(tmp_path)).jobs("b")
    assert view["images"] == ["photos/p0.jpg"]
    [details] = view["image_files"]
    assert set(details) == {"name", "bytes", "sha256", "width", "height", "type"}
    assert str(tmp_path) not in json.dumps(view, default=str)


# ------------------------------------------------------------------------------- end to end


@pytest.mark.parametrize("mode", ["data-uri", "base64", "url"])
def test_a_folder_of_photos_and_a_csv_run_end_to_end_in_each_mode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest, mode: str
) -> None:
    for n in range(3):
        photo(tmp_path / "shop" / "photos" / f"sku-{n}.jpg", seed=n)
    pairs = [(f"sku-{n}", f"photos/sku-{n % 3}.jpg") for n in range(9)]
    write_csv(tmp_path / "shop" / "jobs.csv", pairs, aspect="16:9")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VEO_IMAGE_MODE", mode)
    monkeypatch.setenv("VEO_DATA_DIR", str(tmp_path / "data"))
    if mode == "url":
        endpoint: str = request.getfixturevalue("s3_endpoint")
        bucket: str = request.getfixturevalue("bucket_url")
        monkeypatch.setenv("VEO_S3_URL", bucket)
        monkeypatch.setenv("VEO_S3_ENDPOINT", endpoint)
    result = Cli(f"sqlite:///{tmp_path / 'veo-batch.db'}")("run", "shop/jobs.csv", "--mock")
    assert result.exit_code == 0, result.output
    assert "local images: 3 files" in result.stdout
    assert "succeeded  9" in result.stdout
    if mode == "url":
        name = bucket.removeprefix("s3://").split("/")[0]
        listed = boto3.client("s3", endpoint_url=endpoint).list_objects_v2(Bucket=name)
        assert listed["KeyCount"] == 3


def test_a_photo_many_rows_reuse_is_one_warning_naming_its_rows(
    engine: Engine, tmp_path: Path
) -> None:
    """300 rows over one square photo in 16:9: one warning, with how many rows and which
    lines, not 50 copies and "... and 250 more"."""
    photo(tmp_path / "square.jpg", size=(800, 800))
    photo(tmp_path / "tall.jpg", size=(600, 1000))
    rows = [(f"r{n}", "square.jpg") for n in range(300)] + [("t", "tall.jpg")]
    jobs = write_csv(tmp_path / "jobs.csv", rows, aspect="16:9")
    result = load_file(engine, jobs, settings(tmp_path))
    assert result.stored == 301
    lines = result.report.warning_lines()
    assert len(lines) == 2
    assert lines[0].startswith(f"warning: {jobs}:2: images: square.jpg is 800×800")
    assert lines[0].endswith("(300 rows: lines 2, 3, 4, 5, 6 and 295 more)")
    assert lines[1].startswith(f"warning: {jobs}:302: images: tall.jpg")
    assert "rows:" not in lines[1]  # one row: no count


def test_loading_the_same_file_again_does_not_repeat_its_warnings(
    sqlite_run: Cli, tmp_path: Path
) -> None:
    """A resume loads the file again: its rows are stored already, and so were its warnings."""
    photo(tmp_path / "square.jpg", size=(800, 800))
    jobs = write_csv(tmp_path / "jobs.csv", [("a", "square.jpg"), ("b", "square.jpg")], "16:9")
    first = sqlite_run("load", str(jobs))
    assert first.exit_code == 0
    assert "warning: " in first.output
    again = sqlite_run("load", str(jobs))
    assert again.exit_code == 0
    assert "warning: " not in again.output
    assert "(1 warning, given when these rows were first stored)" in again.output
    assert "2 were already in the batch" in again.output
