"""Opening a job file: from a path, standard input or uploaded bytes, checked before reading.

`open_job_file` and `job_file_from_bytes` give a `JobFile`. Before any row is read, its first
bytes are looked at: an empty file, a binary one (a workbook, an image, a PDF, an archive) or
UTF-16 text without its byte order mark is refused at once with a `JobFileError` naming it.
`JobFile.rows()` decodes the bytes and hands the text to the reader of the file's format.
"""

from __future__ import annotations

import importlib
import io
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final

from veobatch.errors import JobFileError
from veobatch.images.files import ImageFolder
from veobatch.intake.raw_job import RawJob
from veobatch.intake.readers.formats import Reader, detect_format

# Each format's reader, imported when a file of that format is read (YAML's parser is not
# loaded for a CSV file).
_READERS: Final[dict[str, tuple[str, str]]] = {
    "csv": ("veobatch.intake.readers.csv_reader", "read_csv"),
    "yaml": ("veobatch.intake.readers.yaml_reader", "read_yaml"),
    "jsonl": ("veobatch.intake.readers.jsonl_reader", "read_jsonl"),
}


def reader_of(format: str) -> Reader:
    module, name = _READERS[format]
    reader: Reader = getattr(importlib.import_module(module), name)
    return reader


_BOM: Final = b"\xef\xbb\xbf"
_UTF16_BOMS: Final = (b"\xff\xfe", b"\xfe\xff")
_BINARY_SIGNATURES: Final = {
    b"PK\x03\x04": "a ZIP archive (an .xlsx workbook? save it as 'CSV UTF-8')",
    b"\xd0\xcf\x11\xe0": "an old Excel/Office file (save it as 'CSV UTF-8')",
    b"\x89PNG": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"%PDF": "a PDF document",
    b"\x1f\x8b": "a gzip archive (unpack it first)",
}


@dataclass
class JobFile:
    """An opened job file: `rows()` streams its jobs; `position()/size` drive progress."""

    name: str
    format: str
    stream: IO[bytes]
    size: int | None
    encoding: str = "utf-8-sig"  # UTF-16 when the file starts with its byte order mark
    # Where the paths of local images in it point; None: the file came as data (over HTTP),
    # and a path in it is refused, never opened.
    images: ImageFolder | None = None

    def rows(self) -> Iterator[RawJob]:
        # Decoding happens in C, a block at a time; only a file that is not UTF-8 costs a
        # second look, to say on which line it breaks.
        text = io.TextIOWrapper(self.stream, encoding=self.encoding, newline="")
        try:
            yield from reader_of(self.format)(text, self.name)
        except UnicodeDecodeError as exc:
            raise self._decode_error(exc) from None
        finally:
            text.detach()

    def again(self) -> Callable[[], Iterator[RawJob]] | None:
        """What reads the rows once more from the start; None when the stream cannot go back
        (standard input)."""
        if not self.stream.seekable():
            return None

        def rows() -> Iterator[RawJob]:
            self.stream.seek(0)
            return self.rows()

        return rows

    def _decode_error(self, exc: UnicodeDecodeError) -> JobFileError:
        byte = exc.object[exc.start]
        if self.encoding == "utf-16":
            return JobFileError(self.name, "is not valid UTF-16 text; save it as UTF-8")
        advice = "save it as UTF-8 (in Excel: 'CSV UTF-8')"
        if not self.stream.seekable():
            return JobFileError(self.name, f"is not UTF-8 text (byte 0x{byte:02x}); {advice}")
        self.stream.seek(0)
        for number, raw in enumerate(self.stream, 1):
            try:
                (raw.removeprefix(_BOM) if number == 1 else raw).decode("utf-8")
            except UnicodeDecodeError as found:
                column, byte = found.start + 1, found.object[found.start]
                message = f"is not UTF-8 text (byte 0x{byte:02x} at column {column}); {advice}"
                return JobFileError(self.name, message, number)
        return JobFileError(self.name, f"is not UTF-8 text (byte 0x{byte:02x}); {advice}")

    def position(self) -> int | None:
        try:
            return self.stream.tell() if self.size else None
        except OSError:
            return None


@contextmanager
def open_job_file(
    path: str, format: str | None = None, stdin: IO[bytes] | None = None
) -> Iterator[JobFile]:
    """Open `path` (`-` for standard input) and check that it looks like a text job file."""
    fmt = detect_format(path, format)
    if path == "-":
        raw: IO[bytes] = stdin if stdin is not None else sys.stdin.buffer
        stream = raw if hasattr(raw, "peek") else io.BufferedReader(raw)  # type: ignore[type-var]
        yield _checked(JobFile("<stdin>", fmt, stream, None, images=ImageFolder(Path.cwd())))
        return
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed below, after the caller is done
    except FileNotFoundError:
        raise JobFileError(path, "no such file") from None
    except IsADirectoryError:
        raise JobFileError(path, "is a directory, not a job file") from None
    except OSError as exc:
        raise JobFileError(path, f"cannot be read: {exc.strerror}") from None
    with handle:
        size = os.fstat(handle.fileno()).st_size
        folder = ImageFolder(Path(path).absolute().parent)
        yield _checked(JobFile(path, fmt, handle, size, images=folder))


def job_file_from_bytes(name: str, data: bytes, format: str | None = None) -> JobFile:
    """An uploaded job file, checked like a file on disk; problems name it `name`."""
    stream = io.BufferedReader(io.BytesIO(data))
    return _checked(JobFile(name, detect_format(name, format), stream, len(data)))


def _checked(job_file: JobFile) -> JobFile:
    head: bytes = job_file.stream.peek(4096)[:4096]  # type: ignore[attr-defined]
    if not head.strip(b" \t\r\n" + _BOM):
        raise JobFileError(job_file.name, "is empty: no jobs to load")
    for signature, what in _BINARY_SIGNATURES.items():
        if head.startswith(signature):
            raise JobFileError(job_file.name, f"is {what}, not a {job_file.format} job file")
    if head.startswith(_UTF16_BOMS):  # Excel's "Unicode Text", Notepad's "Unicode"
        job_file.encoding = "utf-16"
        return job_file
    if _looks_utf16(head):
        raise JobFileError(
            job_file.name,
            "is UTF-16 text without a byte order mark; save it as UTF-8 (in Excel: 'CSV UTF-8')",
        )
    if b"\x00" in head:
        raise JobFileError(
            job_file.name, f"holds binary data (NUL bytes), not a {job_file.format} job file"
        )
    return job_file


def _looks_utf16(head: bytes) -> bool:
    """Text in UTF-16 without its BOM: a NUL in every other byte of a mostly-ASCII start."""
    sample = head[:200]
    if len(sample) < 8:
        return False
    odd, even = sample[1::2], sample[0::2]
    return odd.count(0) >= 0.9 * len(odd) or even.count(0) >= 0.9 * len(even)
