"""Images from other systems: a .zip of a job file and its photos over HTTP (unpacked safely,
kept by content hash), and paths named in JSON refused without being opened, by every face
that takes jobs as data (HTTP, Celery's `veobatch.enqueue`, the Python API's `add`)."""

from __future__ import annotations

import io
import stat
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import Engine

from tests.helpers import TOKEN, Served, photo, run_embedded, sha256_of
from veobatch.errors import InvalidJobs
from veobatch.images.sending import ImageSender
from veobatch.provider.mock import MockProvider
from veobatch.service import BatchService
from veobatch.settings import Settings

CSV = "id,prompt,model,images\na,a spin of a,veo3.1,photos/a.jpg\nb,a spin of b,veo3.1,b.png\n"


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def api(engine: Engine, database_url: str, data_dir: Path) -> Iterator[httpx.Client]:
    with (
        Served(engine, database_url, max_body=8 * 1024 * 1024, data_dir=str(data_dir)) as served,
        httpx.Client(
            base_url=served.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
        ) as client,
    ):
        yield client


def zipped(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, target)
    return out.getvalue()


def upload(api: httpx.Client, data: bytes, name: str = "shop.zip") -> httpx.Response:
    return api.post("/batches/shop/file", files={"file": (name, data, "application/zip")})


def test_a_zip_of_a_job_file_and_its_photos_is_loaded_and_sent(
    api: httpx.Client, engine: Engine, tmp_path: Path, data_dir: Path, mock: MockProvider
) -> None:
    a = photo(tmp_path / "a.jpg", seed=1).read_bytes()
    b = photo(tmp_path / "b.png", format="PNG", seed=2).read_bytes()
    archive = zipped({"shop/jobs.csv": CSV.encode(), "shop/photos/a.jpg": a, "shop/b.png": b})
    answer = upload(api, archive)
    assert answer.status_code == 201, answer.text
    assert answer.json()["added"] == 2
    kept = sorted(p.name for p in (data_dir / "images").rglob("*") if p.is_file())
    assert kept == sorted(
        [f"{sha256_of(tmp_path / 'a.jpg')}.jpg", f"{sha256_of(tmp_path / 'b.png')}.png"]
    )
    assert not any((data_dir / "unpacking").iterdir())  # the unpacked zip is gone

    rows = api.get("/batches/shop/jobs").json()["jobs"]
    assert [r["images"] for r in rows] == [["photos/a.jpg"], ["b.png"]]
    assert str(data_dir) not in str(rows)  # no server path in an answer

    batch = BatchService(engine, Settings()).status("shop").id
    progress = run_embedded(engine, mock, batch, images=ImageSender("data-uri"))
    assert progress.counts == {"succeeded": 2}
    assert mock.stats()["images_by_prompt"] == {
        "a spin of a": [sha256_of(tmp_path / "a.jpg")],
        "a spin of b": [sha256_of(tmp_path / "b.png")],
    }


@pytest.mark.parametrize(
    ("members", "links", "expected"),
    [
        ({"jobs.csv": b"x", "../evil.png": b"x"}, {}, "'../evil.png', a path that leaves"),
        ({"jobs.csv": b"x", "/etc/evil.png": b"x"}, {}, "'/etc/evil.png', a path that leaves"),
        ({"jobs.csv": b"x", "C:/evil.png": b"x"}, {}, "a path that leaves its folder"),
        ({"jobs.csv": b"x"}, {"photos/a.jpg": "/etc/passwd"}, "a symbolic link ('photos/a.jpg')"),
        ({"jobs.csv": b"x", "zeros.png": bytes(50 * 1024 * 1024)}, {}, "refused as a zip bomb"),
        ({"a.csv": b"x", "b.yaml": b"x"}, {}, "holds 2 job files ('a.csv', 'b.yaml')"),
        ({"a.png": b"x"}, {}, "holds no job file (.csv, .yaml or .jsonl)"),
    ],
)
def test_a_zip_that_tries_to_escape_or_explode_is_refused(
    api: httpx.Client,
    data_dir: Path,
    members: dict[str, bytes],
    links: dict[str, str],
    expected: str,
) -> None:
    answer = upload(api, zipped(members, links))
    assert answer.status_code == 422, answer.text
    assert expected in answer.json()["detail"]
    assert not (data_dir / "images").exists()
    assert api.get("/batches").json() == []


def test_paths_inside_a_zip_may_not_leave_it(api: httpx.Client, tmp_path: Path) -> None:
    secret = photo(tmp_path / "outside.jpg")  # a real image on the server, outside the zip
    text = f"id,prompt,model,images\na,p,veo3.1,../../outside.jpg\nb,p,veo3.1,{secret}\n"
    answer = upload(api, zipped({"jobs/jobs.csv": text.encode()}))
    assert answer.status_code == 422
    messages = [p["message"] for p in answer.json()["problems"]]
    assert messages == [
        "../../outside.jpg leaves the zip's folder; name an image inside the zip",
        f"{secret} is not a path inside the zip; name each image by its path in the zip, "
        "such as photos/a.jpg",
    ]


def test_a_path_named_in_json_is_refused_and_never_opened(
    api: httpx.Client, engine: Engine, tmp_path: Path
) -> None:
    # A real image on the server: had it been opened, the job would have been accepted.
    server_file = photo(tmp_path / "server.jpg")
    for named in ("/etc/passwd", str(server_file), f"file://{server_file}"):
        body = {"name": "cms", "jobs": [{"prompt": "p", "model": "veo3.1", "images": [named]}]}
        answer = api.post("/batches", json=body)
        assert answer.status_code == 422
        assert "is a file path; jobs sent as data" in answer.json()["problems"][0]["message"]
    plain = upload(api, f"prompt,model,images\np,veo3.1,{server_file}\n".encode(), "jobs.csv")
    assert plain.status_code == 422
    assert "is a file path" in plain.json()["problems"][0]["message"]
    # Celery's veobatch.enqueue and the Python API's Client.add call the same method.
    service = BatchService(engine, Settings(data_dir=str(tmp_path / "data")))
    with pytest.raises(InvalidJobs, match="is a file path"):
        service.add("cms", [{"prompt": "p", "model": "veo3.1", "images": [str(server_file)]}])
    assert not (tmp_path / "data").exists()
