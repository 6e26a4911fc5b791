"""The exception tree: drawn as it is, one root, and an exit code for every kind of error."""

from __future__ import annotations

import importlib
import pickle
import pkgutil
import re
from pathlib import Path
from typing import TypeVar

import pytest

import veobatch
from tests.conftest import Cli
from tests.helpers import URL
from veobatch import embedded_runner, errors
from veobatch.errors import (
    EXIT_CODE_MEANINGS,
    Abandoned,
    BatchPaused,
    BatchStateError,
    ConfigError,
    DatabaseError,
    DownloadError,
    DownloadRefused,
    ExitCode,
    ImageError,
    InvalidJobs,
    JobFileError,
    LimiterUnavailable,
    NotFoundError,
    Problem,
    ProcessFailed,
    ProviderError,
    RefusedDestination,
    UnconfirmedRerun,
    UnusableVideo,
    VeoBatchError,
    WriteError,
)
from veobatch.service import BatchService
from veobatch.states import ErrorKind

# Not run as part of the package: the migrations' env needs alembic's context, __main__ runs
# the CLI.
NOT_IMPORTED = ("veobatch.migrations", "veobatch.__main__")
# Exceptions of ours outside the tree, each for a reason its docstring and errors.py state.
OUTSIDE_THE_TREE = {
    "veobatch.dashboard.pages.LoginNeeded",  # a redirect to the login form
    "veobatch.provider.mock.gemini.Refusal",  # the mock's own error answer, never ours to raise
    "veobatch.store.inserts.DuplicateRef",  # inside a load, which is then made again
}
# What each kind of error exits with; a new class must be given its code here on purpose.
EXPECTED_EXIT: dict[str, ExitCode] = {
    "VeoBatchError": ExitCode.USAGE,  # raised as it is: a value given is refused
    "ConfigError": ExitCode.CONFIG,
    "DatabaseError": ExitCode.DATABASE,
    "NotFoundError": ExitCode.NOT_FOUND,
    "BatchStateError": ExitCode.STATE,
    "BatchPaused": ExitCode.PAUSED,
    "UnconfirmedRerun": ExitCode.STATE,
    "JobFileError": ExitCode.BAD_FILE,
    "InvalidJobs": ExitCode.INVALID_ROWS,
    "ProviderError": ExitCode.PROVIDER,
    "LimiterUnavailable": ExitCode.LIMITER,
    "WriteError": ExitCode.CANNOT_WRITE,
    "DownloadError": ExitCode.DOWNLOADS_FAILED,
    "DownloadRefused": ExitCode.DOWNLOADS_FAILED,
    "UnusableVideo": ExitCode.DOWNLOADS_FAILED,
    "RefusedDestination": ExitCode.DOWNLOADS_FAILED,
    "ImageError": ExitCode.CONFIG,
    "Abandoned": ExitCode.INTERRUPTED,
    "ProcessFailed": ExitCode.PROCESS_FAILED,
    "RunStopped": ExitCode.INTERRUPTED,
    "NotAllowed": ExitCode.USAGE,  # the dashboard's: no command raises it
    "Refused": ExitCode.USAGE,  # the worker's guard: a malformed message, never raised past it
}


def every_module() -> None:
    """Import every module of the package, so that every class of ours exists."""
    for found in pkgutil.walk_packages(veobatch.__path__, "veobatch."):
        if not found.name.startswith(NOT_IMPORTED):
            importlib.import_module(found.name)


E = TypeVar("E", bound=BaseException)


def ours(root: type[E]) -> set[type[E]]:
    """`root` and every subclass of it (at any depth) defined in veobatch."""
    found: set[type[E]] = {root} if root.__module__.startswith("veobatch.") else set()
    waiting = [root]
    while waiting:
        for sub in waiting.pop().__subclasses__():
            waiting.append(sub)
            if sub.__module__.split(".")[0] == "veobatch":
                found.add(sub)
    return found


def drawn_tree() -> dict[str, tuple[str | None, str]]:
    """The drawing in errors.py: each class's name to (its parent's name, its module)."""
    assert errors.__doc__ is not None
    drawn: dict[str, tuple[str | None, str]] = {}
    parents: list[str] = []  # the last class drawn at each depth
    for line in errors.__doc__.splitlines():
        found = re.match(r"^    ((?:[│ ]   )*[├└]── )?(\w+)(?: \(([\w.]+)\))?(?:\s|$)", line)
        if found is None:
            continue  # a line of text, or a description's second line
        branch, name, module = found.groups()
        depth = len(branch or "") // 4
        assert depth <= len(parents), f"{name} drawn under nothing"
        assert name not in drawn, f"{name} drawn twice"
        parents[depth:] = [name]
        drawn[name] = (
            parents[depth - 1] if depth else None,
            f"veobatch.{module}" if module else "veobatch.errors",
        )
    return drawn


def test_the_drawn_tree_is_the_real_one() -> None:
    every_module()
    real: dict[str, tuple[str | None, str]] = {
        cls.__name__: (None if cls is VeoBatchError else cls.__mro__[1].__name__, cls.__module__)
        for cls in ours(VeoBatchError)
    }
    assert len(real) == len(ours(VeoBatchError)), "two classes of ours share a name"
    assert drawn_tree() == real


def test_every_error_of_ours_is_under_the_one_root() -> None:
    every_module()
    outside = {
        f"{cls.__module__}.{cls.__qualname__}"
        for cls in ours(BaseException)
        if not issubclass(cls, VeoBatchError)
    }
    assert outside == OUTSIDE_THE_TREE


def test_every_kind_of_error_has_its_exit_code() -> None:
    every_module()
    kinds = {cls.__name__: cls for cls in ours(VeoBatchError)}
    assert {name: cls.exit_code for name, cls in kinds.items()} == EXPECTED_EXIT
    assert all(code in EXIT_CODE_MEANINGS for code in EXPECTED_EXIT.values())
    failures: list[type[VeoBatchError]] = [
        ProviderError,
        DownloadError,
        LimiterUnavailable,
        ProcessFailed,
        Abandoned,
    ]
    assert all(kind.exit_code != ExitCode.USAGE for kind in failures)  # none is a usage error
    assert DownloadRefused.exit_code == UnusableVideo.exit_code == RefusedDestination.exit_code


def test_the_codes_that_were_documented_keep_their_numbers() -> None:
    kept = {code.name: code.value for code in ExitCode if code.value <= 12 or code.value == 130}
    assert kept == {
        "OK": 0,
        "INVALID_ROWS": 1,
        "USAGE": 2,
        "BAD_FILE": 3,
        "DATABASE": 4,
        "NOT_FOUND": 5,
        "CONFIG": 6,
        "STATE": 7,
        "ROWS_FAILED": 8,
        "PAUSED": 9,
        "DOWNLOADS_FAILED": 10,
        "CANNOT_WRITE": 11,
        "CHECK_FAILED": 12,
        "INTERRUPTED": 130,
    }
    assert {code.value for code in ExitCode} == {code.value for code in EXIT_CODE_MEANINGS}
    kinds = (ConfigError, DatabaseError, NotFoundError, BatchStateError, JobFileError)
    assert [kind.exit_code for kind in kinds] == [6, 4, 5, 7, 3]
    assert (InvalidJobs.exit_code, WriteError.exit_code, ImageError.exit_code) == (1, 11, 6)


def test_a_lanes_error_reaches_the_run_as_itself() -> None:
    """A forked submit lane hands its error back pickled: a provider's error keeps its kind,
    status and so its exit code; one that cannot cross is told as a failed process."""
    sent = ProviderError(ErrorKind.SERVER, "an HTML page (502 Bad Gateway)", 502, 3.0)
    back = embedded_runner._portable(sent)
    assert isinstance(back, ProviderError)
    assert (back.kind, back.http_status, back.retry_after, str(back)) == (
        ErrorKind.SERVER,
        502,
        3.0,
        str(sent),
    )
    assert pickle.loads(pickle.dumps(Abandoned("stopping"))).exit_code == ExitCode.INTERRUPTED

    class Unpicklable(Exception):
        def __reduce__(self) -> str | tuple[object, ...]:
            raise TypeError("no")

    lost = embedded_runner._portable(Unpicklable("odd"))
    assert type(lost) is ProcessFailed
    assert str(lost) == "a submit lane failed: Unpicklable: odd"
    assert lost.exit_code == ExitCode.PROCESS_FAILED


def sample(kind: type[VeoBatchError]) -> VeoBatchError:
    """An error of `kind` as the code raises it."""
    if kind is JobFileError:
        return JobFileError("jobs.csv", "not UTF-8", 3)
    if kind is InvalidJobs:
        return InvalidJobs([Problem(2, "model", "unknown model 'veo9'")], source="jobs.csv")
    if kind is ProviderError:
        return ProviderError(ErrorKind.SERVER, "an HTML page (502 Bad Gateway)", 502)
    if kind is BatchStateError:
        return BatchStateError("batch 'shop' is cancelled", "cancelled")
    if kind is ImageError:
        return ImageError("VEO_S3_URL is not set", "batch")
    if kind is BatchPaused:
        return BatchPaused("shop", "401 from the relay: check VEO_API_KEY")
    if kind is UnconfirmedRerun:
        return UnconfirmedRerun(3, 2, ["succeeded"], 1_250_000, [])
    return kind(f"a {kind.__name__} of the tests")


def every_kind() -> list[type[VeoBatchError]]:
    every_module()
    return sorted(ours(VeoBatchError), key=lambda kind: kind.__name__)


@pytest.mark.parametrize("kind", every_kind(), ids=lambda kind: kind.__name__)
def test_each_kind_of_error_ends_a_command_with_its_code_and_its_message(
    kind: type[VeoBatchError], sqlite_run: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    error = sample(kind)

    def fails(*_args: object, **_kw: object) -> None:
        raise error

    assert sqlite_run("status").exit_code == 0  # the database made (a line of its own)
    monkeypatch.setattr(BatchService, "status", fails)
    result = sqlite_run("status", "shop")
    assert result.exit_code == EXPECTED_EXIT[kind.__name__] == kind.exit_code
    assert result.stdout == ""
    assert "Traceback" not in result.output
    lines = result.stderr.splitlines()
    assert lines[0] == f"error: {str(error).splitlines()[0]}"
    if kind is not InvalidJobs:  # its problems follow, one a line
        assert len(lines) == 1


FAILED_LANES = [
    ProviderError(ErrorKind.NETWORK, "ConnectError: connection refused"),
    DownloadError("the video host answered 503"),
    LimiterUnavailable("the shared rate limit cannot be asked: ConnectionError"),
    ProcessFailed("submit lane veo-batch-lane-0 ended (exit code 1)"),
]


@pytest.mark.parametrize("error", FAILED_LANES, ids=lambda error: type(error).__name__)
def test_a_failed_lane_ends_the_run_with_what_happened(
    error: VeoBatchError, sqlite_run: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not a usage error (2): the run's exit code says what failed, in one line."""

    def lane_fails(*_args: object, **_kw: object) -> None:
        raise error

    monkeypatch.setattr(embedded_runner, "submit_rows", lane_fails)
    path = tmp_path / "jobs.jsonl"
    path.write_text(
        f'{{"prompt": "ok", "model": "veo3.1", "images": ["{URL}"]}}\n', encoding="utf-8"
    )
    result = sqlite_run("run", str(path), "--mock", "-o", str(tmp_path / "out.csv"))
    assert result.exit_code == type(error).exit_code != ExitCode.USAGE
    assert "Traceback" not in result.output
    assert [line for line in result.stderr.splitlines() if "error" in line] == [f"error: {error}"]
