"""A .zip holding one job file and its images, as sent over HTTP, unpacked safely.

The images' paths in the job file are relative inside the zip. Everything a hostile archive
tries is refused before a byte is written: a member whose path leaves the folder (`../`, an
absolute path, a drive letter), a symbolic link, an encrypted member, too many members, and a
zip bomb (more than `MAX_UNPACKED_BYTES` in all, or a large member that expands more than
`MAX_RATIO` times; the sizes a member claims are also enforced while it is unpacked). The
images are unpacked into a temporary folder under VEO_DATA_DIR; the load copies each image it
uses into the content-addressed store, and the folder is removed afterwards.
"""

from __future__ import annotations

import io
import re
import shutil
import stat
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import IO, Final

from veobatch.errors import JobFileError
from veobatch.images.files import ImageFolder
from veobatch.intake.readers import EXTENSIONS, JobFile, job_file_from_bytes

ZIP_SIGNATURE: Final = b"PK\x03\x04"
MAX_MEMBERS: Final = 10_000
MAX_UNPACKED_BYTES: Final = 2 * 1024**3
MAX_RATIO: Final = 100  # expansion allowed for a member over RATIO_FLOOR bytes
RATIO_FLOOR: Final = 1024 * 1024
_CHUNK: Final = 1024 * 1024
_DRIVE: Final = re.compile(r"^[A-Za-z]:")
_IGNORED: Final = ("__MACOSX/",)  # what macOS's Finder adds to every zip


def is_zip(name: str, head: bytes) -> bool:
    return head.startswith(ZIP_SIGNATURE) or name.lower().endswith(".zip")


@contextmanager
def unpacked_zip(name: str, data: bytes, data_dir: Path) -> Iterator[JobFile]:
    """The job file inside zip `data` (called `name` in problems), its images unpacked under
    `data_dir` for as long as the caller holds it."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError):
        raise JobFileError(name, "is not a readable zip archive") from None
    with archive:
        job_member, images = _members(name, archive)
        try:
            (data_dir / "unpacking").mkdir(parents=True, exist_ok=True)
            folder = Path(tempfile.mkdtemp(prefix="zip-", dir=data_dir / "unpacking"))
        except OSError as exc:
            raise JobFileError(name, f"cannot be unpacked in {data_dir}: {exc.strerror}") from None
        try:
            text = io.BytesIO()
            try:
                for info in images:
                    target = folder / info.filename
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with archive.open(info) as source, open(target, "wb") as out:
                        _copy(name, info, source, out)
                with archive.open(job_member) as source:
                    _copy(name, job_member, source, text)
            except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as exc:
                raise JobFileError(name, f"is a damaged zip archive ({exc})") from None
            except OSError as exc:
                raise JobFileError(name, f"cannot be unpacked: {exc.strerror}") from None
            job_file = job_file_from_bytes(f"{name}:{job_member.filename}", text.getvalue(), None)
            base = (folder / job_member.filename).parent  # paths are relative to the job file
            job_file.images = ImageFolder(base, root=folder)
            yield job_file
        finally:
            shutil.rmtree(folder, ignore_errors=True)


def _members(name: str, archive: zipfile.ZipFile) -> tuple[zipfile.ZipInfo, list[zipfile.ZipInfo]]:
    """The job file and the other files of the archive, once every member is found safe."""
    members = archive.infolist()
    if len(members) > MAX_MEMBERS:
        raise JobFileError(name, f"holds {len(members):,} files; at most {MAX_MEMBERS:,}")
    jobs: list[zipfile.ZipInfo] = []
    others: list[zipfile.ZipInfo] = []
    total = 0
    for info in members:
        member = info.filename
        _check_path(name, member)
        if stat.S_ISLNK(info.external_attr >> 16):
            raise JobFileError(name, f"holds a symbolic link ({member!r}): refused")
        if info.is_dir() or member.startswith(_IGNORED) or PurePosixPath(member).name[:1] == ".":
            continue
        if info.flag_bits & 0x1:
            raise JobFileError(name, f"holds an encrypted file ({member!r}): refused")
        total += info.file_size
        expands = info.file_size / max(info.compress_size, 1)
        if total > MAX_UNPACKED_BYTES or (info.file_size > RATIO_FLOOR and expands > MAX_RATIO):
            raise JobFileError(
                name,
                f"unpacks to more than it should ({member!r} expands {expands:,.0f} times, "
                f"{total / 2**20:,.0f} MB so far): refused as a zip bomb",
            )
        suffix = PurePosixPath(member).suffix.lower()
        (jobs if suffix in EXTENSIONS else others).append(info)
    if len(jobs) != 1:
        found = ", ".join(repr(info.filename) for info in jobs[:5])
        raise JobFileError(
            name,
            f"holds {len(jobs)} job files ({found}): put one per zip"
            if jobs
            else "holds no job file (.csv, .yaml or .jsonl) beside its images",
        )
    return jobs[0], others


def _check_path(name: str, member: str) -> None:
    parts = PurePosixPath(member).parts
    if (
        "\x00" in member
        or member.startswith("/")
        or "\\" in member
        or _DRIVE.match(member)
        or ".." in parts
    ):
        raise JobFileError(name, f"holds {member[:80]!r}, a path that leaves its folder: refused")


def _copy(name: str, info: zipfile.ZipInfo, source: IO[bytes], out: IO[bytes]) -> None:
    """Copy one member, holding it to the size it claims (a forged header is a bomb too)."""
    written = 0
    while chunk := source.read(_CHUNK):
        written += len(chunk)
        if written > info.file_size:
            raise JobFileError(name, f"{info.filename!r} is larger than it says: refused")
        out.write(chunk)
